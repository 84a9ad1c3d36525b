//! A zero-downtime rollout of one environment: start the new release's replicas, wait until all
//! are healthy, switch the ingress and the desired state at once, drain the old replicas, stop
//! them. A service whose spec did not change keeps its replicas, and one whose replica count
//! alone changed only starts or stops the difference (`converge`). Any new replica failing
//! before the switch removes all new replicas and leaves the old release serving, untouched.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::api::{
    EnvironmentSpec, FailedReplica, RolloutMode, RolloutPhase, RolloutState, RolloutTicket,
    ServiceSpec,
};
use super::converge::{self, Action, Serving};
use super::docker::ContainerStatus;
use super::error::AgentError;
use super::health::Check;
use super::post_mortem::PostMortem;
use super::reconcile::with_ingress_port;
use super::replica::{Health, Replica};
use super::runtime::{check_for, Agent, Current, Environment};
use super::store::EnvironmentRecord;
use super::warm;

/// How long a worker must keep running after its start to count as started.
const WORKER_SETTLE: Duration = Duration::from_millis(500);
/// Added to every readiness deadline for image start-up and Docker latency.
const DEADLINE_MARGIN: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(25);
/// How often a drain reads the in-flight counts: first soon, then less often while requests last.
const DRAIN_POLL_FIRST: Duration = Duration::from_millis(20);
const DRAIN_POLL_MAX: Duration = Duration::from_millis(320);
/// How many of a failed replica's last log lines a rollout reports.
const FAILED_LOG_LINES: usize = 20;

#[derive(Debug)]
pub enum BeginError {
    Invalid(String),
    Busy(String),
}

/// Validates the spec and starts the rollout in the background.
pub fn begin(
    agent: Arc<Agent>,
    spec: EnvironmentSpec,
    mode: RolloutMode,
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
        failed_replicas: Vec::new(),
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
            mode,
            id: &id,
            opened: std::sync::Mutex::new(Vec::new()),
        };
        let mut shutdown = shutdown;
        let begun = Instant::now();
        let outcome = tokio::select! {
            outcome = rollout.execute() => outcome,
            _ = shutdown.changed() => Err("the agent stopped during the rollout".to_owned()),
        };
        environment
            .metrics
            .rollout_ended(outcome.is_ok(), begun.elapsed());
        let replaced = match outcome {
            Ok(replaced) => {
                environment.update_rollout(&id, |state| state.phase = RolloutPhase::Completed);
                replaced
            }
            Err(reason) => {
                rollout.close_opened().await;
                environment.update_rollout(&id, |state| {
                    state.messages.push(format!("rollout failed: {reason}"));
                    state.phase = RolloutPhase::Failed;
                    state.reason = Some(reason);
                });
                Vec::new()
            }
        };
        environment.end_rollout(&id);
        // The replaced replicas are out of rotation since the switch: the deploy need not wait
        // while they finish their requests and stop.
        rollout.drain(replaced).await;
    });
    Ok(ticket)
}

