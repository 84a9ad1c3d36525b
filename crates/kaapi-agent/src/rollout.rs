//! A zero-downtime rollout of one environment: start the new release's replicas, wait until all
//! are healthy, switch the ingress and the desired state at once, drain the old replicas, stop
//! them. Any new replica failing before the switch removes all new replicas and leaves the old
//! release serving, untouched.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::api::{EnvironmentSpec, RolloutPhase, RolloutState, RolloutTicket, ServiceSpec};
use super::docker::ContainerStatus;
use super::health::Check;
use super::ingress::Ingress;
use super::reconcile::with_ingress_port;
use super::replica::{Health, Replica};
use super::runtime::{check_for, Agent, Environment};
use super::store::EnvironmentRecord;

/// How long a worker must keep running after its start to count as started.
const WORKER_SETTLE: Duration = Duration::from_secs(1);
/// Added to every readiness deadline for image start-up and Docker latency.
const DEADLINE_MARGIN: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub enum BeginError {
    Invalid(String),
    Busy(String),
}

/// Validates the spec and starts the rollout in the background.
pub fn begin(
    agent: Arc<Agent>,
    spec: EnvironmentSpec,
    shutdown: watch::Receiver<bool>,
) -> Result<RolloutTicket, BeginError> {
    validate(&spec).map_err(BeginError::Invalid)?;
    let environment = agent.environment_or_create(&spec.environment);
    let id = format!("{}-{:08x}", spec.release, rand::random::<u32>());
    let state = RolloutState {
        id: id.clone(),
        release: spec.release,
        phase: RolloutPhase::Running,
        reason: None,
        messages: Vec::new(),
    };
    if !environment.begin_rollout(state) {
        return Err(BeginError::Busy(format!(
            "a rollout of environment `{}` is already running; wait for it to finish",
            spec.environment
        )));
    }
    environment.set_app(&spec.app);
    let ticket = RolloutTicket { id: id.clone() };
    tokio::spawn(async move {
        let rollout = Rollout {
            agent: &agent,
            environment: &environment,
            spec: &spec,
            id: &id,
        };
        let mut shutdown = shutdown;
        let outcome = tokio::select! {
            outcome = rollout.execute() => outcome,
            _ = shutdown.changed() => Err("the agent stopped during the rollout".to_owned()),
        };
        environment.update_rollout(&id, |state| match outcome {
            Ok(()) => state.phase = RolloutPhase::Completed,
            Err(reason) => {
                state.messages.push(format!("rollout failed: {reason}"));
                state.phase = RolloutPhase::Failed;
                state.reason = Some(reason);
            }
        });
        environment.end_rollout(&id);
    });
    Ok(ticket)
}

fn validate(spec: &EnvironmentSpec) -> Result<(), String> {
    if spec.services.is_empty() {
        return Err("the environment spec has no services".to_owned());
    }
    for name in [&spec.app, &spec.environment]
        .into_iter()
        .chain(spec.services.iter().map(|s| &s.name))
    {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(format!(
                "`{name}` cannot be part of a container name; use letters, digits, `-`, `_`, `.`"
            ));
        }
    }
    if let Some(web) = &spec.web_service {
        match spec.services.iter().find(|s| &s.name == web) {
            Some(service) if service.port.is_some() => {}
            Some(_) => return Err(format!("the web service `{web}` has no port")),
            None => return Err(format!("the web service `{web}` is not among the services")),
        }
    }
    Ok(())
}

struct Rollout<'a> {
    agent: &'a Agent,
    environment: &'a Environment,
    spec: &'a EnvironmentSpec,
    id: &'a str,
}

