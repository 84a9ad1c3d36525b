//! Gathers a [`Snapshot`] once a second: each environment's status and releases through its
//! engine; for docker environments also the agent's traffic series and the rollout in progress.
//! The release history is kept between reads ([`KnownReleases`]): finished releases are read
//! once, new and unfinished ones at every read. Nothing here changes anything.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use kaapi_agent::AgentClient;
use kaapi_core::config::{EngineKind, ResolvedEnvironment};
use kaapi_core::engine::Engine;
use kaapi_core::release::{Outcome, Release};
use kaapi_core::release_history::KnownReleases;

use super::snapshot::{self, EnvironmentView, Snapshot};
use crate::{deploy_journal, engines};

/// How far back the plots of a remote engine (CloudWatch, one point a minute) go.
const REMOTE_WINDOW: Duration = Duration::from_secs(3 * 3600);
/// How often an ECS environment is read again: each read is several AWS calls, and CloudWatch
/// has one point a minute; the page itself refreshes every second from what was read.
const REMOTE_REFRESH: Duration = Duration::from_secs(15);

/// One environment the dashboard watches, with its engine once connected.
pub struct Watched {
    target: ResolvedEnvironment,
    engine: Option<Box<dyn Engine>>,
    /// The release history as last read.
    history: KnownReleases,
    /// How long finished deploys took, for the ones the dashboard saw running.
    durations: HashMap<u64, f64>,
    running: Vec<u64>,
    /// The last view of a remote environment and when it was read.
    last_remote: Option<(Instant, EnvironmentView)>,
}

impl Watched {
    pub fn new(target: ResolvedEnvironment) -> Self {
        Watched {
            target,
            engine: None,
            history: KnownReleases::default(),
            durations: HashMap::new(),
            running: Vec::new(),
            last_remote: None,
        }
    }

    /// The environment now: read afresh locally, at most every [`REMOTE_REFRESH`] on ECS.
    pub async fn view(&mut self, state_dir: &Path) -> EnvironmentView {
        if self.target.env().engine == EngineKind::Docker {
            return self.read(state_dir).await;
        }
        if let Some((at, view)) = &self.last_remote {
            if at.elapsed() < REMOTE_REFRESH {
                return view.clone();
            }
        }
        let view = self.read(state_dir).await;
        self.last_remote = Some((Instant::now(), view.clone()));
        view
    }

    async fn read(&mut self, state_dir: &Path) -> EnvironmentView {
        let mut view = EnvironmentView {
            name: self.target.name().to_owned(),
            engine: match self.target.env().engine {
                EngineKind::Docker => "docker".to_owned(),
                EngineKind::Ecs => "ecs".to_owned(),
            },
            url: None,
            error: None,
            current_release: None,
            health: "unknown",
            services: Vec::new(),
            releases: Vec::new(),
            deploy: None,
            series: None,
        };
        if self.engine.is_none() {
            match engines::connect(&self.target).await {
                Ok(engine) => self.engine = Some(engine),
                Err(e) => {
                    view.error = Some(e.to_string());
                    return view;
                }
            }
        }
        let Some(engine) = self.engine.as_deref() else {
            return view;
        };
        view.url = engine.url();
        // Before the history: a deploy removes its journal only after recording its outcome,
        // so a journal gone here means the history read next shows the deploy ended, never a
        // release still in progress without its journal.
        let journal = deploy_journal::read(state_dir, self.target.name());
        let mut errors = Vec::new();
        let releases = match self.history.refresh(engine).await {
            Ok(releases) => releases.to_vec(),
            Err(e) => {
                errors.push(format!("releases: {e}"));
                Vec::new()
            }
        };
        match engine.status().await {
            Ok(status) => {
                view.url = status.url.or(view.url);
                view.health = snapshot::health_of(&status.services);
                view.current_release = status.services.iter().find_map(|s| s.current_release);
                view.services = status.services;
            }
            Err(e) => errors.push(format!("status: {e}")),
        }
        if view.current_release.is_none() {
            view.current_release = releases
                .iter()
                .find(|r| r.outcome == Outcome::Succeeded)
                .map(|r| r.number);
        }
        let in_progress = releases.iter().find(|r| r.outcome == Outcome::InProgress);
        if self.target.env().engine == EngineKind::Docker {
            match local_agent_view(state_dir, self.target.name(), in_progress).await {
                Ok((series, deploy)) => {
                    view.series = series;
                    view.deploy = deploy;
                }
                Err(e) => errors.push(format!("agent: {e}")),
            }
        } else {
            match engine.traffic(REMOTE_WINDOW).await {
                Ok(traffic) => {
                    view.series = traffic.map(|t| snapshot::series_of(self.target.name(), t));
                }
                Err(e) => errors.push(format!("metrics: {e}")),
            }
            if let Some(release) = in_progress {
                let messages = view
                    .services
                    .iter()
                    .filter_map(|s| s.rollout.clone().map(|r| format!("{}: {r}", s.service)))
                    .collect();
                view.deploy = Some(snapshot::deploy_view(release, None, messages));
            }
        }
        // A deploy run from this machine reports its own phases, from the lock and the build on.
        if let Some(journal) = journal {
            let messages = view
                .deploy
                .take()
                .map(|deploy| deploy.messages)
                .unwrap_or_default();
            let release = in_progress.map(|r| r.number);
            view.deploy = Some(snapshot::journal_view(&journal, release, messages));
        }
        self.note_durations(&releases);
        view.releases = releases
            .iter()
            .map(|r| snapshot::release_view(r, self.duration_of(r)))
            .collect();
        if !errors.is_empty() {
            view.error = Some(errors.join("; "));
        }
        view
    }

