//! The agent's in-memory world: every environment it manages, their current replicas, ingress,
//! events and rollouts.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;

use super::api::{AgentEvent, EnvironmentSpec, EnvironmentState, RolloutState, ServiceSpec};
use super::container::Owner;
use super::docker::{ContainerStatus, Containers};
use super::error::AgentError;
use super::health::{self, Check, ProbeClient};
use super::ingress::protocol::Backend;
use super::ingress::IngressLink;
use super::metrics::Metrics;
use super::replica::{Health, Replica};
use super::store::Store;
use super::warm::{self, WarmSet};

const MAX_EVENTS: usize = 100;
/// A replica failing sooner than this after its start counts towards a crash loop.
const CRASH_WINDOW: Duration = Duration::from_secs(10);
/// Crash-loop failures replaced at once before the backoff starts.
const FREE_RETRIES: u32 = 2;
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    until: Instant,
}
const MAX_ROLLOUTS_KEPT: usize = 20;
/// Tries with the next index when a replica name is taken (e.g. by a leftover container).
const NAME_ATTEMPTS: u32 = 20;

pub struct Agent {
    pub containers: Containers,
    pub probe: ProbeClient,
    pub store: Store,
    /// The ingress process every environment's listeners live in.
    pub ingress: IngressLink,
    environments: Mutex<BTreeMap<String, Arc<Environment>>>,
}

/// What serves an environment now: the last completed rollout and its replicas.
#[derive(Default)]
pub struct Current {
    pub spec: Option<EnvironmentSpec>,
    pub previous_release: Option<u64>,
    pub replicas: BTreeMap<String, Vec<Arc<Replica>>>,
    /// The replaced release's web replicas kept running out of rotation, by service.
    pub warm: BTreeMap<String, WarmSet>,
}

pub struct Environment {
    pub name: String,
    /// Held by whoever changes the replica set (reconcile, rollout switch, removal).
    pub current: tokio::sync::Mutex<Current>,
    /// The port of each web service's ingress listener, by service name.
    ingresses: Mutex<BTreeMap<String, u16>>,
    /// What each listener routes to, and what the ingress last acknowledged.
    routes: tokio::sync::Mutex<Routes>,
    /// Whether the event "cannot open the ingress" was recorded since the last open.
    ingress_failure_reported: AtomicBool,
    events: Mutex<VecDeque<AgentEvent>>,
    rollouts: Mutex<VecDeque<RolloutState>>,
    active_rollout: Mutex<Option<String>>,
    /// Replacement backoff per service, against replicas that crash right after they start.
    backoff: Mutex<HashMap<String, Backoff>>,
    /// The app of the last rollout asked for (to find its containers by label).
    app: Mutex<Option<String>>,
    next_index: AtomicU64,
    /// Traffic, restarts and rollouts; kept across ingress replacements.
    pub metrics: Arc<Metrics>,
}