/// Waits, at most `limit`, until no rollout runs (one cut off by the agent's shutdown closes the
/// listeners it opened first); `false` when some still runs.
pub async fn wait_ended(agent: &Agent, limit: Duration) -> bool {
    let begun = Instant::now();
    loop {
        let running = agent.environments().iter().any(|e| e.rollout_running());
        if !running {
            return true;
        }
        if begun.elapsed() >= limit {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
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
    for web in spec.web_service.iter().chain(spec.ingresses.keys()) {
        match spec.services.iter().find(|s| &s.name == web) {
            Some(service) if service.port.is_some() => {}
            Some(_) => return Err(format!("the web service `{web}` has no port")),
            None => return Err(format!("the web service `{web}` is not among the services")),
        }
    }
    let mut ports: Vec<u16> = spec
        .ingress_ports()
        .iter()
        .filter_map(|(_, p)| *p)
        .collect();
    ports.sort_unstable();
    if let Some(pair) = ports.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(format!("two ingresses want port {}", pair[0]));
    }
    Ok(())
}

/// Whether exactly this spec serves at full strength. After a failed rollout the previous
/// release keeps serving, so rolling back to it is a no-op rather than a restart.
fn serves_already(current: &Current, spec: &EnvironmentSpec) -> bool {
    let Some(serving) = &current.spec else {
        return false;
    };
    let same_port = spec.ingress_port.is_none() || spec.ingress_port == serving.ingress_port;
    same_port
        && with_ingress_port(spec, serving.ingress_port) == *serving
        && spec.services.iter().all(|service| {
            let replicas = current
                .replicas
                .get(&service.name)
                .map(Vec::as_slice)
                .unwrap_or_default();
            replicas.len() == service.replicas as usize
                && replicas
                    .iter()
                    .all(|replica| replica.health() == Health::Healthy)
        })
}

struct Rollout<'a> {
    agent: &'a Agent,
    environment: &'a Environment,
    spec: &'a EnvironmentSpec,
    mode: RolloutMode,
    id: &'a str,
    /// The listeners this rollout opened that the environment does not own yet (until the
    /// switch): closed when the rollout ends without completing, even when cut off.
    opened: std::sync::Mutex<Vec<u16>>,
}

