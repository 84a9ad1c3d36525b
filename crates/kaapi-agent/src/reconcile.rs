//! Keeps every environment at its desired state: restores it after an agent restart (adopting
//! containers by label, removing orphans) and replaces replicas that exit, vanish or turn
//! unhealthy.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::api::EnvironmentSpec;
use super::error::AgentError;
use super::replica::{Health, Replica};
use super::runtime::{highest_index, Agent, Current, Environment};
use super::store::EnvironmentRecord;

const TICK: Duration = Duration::from_secs(1);

/// Brings back every persisted environment: adopts its running replicas of the current release,
/// removes every other replica container of it, and reopens its ingress on the same port.
/// Missing replicas are started by the first reconcile pass.
pub async fn restore(agent: &Agent) {
    for (name, record) in agent.store.records() {
        if let Err(e) = restore_environment(agent, &name, record).await {
            eprintln!("agent: cannot restore environment `{name}`: {e}");
        }
    }
    close_unknown_listeners(agent).await;
}

async fn restore_environment(
    agent: &Agent,
    name: &str,
    record: EnvironmentRecord,
) -> Result<(), AgentError> {
    let spec = record.spec;
    let labelled = |service: &str, release: Option<u64>| {
        release.is_some_and(|release| {
            release == spec.release
                || record
                    .replica_releases
                    .get(service)
                    .is_some_and(|others| others.contains(&release))
        })
    };
    let environment = agent.environment_or_create(name);
    environment.set_app(&spec.app);
    let listed = agent
        .containers
        .list_replicas(&spec.app, &spec.environment)
        .await?;
    environment.reserve_indices_above(highest_index(listed.iter().map(|c| c.name.as_str())));

    let mut current = environment.current.lock().await;
    let mut adopted_ids = Vec::new();
    for service in &spec.services {
        let candidates = listed.iter().filter(|c| {
            c.running
                && c.service == service.name
                && labelled(&service.name, c.release)
                && (c.image_id == service.image || c.image == service.image)
        });
        let mut adopted = Vec::new();
        for container in candidates.take(service.replicas as usize) {
            let host_port = match service.port {
                Some(port) => match agent.containers.host_port(&container.id, port).await? {
                    Some(host_port) => Some(host_port),
                    None => continue,
                },
                None => None,
            };
            // It served before the restart; the first probe (right away) confirms it.
            let replica = Arc::new(Replica::new(
                container.id.clone(),
                container.name.clone(),
                service.name.clone(),
                spec.release,
                host_port,
                Health::Healthy,
            ));
            agent.watch(&replica, &spec, service);
            adopted_ids.push(container.id.clone());
            adopted.push(replica);
        }
        if !adopted.is_empty() {
            environment.record_event(
                Some(&service.name),
                format!(
                    "agent restarted: adopted {} running replica(s) of release {}",
                    adopted.len(),
                    spec.release
                ),
            );
        }
        current.replicas.insert(service.name.clone(), adopted);
    }
    current.previous_release = record.previous_release;
    current.spec = Some(spec);
    // The replicas are restored even when the port is taken; reconcile keeps trying to reopen.
    // A running ingress process still listens (it kept serving while no agent ran): it gets
    // the restored table on the same port, before any orphan it may still route to goes.
    reopen_ingress(agent, &environment, &current).await;
    for orphan in listed.iter().filter(|c| !adopted_ids.contains(&c.id)) {
        agent.containers.remove(&orphan.id).await;
        environment.record_event(
            Some(&orphan.service),
            format!("removed orphan container {}", orphan.name),
        );
    }
    Ok(())
}

/// Closes the listeners a running ingress kept that no kept environment has: of environments
/// removed while no agent ran, or opened by a rollout the previous agent did not finish.
async fn close_unknown_listeners(agent: &Agent) {
    let Ok(hello) = agent.ingress.hello().await else {
        return;
    };
    let known: Vec<u16> = agent
        .store
        .records()
        .values()
        .flat_map(|record| record.spec.ingress_ports())
        .filter_map(|(_, port)| port)
        .collect();
    for (port, label) in hello.listeners {
        if !known.contains(&port) {
            eprintln!(
                "agent: closing the ingress on 127.0.0.1:{port} ({label}): nothing serves there"
            );
            let _ = agent.ingress.remove(port).await;
        }
    }
}

