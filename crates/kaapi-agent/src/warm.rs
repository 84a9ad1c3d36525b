//! The replaced release's web replicas, kept running out of rotation for the spec's
//! `keep_warm_ms` after a switch, so that a rollback to that release within the window is a
//! switch of the ingress rather than a start of new containers.
//!
//! Only replicas behind an ingress are kept: a warm worker would keep consuming jobs with the
//! old code. A warm set is stopped when its window ends, when a later rollout replaces it, when
//! one of its replicas fails, on environment removal and on agent shutdown; after an agent
//! restart, reconcile removes them as containers of a release that does not serve.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::api::{EnvironmentSpec, ReplicaPhase, ReplicaState, ServiceSpec};
use super::docker::Containers;
use super::health;
use super::replica::{Health, Replica};
use super::runtime::{check_for, Agent, Current, Environment};

/// One web service's replaced replicas, kept warm until `until`.
pub struct WarmSet {
    /// The release they served.
    pub release: u64,
    /// What they run; a rollout reuses them only for exactly this spec.
    pub spec: ServiceSpec,
    pub replicas: Vec<Arc<Replica>>,
    pub until: Instant,
    pub until_utc: DateTime<Utc>,
}

/// Warm sets a rollout switches to instead of starting new replicas, by service.
pub type Reused = BTreeMap<String, WarmSet>;

/// How the agent's state API shows the warm replicas.
pub fn states(current: &Current) -> Vec<ReplicaState> {
    current
        .warm
        .values()
        .flat_map(|set| {
            set.replicas.iter().map(|replica| ReplicaState {
                state: ReplicaPhase::Warm,
                warm_until: Some(set.until_utc),
                ..replica.to_state()
            })
        })
        .collect()
}

/// Takes the warm replicas of every web service whose spec in `spec` equals theirs, when each
/// answers one probe now; a set that does not is stopped (the rollout starts fresh replicas).
pub async fn take_matching(
    agent: &Agent,
    environment: &Environment,
    spec: &EnvironmentSpec,
) -> Reused {
    let candidates: Vec<(ServiceSpec, WarmSet)> = {
        let mut current = environment.current.lock().await;
        spec.services
            .iter()
            .filter(|service| spec.has_ingress(&service.name))
            .filter_map(|service| {
                let matches = current.warm.get(&service.name).is_some_and(|set| {
                    set.spec == *service && set.replicas.len() == service.replicas as usize
                });
                matches
                    .then(|| current.warm.remove(&service.name))
                    .flatten()
                    .map(|set| (service.clone(), set))
            })
            .collect()
    };
    let mut reused = Reused::new();
    for (service, set) in candidates {
        if answers(agent, spec, &service, &set.replicas).await {
            reused.insert(service.name.clone(), set);
        } else {
            environment.record_event(
                Some(&service.name),
                format!(
                    "the warm replicas of release {} do not answer; starting new ones",
                    set.release
                ),
            );
            retire(&agent.containers, vec![set]);
        }
    }
    reused
}

/// Whether every replica passes one probe of its service's check right now.
async fn answers(
    agent: &Agent,
    spec: &EnvironmentSpec,
    service: &ServiceSpec,
    replicas: &[Arc<Replica>],
) -> bool {
    let check = check_for(spec, service);
    let probes = replicas.iter().map(|replica| {
        let check = &check;
        async move {
            let alive = !matches!(replica.health(), Health::Exited(_) | Health::Vanished);
            match replica.host_port {
                Some(port) if alive => health::probe(&agent.probe, port, check).await.is_ok(),
                _ => false,
            }
        }
    });
    futures_util::future::join_all(probes)
        .await
        .into_iter()
        .all(|ok| ok)
}

/// Puts the reused replicas back in rotation and points their ingress at them now, without
/// waiting for the rest of the rollout (the workers); returns them as the rollout's replicas
/// of their services.
pub async fn switch_early(
    agent: &Agent,
    environment: &Environment,
    spec: &EnvironmentSpec,
    reused: &Reused,
    say: impl Fn(String),
) -> Vec<(ServiceSpec, Arc<Replica>)> {
    let mut started = Vec::new();
    for (name, set) in reused {
        let Some(service) = spec.services.iter().find(|s| &s.name == name) else {
            continue;
        };
        for replica in &set.replicas {
            replica.resume();
            started.push((service.clone(), Arc::clone(replica)));
        }
        environment
            .point_ingress(&agent.ingress, name, set.replicas.clone())
            .await;
        say(format!(
            "{name}: switched to {} warm replica(s) of release {}",
            set.replicas.len(),
            set.release
        ));
    }
    started
}