impl Rollout<'_> {
    fn say(&self, message: String) {
        self.environment
            .update_rollout(self.id, |state| state.messages.push(message));
    }

    /// Rolls the release out; returns the replicas it replaced, which no longer serve and are
    /// left to [`Self::drain`].
    async fn execute(&self) -> Result<Vec<Arc<Replica>>, String> {
        let spec = self.spec;
        self.say(format!(
            "rolling out release {} of {}/{}",
            spec.release, spec.app, spec.environment
        ));
        if self.mode == RolloutMode::Converge
            && serves_already(&*self.environment.current.lock().await, spec)
        {
            self.say(format!(
                "release {} still serves with every replica healthy; nothing to restart",
                spec.release
            ));
            return Ok(Vec::new());
        }
        let (actions, kept) = self.plan().await;
        let new_ingresses = self.prepare_ingresses().await?;
        let (before, old) = self
            .start_and_switch(&actions, &kept, &new_ingresses)
            .await?;
        let say = |m| self.say(m);
        let old = warm::keep(
            self.agent,
            self.environment,
            before.as_ref(),
            spec,
            old,
            say,
        )
        .await;
        self.say(format!("release {} is serving", spec.release));
        Ok(old)
    }

    /// Starts the new replicas (or switches to warm ones), waits until they are ready and
    /// switches; what served before and the replicas the switch replaced.
    async fn start_and_switch(
        &self,
        actions: &[Action],
        kept: &[Arc<Replica>],
        new_ingresses: &[(String, u16)],
    ) -> Result<(Option<EnvironmentSpec>, Vec<Arc<Replica>>), String> {
        let spec = self.spec;
        let reused = match self.mode {
            RolloutMode::Converge => warm::take_matching(self.agent, self.environment, spec).await,
            RolloutMode::Restart => warm::Reused::new(),
        };
        let mut started =
            warm::switch_early(self.agent, self.environment, spec, &reused, |m| self.say(m)).await;
        // Replicas start concurrently, in two waves: first those whose readiness is a settle
        // time (no health check), so that they settle while the health-checked ones start (their
        // starts contend inside Docker, so one wave of all would settle only after the last).
        let (settling, probed): (Vec<_>, Vec<_>) = spec
            .services
            .iter()
            .zip(actions)
            .filter(|(service, _)| !reused.contains_key(&service.name))
            .partition(|(service, _)| matches!(check_for(spec, service), Check::Running));
        let mut first_failure = None;
        for wave in [settling, probed] {
            for (service, result) in self.start_wave(wave).await {
                match result {
                    Ok(replica) => {
                        self.say(format!("{}: started {}", service.name, describe(&replica)));
                        started.push((service.clone(), replica));
                    }
                    Err(e) if first_failure.is_none() => first_failure = Some((service, e)),
                    Err(_) => {}
                }
            }
            if first_failure.is_some() {
                break;
            }
        }
        if let Some((service, e)) = first_failure {
            let reason = format!("{}: cannot start a replica: {e}", service.name);
            let failed = FailedReplica {
                service: service.name.clone(),
                container_name: String::new(),
                reason: reason.clone(),
                exit_code: None,
                oom_killed: false,
                last_probe: None,
                logs: Vec::new(),
            };
            self.environment
                .update_rollout(self.id, |state| state.failed_replicas.push(failed));
            self.abandon(&started).await;
            return Err(reason);
        }
        if let Err(reason) = self.wait_ready(&started).await {
            self.record_failures(&started).await;
            self.abandon(&started).await;
            return Err(reason);
        }
        let before = self.environment.current.lock().await.spec.clone();
        let old = self.switch(new_ingresses, kept, &started).await?;
        Ok((before, old))
    }

    /// Starts every replica the actions ask for, concurrently.
    async fn start_wave<'s>(
        &self,
        wave: Vec<(&'s ServiceSpec, &Action)>,
    ) -> Vec<(&'s ServiceSpec, Result<Arc<Replica>, AgentError>)> {
        let starts = wave.into_iter().flat_map(|(service, action)| {
            (0..action.starts(service.replicas)).map(move |_| async move {
                let result = self
                    .agent
                    .start_replica(self.environment, self.spec, service)
                    .await;
                (service, result)
            })
        });
        futures_util::future::join_all(starts).await
    }

    /// Each service's action (every one replaced on a restart) and the serving replicas the
    /// actions keep.
    async fn plan(&self) -> (Vec<Action>, Vec<Arc<Replica>>) {
        let current = self.environment.current.lock().await;
        let mut actions = Vec::new();
        let mut kept = Vec::new();
        for service in &self.spec.services {
            let replicas = current
                .replicas
                .get(&service.name)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let healthy = || replicas.iter().filter(|r| r.health() == Health::Healthy);
            let serving = current.spec.as_ref().and_then(|serving| {
                let spec = serving.services.iter().find(|s| s.name == service.name)?;
                Some(Serving {
                    spec,
                    has_ingress: serving.has_ingress(&service.name),
                    healthy: healthy().count(),
                    total: replicas.len(),
                })
            });
            let action = match self.mode {
                RolloutMode::Restart => Action::Replace,
                RolloutMode::Converge => {
                    converge::decide(serving, service, self.spec.has_ingress(&service.name))
                }
            };
            let keeps = action.keeps(service.replicas);
            match action {
                Action::Keep => self.say(format!(
                    "{}: unchanged; its {keeps} replica(s) keep running",
                    service.name
                )),
                Action::Resize { start, .. } => self.say(format!(
                    "{}: keeps {keeps} replica(s), starts {start}, stops {}",
                    service.name,
                    replicas.len() - keeps
                )),
                Action::Replace => {}
            }
            kept.extend(healthy().take(keeps).cloned());
            actions.push(action);
        }
        (actions, kept)
    }

    /// The ingresses that will serve after the switch, by service: a service whose ingress
    /// already listens on the wanted port keeps it; a new one is opened now (with no backend)
    /// so that a port conflict fails the rollout before anything starts.
    async fn prepare_ingresses(&self) -> Result<Vec<(String, u16)>, String> {
        let mut opened = Vec::new();
        for (service, port) in self.spec.ingress_ports() {
            let current_port = self.environment.ingress_port(&service);
            let wanted = port.or(current_port).or_else(|| {
                self.agent
                    .store
                    .record(&self.spec.environment)
                    .and_then(|record| record.spec.ingress_port)
            });
            if current_port.is_some() && wanted == current_port {
                continue;
            }
            let label = format!("{}/{service}", self.environment.name);
            let opening = self
                .agent
                .ingress
                .put(wanted.unwrap_or(0), &label, Vec::new())
                .await;
            let port = opening.map_err(|e| format!("{service}: {e}"))?;
            self.opened_listeners().push(port);
            let who = if self.spec.web_service.as_deref() == Some(service.as_str()) {
                String::new()
            } else {
                format!("{service}: ")
            };
            self.say(format!("{who}ingress listens on http://127.0.0.1:{port}"));
            opened.push((service, port));
        }
        Ok(opened)
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

    /// Makes the kept and new replicas current, atomically for the ingress, and persists the new
    /// desired state; returns the replicas it replaced.
    async fn switch(
        &self,
        new_ingresses: &[(String, u16)],
        kept: &[Arc<Replica>],
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
        let started_replicas = started.iter().map(|(_, replica)| replica);
        for replica in kept.iter().chain(started_replicas) {
            new.entry(replica.service.clone())
                .or_default()
                .push(Arc::clone(replica));
        }
        let web = self.spec.web_service.as_deref();
        let port = web.and_then(|web| {
            new_ingresses
                .iter()
                .find(|(service, _)| service == web)
                .map(|(_, port)| *port)
                .or_else(|| self.environment.ingress_port(web))
        });
        let spec = with_ingress_port(self.spec, port);
        let previous_release = match current.spec.as_ref().map(|s| s.release) {
            Some(release) if release != spec.release => Some(release),
            _ => current.previous_release,
        };
        let record = EnvironmentRecord {
            spec: spec.clone(),
            previous_release,
            replica_releases: other_labels(
                kept.iter()
                    .chain(started.iter().map(|(_, replica)| replica)),
                spec.release,
            ),
        };
        if let Err(e) = self.agent.store.put(record) {
            drop(current);
            self.abandon(started).await;
            return Err(format!("cannot persist the new desired state: {e}"));
        }
        let old_replicas = std::mem::replace(&mut current.replicas, new);
        current.spec = Some(spec);
        current.previous_release = previous_release;
        let link = &self.agent.ingress;
        for (service, port) in new_ingresses {
            let replaced = self.environment.set_ingress(service, *port);
            self.opened_listeners().retain(|opened| opened != port);
            if let Some(replaced) = replaced {
                self.environment.close_listener(link, replaced).await;
            }
        }
        self.environment
            .close_ingresses_except(link, current.spec.as_ref())
            .await;
        self.environment.reset_backoff();
        // Acknowledged by the ingress before the old replicas drain.
        self.environment.publish(link, &current).await;
        drop(current);
        self.environment.record_event(
            None,
            format!("switched traffic to release {}", self.spec.release),
        );
        self.say(format!("switched traffic to release {}", self.spec.release));
        Ok(old_replicas
            .into_values()
            .flatten()
            .filter(|old| !kept.iter().any(|k| Arc::ptr_eq(k, old)))
            .collect())
    }

    fn opened_listeners(&self) -> std::sync::MutexGuard<'_, Vec<u16>> {
        self.opened
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Closes the listeners this rollout opened and the environment never took over.
    async fn close_opened(&self) {
        let opened = std::mem::take(&mut *self.opened_listeners());
        for port in opened {
            self.environment
                .close_listener(&self.agent.ingress, port)
                .await;
        }
    }

    /// Lets in-flight requests on the old replicas finish (bounded by their stop timeout), then
    /// stops and removes them. One poller reads the ingress's in-flight counts for all of them
    /// (one request per poll, however many replicas drain), backing off while requests last.
    async fn drain(&self, old: Vec<Arc<Replica>>) {
        if old.is_empty() {
            return;
        }
        self.say(format!("draining {} old replica(s)", old.len()));
        let (counts, _) = watch::channel(None::<BTreeMap<String, u64>>);
        let stops = old.iter().map(|replica| {
            let mut counts = counts.subscribe();
            async move {
                replica.start_draining();
                let stop_timeout = self
                    .spec
                    .services
                    .iter()
                    .find(|s| s.name == replica.service)
                    .map_or(30, |s| s.stop_timeout_secs);
                let bound = Duration::from_secs(u64::from(stop_timeout));
                let drained = counts.wait_for(|counts| {
                    counts.as_ref().is_some_and(|counts| {
                        let in_flight = counts.get(&replica.name).copied().unwrap_or(0);
                        replica.set_in_flight(in_flight);
                        in_flight == 0
                    })
                });
                let _ = tokio::time::timeout(bound, drained).await;
                drop(counts);
                replica.stop_monitor();
                self.agent
                    .containers
                    .stop_and_remove(&replica.container_id, stop_timeout)
                    .await;
                self.say(format!("{}: stopped {}", replica.service, replica.name));
            }
        });
        let poll = async {
            let mut pause = DRAIN_POLL_FIRST;
            // Ends once every replica stopped waiting (drained or past its bound).
            while counts.receiver_count() > 0 {
                // An ingress that does not answer sends them nothing (a new one never had them).
                let now = self.agent.ingress.in_flight().await.unwrap_or_default();
                counts.send_replace(Some(now));
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(DRAIN_POLL_MAX);
            }
        };
        futures_util::future::join(futures_util::future::join_all(stops), poll).await;
    }

    /// Reads how each failed (or never healthy) new replica ended and its last lines into the
    /// rollout state, before [`Self::abandon`] removes them.
    async fn record_failures(&self, started: &[(ServiceSpec, Arc<Replica>)]) {
        let mut failed = Vec::new();
        let mut slow = Vec::new();
        for (_, replica) in started {
            let seen = self
                .agent
                .containers
                .post_mortem(&replica.container_id, FAILED_LOG_LINES)
                .await;
            let why = match (replica.failure(), seen.exit_code) {
                (Some(why), _) => why,
                (None, Some(code)) => format!("exited (code {code})"),
                (None, None) => {
                    if replica.health() == Health::Starting {
                        slow.push((replica, seen));
                    }
                    continue;
                }
            };
            failed.push(report(replica, why, seen));
        }
        // A rollout that timed out has no failed replica: the not yet healthy ones are the cause.
        if failed.is_empty() {
            failed = slow
                .into_iter()
                .map(|(r, seen)| report(r, "did not become healthy in time".to_owned(), seen))
                .collect();
        }
        self.environment
            .update_rollout(self.id, |state| state.failed_replicas.extend(failed));
    }

    /// Removes every replica this rollout started; the old release keeps serving.
    async fn abandon(&self, started: &[(ServiceSpec, Arc<Replica>)]) {
        // Warm replicas switched to early may have been serving: what serves serves again.
        self.environment
            .publish(&self.agent.ingress, &*self.environment.current.lock().await)
            .await;
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

/// By service, the release labels of `serving` other than `release`: a restarted agent adopts
/// the replicas by their labels, and warm replicas switched back to or replicas a rollout kept
/// still carry the release that started them.
fn other_labels<'a>(
    serving: impl Iterator<Item = &'a Arc<Replica>>,
    release: u64,
) -> BTreeMap<String, Vec<u64>> {
    let mut labels: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for replica in serving.filter(|replica| replica.release != release) {
        let service = labels.entry(replica.service.clone()).or_default();
        if !service.contains(&replica.release) {
            service.push(replica.release);
        }
    }
    labels
}

fn report(replica: &Replica, reason: String, seen: PostMortem) -> FailedReplica {
    FailedReplica {
        service: replica.service.clone(),
        container_name: replica.name.clone(),
        reason,
        exit_code: seen.exit_code,
        oom_killed: seen.oom_killed,
        last_probe: replica.last_probe(),
        logs: seen.logs,
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