    /// Remembers when a deploy the dashboard saw running ended.
    fn note_durations(&mut self, releases: &[Release]) {
        let now = Utc::now();
        for release in releases {
            let running = release.outcome == Outcome::InProgress;
            let was_running = self.running.contains(&release.number);
            if !running && was_running {
                let took = (now - release.meta.created_at).num_milliseconds() as f64 / 1000.0;
                self.durations.insert(release.number, took.max(0.0));
            }
        }
        self.running = releases
            .iter()
            .filter(|r| r.outcome == Outcome::InProgress)
            .map(|r| r.number)
            .collect();
    }

    fn duration_of(&self, release: &Release) -> Option<f64> {
        if release.outcome == Outcome::InProgress {
            let so_far = (Utc::now() - release.meta.created_at).num_milliseconds() as f64 / 1000.0;
            return Some(so_far.max(0.0));
        }
        self.durations.get(&release.number).copied()
    }
}

/// The agent's traffic series and the rollout in progress; nothing when no agent runs (the
/// dashboard never starts one).
async fn local_agent_view(
    state_dir: &Path,
    environment: &str,
    in_progress: Option<&Release>,
) -> Result<
    (
        Option<kaapi_agent::api::MetricsSeries>,
        Option<snapshot::DeployView>,
    ),
    kaapi_agent::AgentError,
> {
    let Some(agent) = AgentClient::connect(state_dir).await? else {
        let deploy = in_progress.map(|r| snapshot::deploy_view(r, None, Vec::new()));
        return Ok((None, deploy));
    };
    let series = agent.metrics_series(environment).await?;
    let Some(release) = in_progress else {
        return Ok((series, None));
    };
    let state = agent.environment(environment).await?;
    let mut messages = Vec::new();
    if let Some(id) = state.as_ref().and_then(|s| s.active_rollout.clone()) {
        let rollout = agent.rollout_state(environment, &id).await?;
        if rollout.release == release.number {
            messages = rollout.messages;
        }
    }
    Ok((
        series,
        Some(snapshot::deploy_view(release, state.as_ref(), messages)),
    ))
}

/// Every watched environment, in config order.
pub async fn snapshot(watched: &mut [Watched], state_dir: &Path) -> Snapshot {
    let mut environments = Vec::with_capacity(watched.len());
    for environment in watched.iter_mut() {
        environments.push(environment.view(state_dir).await);
    }
    Snapshot {
        generated_at: Utc::now(),
        environments,
    }
}