/// The replicas each ingress listener routes to, by service; pushed to the ingress as tables.
#[derive(Default)]
struct Routes {
    routed: BTreeMap<String, Vec<Arc<Replica>>>,
    /// By service: the ingress generation, port and table last acknowledged.
    pushed: BTreeMap<String, (u64, u16, Vec<Backend>)>,
}

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every value behind these locks is replaced whole, so a panic cannot leave it torn.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Agent {
    pub fn new(containers: Containers, store: Store, ingress: IngressLink) -> Self {
        Agent {
            containers,
            probe: health::probe_client(),
            store,
            ingress,
            environments: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn environment(&self, name: &str) -> Option<Arc<Environment>> {
        lock(&self.environments).get(name).cloned()
    }

    pub fn environment_or_create(&self, name: &str) -> Arc<Environment> {
        Arc::clone(
            lock(&self.environments)
                .entry(name.to_owned())
                .or_insert_with(|| Arc::new(Environment::new(name))),
        )
    }

    pub fn environments(&self) -> Vec<Arc<Environment>> {
        lock(&self.environments).values().cloned().collect()
    }

    pub fn forget(&self, name: &str) -> Option<Arc<Environment>> {
        lock(&self.environments).remove(name)
    }

    /// Stops watching replicas (the containers keep running, and a separate ingress process
    /// keeps serving them; one inside this process closes).
    pub fn close_all(&self) {
        self.ingress.close_in_process();
        for environment in self.environments() {
            if let Ok(current) = environment.current.try_lock() {
                for replica in current.replicas.values().flatten() {
                    replica.stop_monitor();
                }
            }
        }
    }

    /// Creates and starts one replica of `service` and starts watching it.
    pub async fn start_replica(
        &self,
        environment: &Environment,
        spec: &EnvironmentSpec,
        service: &ServiceSpec,
    ) -> Result<Arc<Replica>, AgentError> {
        let owner = Owner {
            app: &spec.app,
            environment: &spec.environment,
            release: Some(spec.release),
        };
        for _ in 0..NAME_ATTEMPTS {
            let index = environment.next_index.fetch_add(1, Ordering::SeqCst);
            let name = format!(
                "{}-{}-{}-r{}-{index}",
                spec.app, spec.environment, service.name, spec.release
            );
            let Some(id) = self
                .containers
                .create_replica(owner, service, &name)
                .await?
            else {
                continue;
            };
            let host_port = match service.port {
                Some(port) => match self.containers.host_port(&id, port).await {
                    Ok(Some(host_port)) => Some(host_port),
                    Ok(None) => {
                        // A container that exits at once never gets its port published: keep
                        // it so the rollout reports its exit code and last lines, then removes it.
                        if let Ok(ContainerStatus::Exited(code)) = self.containers.status(&id).await
                        {
                            return Ok(Arc::new(Replica::new(
                                id,
                                name,
                                service.name.clone(),
                                spec.release,
                                None,
                                Health::Exited(code),
                            )));
                        }
                        self.containers.remove(&id).await;
                        return Err(AgentError::Invalid(format!(
                            "replica {name}: Docker did not publish port {port} on 127.0.0.1"
                        )));
                    }
                    Err(e) => {
                        self.containers.remove(&id).await;
                        return Err(e);
                    }
                },
                None => None,
            };
            let replica = Arc::new(Replica::new(
                id,
                name,
                service.name.clone(),
                spec.release,
                host_port,
                Health::Starting,
            ));
            self.watch(&replica, spec, service);
            return Ok(replica);
        }
        Err(AgentError::Invalid(format!(
            "cannot name a new replica of service `{}`: {NAME_ATTEMPTS} names in a row are taken",
            service.name
        )))
    }

    pub fn watch(&self, replica: &Arc<Replica>, spec: &EnvironmentSpec, service: &ServiceSpec) {
        health::spawn_monitor(
            self.containers.clone(),
            self.probe.clone(),
            replica,
            check_for(spec, service),
        );
    }

    /// Stops watching and removes replicas at once (they never served, or already failed).
    pub async fn discard(&self, replicas: &[Arc<Replica>]) {
        let removals = replicas.iter().map(|replica| {
            replica.stop_monitor();
            self.containers.remove(&replica.container_id)
        });
        futures_util::future::join_all(removals).await;
    }
}

/// What makes a replica of `service` healthy.
pub fn check_for(spec: &EnvironmentSpec, service: &ServiceSpec) -> Check {
    let is_web = service.port.is_some() && spec.has_ingress(&service.name);
    match (&service.health, service.port) {
        (Some(health), Some(_)) => Check::Http(health.clone()),
        (None, Some(_)) if is_web => Check::Answers,
        _ => Check::Running,
    }
}

impl Environment {
    pub fn new(name: &str) -> Self {
        Environment {
            name: name.to_owned(),
            current: tokio::sync::Mutex::new(Current::default()),
            ingresses: Mutex::new(BTreeMap::new()),
            routes: tokio::sync::Mutex::new(Routes::default()),
            ingress_failure_reported: AtomicBool::new(false),
            events: Mutex::new(VecDeque::new()),
            rollouts: Mutex::new(VecDeque::new()),
            active_rollout: Mutex::new(None),
            backoff: Mutex::new(HashMap::new()),
            app: Mutex::new(None),
            next_index: AtomicU64::new(1),
            metrics: Arc::default(),
        }
    }

    /// Counts replicas that failed soon after their start; returns how long to wait before
    /// replacing them (`None`: now). A replica that ran for a while resets the count.
    pub fn note_failures(&self, service: &str, failed: &[Arc<Replica>]) -> Option<Duration> {
        let mut backoff = lock(&self.backoff);
        let entry = backoff.entry(service.to_owned()).or_insert(Backoff {
            failures: 0,
            until: Instant::now(),
        });
        if !failed.is_empty() {
            if failed.iter().all(|r| r.started.elapsed() < CRASH_WINDOW) {
                entry.failures = entry.failures.saturating_add(1);
            } else {
                entry.failures = 0;
            }
            if entry.failures > FREE_RETRIES {
                let exponent = (entry.failures - FREE_RETRIES - 1).min(5);
                let delay = Duration::from_secs(1 << exponent).min(MAX_BACKOFF);
                entry.until = Instant::now() + delay;
            }
        }
        remaining(entry.until)
    }

    pub fn backoff_remaining(&self, service: &str) -> Option<Duration> {
        lock(&self.backoff)
            .get(service)
            .and_then(|b| remaining(b.until))
    }

    /// A new release starts with a clean slate.
    pub fn reset_backoff(&self) {
        lock(&self.backoff).clear();
    }

    pub fn app(&self) -> Option<String> {
        lock(&self.app).clone()
    }

    pub fn set_app(&self, app: &str) {
        *lock(&self.app) = Some(app.to_owned());
    }

    /// Makes new replica names start above every index already used.
    pub fn reserve_indices_above(&self, used: u64) {
        self.next_index.fetch_max(used + 1, Ordering::SeqCst);
    }

    /// The port of `service`'s ingress, when it has one open.
    pub fn ingress_port(&self, service: &str) -> Option<u16> {
        lock(&self.ingresses).get(service).copied()
    }

    /// The ports of every ingress listener the environment has.
    pub fn ingress_ports(&self) -> Vec<u16> {
        lock(&self.ingresses).values().copied().collect()
    }

    /// Records `service`'s listener; returns the port of the one it replaces (to close).
    pub fn set_ingress(&self, service: &str, port: u16) -> Option<u16> {
        self.ingress_failure_reported.store(false, Ordering::SeqCst);
        lock(&self.ingresses)
            .insert(service.to_owned(), port)
            .filter(|old| *old != port)
    }

    /// Closes the ingresses of services that no longer have one in `spec` (all without one).
    pub async fn close_ingresses_except(&self, link: &IngressLink, spec: Option<&EnvironmentSpec>) {
        let closed: Vec<(String, u16)> = {
            let mut ingresses = lock(&self.ingresses);
            let gone: Vec<String> = ingresses
                .keys()
                .filter(|service| !spec.is_some_and(|spec| spec.has_ingress(service)))
                .cloned()
                .collect();
            gone.into_iter()
                .filter_map(|s| ingresses.remove(&s).map(|port| (s, port)))
                .collect()
        };
        let mut routes = self.routes.lock().await;
        for (service, port) in closed {
            routes.routed.remove(&service);
            routes.pushed.remove(&service);
            self.close_listener(link, port).await;
        }
    }

    /// Closes every ingress.
    pub async fn close_ingresses(&self, link: &IngressLink) {
        self.close_ingresses_except(link, None).await;
    }

    /// Closes one listener (an environment's, or one a failed rollout opened).
    pub async fn close_listener(&self, link: &IngressLink, port: u16) {
        if let Err(e) = link.remove(port).await {
            self.record_event(
                None,
                format!("cannot close the ingress on 127.0.0.1:{port}: {e}"),
            );
        }
    }

    /// `true` when the failure was already reported; marks it reported otherwise.
    pub fn ingress_failure_reported(&self) -> bool {
        self.ingress_failure_reported.swap(true, Ordering::SeqCst)
    }

    /// Opens `service`'s listener on `port` (0: any free port) with its current replicas as
    /// the table at once; a running ingress that already listens there for this service (it
    /// kept serving while no agent ran) just gets the table.
    pub async fn open_ingress(
        &self,
        link: &IngressLink,
        service: &str,
        port: u16,
        current: &Current,
    ) -> Result<u16, AgentError> {
        let mut routes = self.routes.lock().await;
        let replicas = current.replicas.get(service).cloned().unwrap_or_default();
        let table: Vec<Backend> = replicas.iter().map(|r| backend(r)).collect();
        let label = format!("{}/{service}", self.name);
        let port = link.put(port, &label, table.clone()).await?;
        self.set_ingress(service, port);
        routes.routed.insert(service.to_owned(), replicas);
        routes
            .pushed
            .insert(service.to_owned(), (link.generation(), port, table));
        Ok(port)
    }

    /// Points each ingress at its service's current replicas, and waits until the ingress
    /// acknowledged it: from then on no new request goes to a replica left out.
    pub async fn publish(&self, link: &IngressLink, current: &Current) {
        let mut routes = self.routes.lock().await;
        let services: Vec<String> = lock(&self.ingresses).keys().cloned().collect();
        for service in services {
            let replicas = current.replicas.get(&service).cloned().unwrap_or_default();
            routes.routed.insert(service.clone(), replicas);
            self.push(link, &mut routes, &service, true).await;
        }
    }

    /// Points `service`'s ingress at `replicas` alone (before the desired state follows).
    pub async fn point_ingress(
        &self,
        link: &IngressLink,
        service: &str,
        replicas: Vec<Arc<Replica>>,
    ) {
        let mut routes = self.routes.lock().await;
        routes.routed.insert(service.to_owned(), replicas);
        self.push(link, &mut routes, service, true).await;
    }

    /// Pushes each table whose content changed since the ingress last acknowledged it (a
    /// replica turned healthy, unhealthy or draining), or that a new ingress never received.
    pub async fn sync_routes(&self, link: &IngressLink) {
        let mut routes = self.routes.lock().await;
        let services: Vec<String> = lock(&self.ingresses).keys().cloned().collect();
        for service in services {
            self.push(link, &mut routes, &service, false).await;
        }
    }

    async fn push(&self, link: &IngressLink, routes: &mut Routes, service: &str, always: bool) {
        let Some(port) = self.ingress_port(service) else {
            return;
        };
        let table: Vec<Backend> = routes
            .routed
            .get(service)
            .map(|replicas| replicas.iter().map(|r| backend(r)).collect())
            .unwrap_or_default();
        let generation = link.generation();
        if !always
            && routes
                .pushed
                .get(service)
                .is_some_and(|pushed| *pushed == (generation, port, table.clone()))
        {
            return;
        }
        let label = format!("{}/{service}", self.name);
        match link.put(port, &label, table.clone()).await {
            Ok(_) => {
                routes
                    .pushed
                    .insert(service.to_owned(), (link.generation(), port, table));
            }
            Err(e) => {
                routes.pushed.remove(service);
                if !self.ingress_failure_reported() {
                    self.record_event(
                        Some(service),
                        format!("cannot update the ingress: {e}; retrying"),
                    );
                }
            }
        }
    }

    pub fn record_event(&self, service: Option<&str>, message: String) {
        eprintln!("agent: {}: {message}", self.name);
        let mut events = lock(&self.events);
        events.push_back(AgentEvent {
            at: Utc::now(),
            service: service.map(str::to_owned),
            message,
        });
        while events.len() > MAX_EVENTS {
            events.pop_front();
        }
    }

    /// Claims the right to roll out; `false` when a rollout already runs.
    pub fn begin_rollout(&self, state: RolloutState) -> bool {
        let mut active = lock(&self.active_rollout);
        if active.is_some() {
            return false;
        }
        *active = Some(state.id.clone());
        let mut rollouts = lock(&self.rollouts);
        rollouts.push_back(state);
        while rollouts.len() > MAX_ROLLOUTS_KEPT {
            rollouts.pop_front();
        }
        true
    }

    pub fn update_rollout(&self, id: &str, change: impl FnOnce(&mut RolloutState)) {
        if let Some(state) = lock(&self.rollouts).iter_mut().find(|r| r.id == id) {
            change(state);
        }
    }

    pub fn end_rollout(&self, id: &str) {
        let mut active = lock(&self.active_rollout);
        if active.as_deref() == Some(id) {
            *active = None;
        }
    }

    pub fn rollout_running(&self) -> bool {
        lock(&self.active_rollout).is_some()
    }

    pub fn active_rollout(&self) -> Option<String> {
        lock(&self.active_rollout).clone()
    }

    pub fn rollout(&self, id: &str) -> Option<RolloutState> {
        lock(&self.rollouts).iter().find(|r| r.id == id).cloned()
    }

    pub async fn state(&self) -> Option<EnvironmentState> {
        let current = self.current.lock().await;
        let spec = current.spec.as_ref();
        if spec.is_none() && current.replicas.is_empty() && !self.rollout_running() {
            return None;
        }
        let desired: BTreeMap<String, u32> = spec
            .map(|spec| {
                spec.services
                    .iter()
                    .map(|s| (s.name.clone(), s.replicas))
                    .collect()
            })
            .unwrap_or_default();
        Some(EnvironmentState {
            environment: self.name.clone(),
            release: spec.map(|s| s.release),
            previous_release: current.previous_release,
            ingress_url: spec
                .and_then(|spec| spec.web_service.as_deref())
                .and_then(|web| self.ingress_port(web))
                .map(|port| format!("http://127.0.0.1:{port}")),
            desired,
            replicas: current
                .replicas
                .values()
                .flatten()
                .map(|r| r.to_state())
                .collect(),
            warm: warm::states(&current),
            events: lock(&self.events).iter().cloned().collect(),
            active_rollout: self.active_rollout(),
        })
    }
}

/// How the ingress sees a replica.
fn backend(replica: &Replica) -> Backend {
    Backend {
        name: replica.name.clone(),
        release: replica.release,
        port: replica.host_port,
        serving: replica.is_serving(),
    }
}

fn remaining(until: Instant) -> Option<Duration> {
    until
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

/// Highest `-N` suffix among container names, to keep new names unique.
pub fn highest_index<'a>(names: impl IntoIterator<Item = &'a str>) -> u64 {
    names
        .into_iter()
        .filter_map(|name| name.rsplit('-').next()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(name: &str) -> Arc<Replica> {
        Arc::new(Replica::new(
            format!("id-{name}"),
            name.to_owned(),
            "backend".to_owned(),
            1,
            None,
            Health::Exited(Some(1)),
        ))
    }

    #[test]
    fn replicas_crashing_right_after_start_are_replaced_with_growing_delays() {
        let environment = Environment::new("test");
        let delays: Vec<Option<Duration>> = (0..5)
            .map(|n| environment.note_failures("backend", &[replica(&format!("r{n}"))]))
            .collect();
        assert_eq!(delays[0], None);
        assert_eq!(delays[1], None);
        let third = delays[2].expect("third crash waits");
        let fifth = delays[4].expect("fifth crash waits");
        assert!(third <= Duration::from_secs(1) && third > Duration::from_millis(900));
        assert!(fifth > Duration::from_millis(3900) && fifth <= Duration::from_secs(4));
        assert!(environment.backoff_remaining("backend").is_some());
        assert_eq!(environment.backoff_remaining("worker"), None);
        environment.reset_backoff();
        assert_eq!(environment.backoff_remaining("backend"), None);
        // Another service is counted on its own.
        assert_eq!(environment.note_failures("worker", &[replica("w")]), None);
    }

    #[test]
    fn new_replica_names_continue_above_the_highest_index() {
        let names = ["app-prod-backend-r3-7", "app-prod-worker-r3-12", "stray"];
        assert_eq!(highest_index(names), 12);
        let environment = Environment::new("prod");
        environment.reserve_indices_above(12);
        assert_eq!(environment.next_index.load(Ordering::SeqCst), 13);
    }
}