/// After a switch from `before` to `after`: keeps `before`'s healthy web replicas among `old`
/// warm for `after.keep_warm_ms` (replacing the warm set there was) and returns the replicas
/// to stop now.
pub async fn keep(
    agent: &Agent,
    environment: &Environment,
    before: Option<&EnvironmentSpec>,
    after: &EnvironmentSpec,
    old: Vec<Arc<Replica>>,
    say: impl Fn(String),
) -> Vec<Arc<Replica>> {
    let window = Duration::from_millis(after.keep_warm_ms);
    let mut sets: BTreeMap<String, WarmSet> = BTreeMap::new();
    let mut rest = Vec::new();
    let before = before.filter(|b| !window.is_zero() && b.release != after.release);
    for replica in old {
        let service = before.and_then(|before| {
            before
                .services
                .iter()
                .find(|s| s.name == replica.service && before.has_ingress(&s.name))
                .map(|s| (before.release, s))
        });
        match service {
            Some((release, service)) if replica.health() == Health::Healthy => {
                sets.entry(service.name.clone())
                    .or_insert_with(|| WarmSet {
                        release,
                        spec: service.clone(),
                        replicas: Vec::new(),
                        until: Instant::now() + window,
                        until_utc: Utc::now()
                            + chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX),
                    })
                    .replicas
                    .push(replica);
            }
            _ => rest.push(replica),
        }
    }
    // A set missing a replica could not be switched back to as it is.
    let (complete, partial): (Vec<_>, Vec<_>) = sets
        .into_values()
        .partition(|set| set.replicas.len() == set.spec.replicas as usize);
    rest.extend(partial.into_iter().flat_map(|set| set.replicas));
    let kept: BTreeMap<String, WarmSet> = complete
        .into_iter()
        .map(|set| {
            for replica in &set.replicas {
                replica.start_draining();
            }
            say(format!(
                "{}: keeping {} replica(s) of release {} warm out of rotation for {:?}",
                set.spec.name,
                set.replicas.len(),
                set.release,
                window
            ));
            (set.spec.name.clone(), set)
        })
        .collect();
    let replaced = std::mem::replace(&mut environment.current.lock().await.warm, kept);
    retire(&agent.containers, replaced.into_values().collect());
    rest
}

/// Stops the warm sets whose window ended or with a replica that failed.
pub async fn expire(agent: &Agent, environment: &Environment) {
    let ended: Vec<WarmSet> = {
        let mut current = environment.current.lock().await;
        let now = Instant::now();
        let names: Vec<String> = current
            .warm
            .iter()
            .filter(|(_, set)| {
                set.until <= now || set.replicas.iter().any(|r| r.failure().is_some())
            })
            .map(|(name, _)| name.clone())
            .collect();
        names
            .iter()
            .filter_map(|name| current.warm.remove(name))
            .collect()
    };
    for set in &ended {
        environment.record_event(
            Some(&set.spec.name),
            format!(
                "stopping the {} warm replica(s) of release {}",
                set.replicas.len(),
                set.release
            ),
        );
    }
    retire(&agent.containers, ended);
}

/// Removes every environment's warm replicas now (the agent stops: nothing would stop them).
pub async fn remove_all(agent: &Agent) {
    for environment in agent.environments() {
        let sets = std::mem::take(&mut environment.current.lock().await.warm);
        remove_now(&agent.containers, sets.into_values().collect()).await;
    }
}

/// Removes the warm replicas of an environment being removed.
pub async fn remove_from(containers: &Containers, current: &mut Current) {
    let sets = std::mem::take(&mut current.warm);
    remove_now(containers, sets.into_values().collect()).await;
}

async fn remove_now(containers: &Containers, sets: Vec<WarmSet>) {
    let removals = sets.iter().flat_map(|set| &set.replicas).map(|replica| {
        replica.stop_monitor();
        containers.remove(&replica.container_id)
    });
    futures_util::future::join_all(removals).await;
}

/// Stops and removes warm sets in the background (a graceful stop may take seconds).
fn retire(containers: &Containers, sets: Vec<WarmSet>) {
    if sets.is_empty() {
        return;
    }
    let containers = containers.clone();
    tokio::spawn(async move {
        let stops = sets.iter().flat_map(|set| {
            let containers = &containers;
            set.replicas.iter().map(move |replica| {
                replica.stop_monitor();
                containers.stop_and_remove(&replica.container_id, set.spec.stop_timeout_secs)
            })
        });
        futures_util::future::join_all(stops).await;
    });
}