impl Rollout<'_> {
    fn say(&self, message: String) {
        self.environment
            .update_rollout(self.id, |state| state.messages.push(message));
    }

    async fn execute(&self) -> Result<(), String> {
        let spec = self.spec;
        self.say(format!(
            "rolling out release {} of {}/{}",
            spec.release, spec.app, spec.environment
        ));
        let new_ingress = self.prepare_ingress().await?;
        let mut started: Vec<(ServiceSpec, Arc<Replica>)> = Vec::new();
        for service in &spec.services {
            for _ in 0..service.replicas {
                match self
                    .agent
                    .start_replica(self.environment, spec, service)
                    .await
                {
                    Ok(replica) => {
                        self.say(format!("{}: started {}", service.name, describe(&replica)));
                        started.push((service.clone(), replica));
                    }
                    Err(e) => {
                        let reason = format!("{}: cannot start a replica: {e}", service.name);
                        self.abandon(&started).await;
                        return Err(reason);
                    }
                }
            }
        }
        if let Err(reason) = self.wait_ready(&started).await {
            self.abandon(&started).await;
            return Err(reason);
        }
        let old = self.switch(new_ingress, &started).await?;
        self.drain(old).await;
        self.say(format!("release {} is serving", spec.release));
        Ok(())
    }

    /// The ingress that will serve after the switch: `None` keeps the current one; a new one is
    /// opened now so that a port conflict fails the rollout before anything starts.
    async fn prepare_ingress(&self) -> Result<Option<Ingress>, String> {
        if self.spec.web_service.is_none() {
            return Ok(None);
        }
        let current_port = self.environment.ingress_port();
        let wanted = self.spec.ingress_port.or(current_port).or_else(|| {
            self.agent
                .store
                .record(&self.spec.environment)
                .and_then(|record| record.spec.ingress_port)
        });
        if current_port.is_some() && wanted == current_port {
            return Ok(None);
        }
        let ingress = Ingress::open(wanted.unwrap_or(0))
            .await
            .map_err(|e| e.to_string())?;
        self.say(format!(
            "ingress listens on http://127.0.0.1:{}",
            ingress.port
        ));
        Ok(Some(ingress))
    }

    /// Waits until every new replica is ready; the first failure ends the wait.
    async fn wait_ready(&self, started: &[(ServiceSpec, Arc<Replica>)]) -> Result<(), String> {
        let mut ready = vec![false; started.len()];
        let begun = Instant::now();
        loop {
            for (index, (service, replica)) in started.iter().enumerate() {
                if ready[index] {
                    continue;
                }
                let check = check_for(self.spec, service);
                let deadline = readiness_budget(&check);
                let who = format!("{}: replica {}", service.name, replica.name);
                match replica.health() {
                    Health::Healthy => {
                        if matches!(check, Check::Running) {
                            if replica.started.elapsed() < WORKER_SETTLE {
                                continue;
                            }
                            match self.agent.containers.status(&replica.container_id).await {
                                Ok(ContainerStatus::Running) => {}
                                Ok(ContainerStatus::Exited(code)) => {
                                    return Err(format!("{who} {}", exited(code)))
                                }
                                Ok(_) => continue,
                                Err(e) => return Err(format!("{who}: {e}")),
                            }
                        }
                        ready[index] = true;
                        let how = replica
                            .last_probe()
                            .filter(|_| !matches!(check, Check::Running))
                            .map(|probe| format!(" ({probe})"))
                            .unwrap_or_default();
                        self.say(format!("{who} is healthy{how}"));
                    }
                    Health::Starting if begun.elapsed() > deadline => {
                        let last = replica
                            .last_probe()
                            .unwrap_or_else(|| "no probe answered".to_owned());
                        return Err(format!(
                            "{who} did not become healthy within {} s (last probe: {last})",
                            deadline.as_secs()
                        ));
                    }
                    Health::Starting => {}
                    Health::Unhealthy(probe) => {
                        return Err(format!("{who} failed its health check: {probe}"))
                    }
                    Health::Exited(code) => return Err(format!("{who} {}", exited(code))),
                    Health::Vanished => {
                        return Err(format!("{who} vanished (its container was removed)"))
                    }
                }
            }
            if ready.iter().all(|r| *r) {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Makes the new replicas current, atomically for the ingress, and persists the new desired
    /// state; returns the replicas it replaced.
    async fn switch(
        &self,
        new_ingress: Option<Ingress>,
        started: &[(ServiceSpec, Arc<Replica>)],
    ) -> Result<Vec<Arc<Replica>>, String> {
        let mut current = self.environment.current.lock().await;
        let still_managed = self
            .agent
            .environment(&self.environment.name)
            .is_some_and(|e| std::ptr::eq(e.as_ref(), self.environment));
        if !still_managed {
            drop(current);
            self.abandon(started).await;
            return Err("the environment was removed during the rollout".to_owned());
        }
        let mut new: BTreeMap<String, Vec<Arc<Replica>>> = self
            .spec
            .services
            .iter()
            .map(|s| (s.name.clone(), Vec::new()))
            .collect();
        for (service, replica) in started {
            new.entry(service.name.clone())
                .or_default()
                .push(Arc::clone(replica));
        }
        let port = new_ingress
            .as_ref()
            .map(|ingress| ingress.port)
            .or_else(|| self.environment.ingress_port());
        let spec = with_ingress_port(self.spec, port.filter(|_| self.spec.web_service.is_some()));
        let previous_release = match current.spec.as_ref().map(|s| s.release) {
            Some(release) if release != spec.release => Some(release),
            _ => current.previous_release,
        };
        let record = EnvironmentRecord {
            spec: spec.clone(),
            previous_release,
        };
        if let Err(e) = self.agent.store.put(record) {
            drop(current);
            self.abandon(started).await;
            return Err(format!("cannot persist the new desired state: {e}"));
        }
        let old_replicas = std::mem::replace(&mut current.replicas, new);
        current.spec = Some(spec);
        current.previous_release = previous_release;
        if let Some(ingress) = new_ingress {
            self.environment.set_ingress(Some(ingress));
        }
        self.environment.reset_backoff();
        self.environment.publish(&current);
        drop(current);
        self.environment.record_event(
            None,
            format!("switched traffic to release {}", self.spec.release),
        );
        self.say(format!("switched traffic to release {}", self.spec.release));
        Ok(old_replicas.into_values().flatten().collect())
    }

    /// Lets in-flight requests on the old replicas finish (bounded by their stop timeout), then
    /// stops and removes them.
    async fn drain(&self, old: Vec<Arc<Replica>>) {
        if old.is_empty() {
            return;
        }
        self.say(format!("draining {} old replica(s)", old.len()));
        let stops = old.into_iter().map(|replica| async move {
            replica.start_draining();
            let stop_timeout = self
                .spec
                .services
                .iter()
                .find(|s| s.name == replica.service)
                .map_or(30, |s| s.stop_timeout_secs);
            let bound = Instant::now() + Duration::from_secs(u64::from(stop_timeout));
            while replica.in_flight() > 0 && Instant::now() < bound {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            replica.stop_monitor();
            self.agent
                .containers
                .stop_and_remove(&replica.container_id, stop_timeout)
                .await;
            self.say(format!("{}: stopped {}", replica.service, replica.name));
        });
        futures_util::future::join_all(stops).await;
    }

    /// Removes every replica this rollout started; the old release keeps serving.
    async fn abandon(&self, started: &[(ServiceSpec, Arc<Replica>)]) {
        let replicas: Vec<Arc<Replica>> = started.iter().map(|(_, r)| Arc::clone(r)).collect();
        if !replicas.is_empty() {
            self.say(format!(
                "removing the {} new replica(s); the previous release keeps serving",
                replicas.len()
            ));
        }
        self.agent.discard(&replicas).await;
    }
}

fn describe(replica: &Replica) -> String {
    match replica.host_port {
        Some(port) => format!("{} (127.0.0.1:{port})", replica.name),
        None => replica.name.clone(),
    }
}

fn exited(code: Option<i64>) -> String {
    match code {
        Some(code) => format!("exited (code {code}) while starting"),
        None => "exited while starting".to_owned(),
    }
}

/// How long a new replica may take to become healthy.
fn readiness_budget(check: &Check) -> Duration {
    match check {
        Check::Running => WORKER_SETTLE + DEADLINE_MARGIN,
        Check::Answers => Duration::from_secs(20) + DEADLINE_MARGIN,
        Check::Http(health) => {
            let per_try = health.interval_ms + health.timeout_ms;
            Duration::from_millis(
                health.start_period_ms + u64::from(health.retries.max(1)) * per_try,
            ) + DEADLINE_MARGIN
        }
    }
}