/// Opens each ingress an environment should have and has not (after a restart, or when its
/// port was busy), on its persisted port.
async fn reopen_ingress(agent: &Agent, environment: &Environment, current: &Current) {
    let Some(spec) = current.spec.as_ref() else {
        return;
    };
    for (service, port) in spec.ingress_ports() {
        if environment.ingress_port(&service).is_some() {
            continue;
        }
        let opened = environment
            .open_ingress(&agent.ingress, &service, port.unwrap_or(0), current)
            .await;
        match opened {
            Ok(_) => {}
            Err(e) => {
                if !environment.ingress_failure_reported() {
                    environment.record_event(Some(&service), format!("{e}; retrying every second"));
                }
            }
        }
    }
}

/// Runs reconcile passes until shutdown.
pub async fn run(agent: Arc<Agent>, mut shutdown: watch::Receiver<bool>) {
    loop {
        for environment in agent.environments() {
            reconcile(&agent, &environment).await;
            super::warm::expire(&agent, &environment).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One pass over one environment: replace failed replicas, top up, trim extras.
pub async fn reconcile(agent: &Agent, environment: &Environment) {
    let mut current = environment.current.lock().await;
    let Some(spec) = current.spec.clone() else {
        return;
    };
    let mut changed = false;
    for service in &spec.services {
        let mut replicas = current.replicas.remove(&service.name).unwrap_or_default();
        let (failed, healthy): (Vec<_>, Vec<_>) =
            replicas.drain(..).partition(|r| r.failure().is_some());
        replicas = healthy;
        changed |= !failed.is_empty();
        let backoff = environment.note_failures(&service.name, &failed);
        for bad in failed {
            let reason = bad.failure().unwrap_or_default();
            let who = format!("{} replica {} {reason}", service.name, bad.name);
            environment.metrics.replica_restarted(&service.name);
            if let Some(wait) = backoff {
                environment.record_event(
                    Some(&service.name),
                    format!(
                        "{who}; it keeps failing soon after start, next try in {} s",
                        wait.as_secs().max(1)
                    ),
                );
            } else {
                let replacement = agent.start_replica(environment, &spec, service).await;
                let message = match &replacement {
                    Ok(new) => format!("{who}; replaced by {}", new.name),
                    Err(e) => format!("{who}; cannot start a replacement: {e}"),
                };
                environment.record_event(Some(&service.name), message);
                if let Ok(new) = replacement {
                    replicas.push(new);
                }
            }
            agent.discard(&[bad]).await;
        }
        while backoff.is_none()
            && environment.backoff_remaining(&service.name).is_none()
            && replicas.len() < service.replicas as usize
        {
            changed = true;
            match agent.start_replica(environment, &spec, service).await {
                Ok(new) => {
                    environment.record_event(
                        Some(&service.name),
                        format!(
                            "{} has {} of {} replicas; started {}",
                            service.name,
                            replicas.len(),
                            service.replicas,
                            new.name
                        ),
                    );
                    replicas.push(new);
                }
                Err(e) => {
                    environment.record_event(
                        Some(&service.name),
                        format!("cannot start a replica of {}: {e}", service.name),
                    );
                    break;
                }
            }
        }
        if replicas.len() > service.replicas as usize {
            changed = true;
            let extra = replicas.split_off(service.replicas as usize);
            agent.discard(&extra).await;
        }
        current.replicas.insert(service.name.clone(), replicas);
    }
    if changed {
        environment.publish(&agent.ingress, &current).await;
    }
    reopen_ingress(agent, environment, &current).await;
}

/// The spec with its ingress port filled in, as persisted.
pub fn with_ingress_port(spec: &EnvironmentSpec, port: Option<u16>) -> EnvironmentSpec {
    let mut spec = spec.clone();
    if spec.ingress_port.is_none() {
        spec.ingress_port = port;
    }
    spec
}
