//! The agent's API, shared by the agent (server) and the engine (client). JSON over HTTP on
//! 127.0.0.1; the agent writes `{state_dir}/agent.json` ([`AgentEndpoint`]) so clients find it.
//!
//! Before sending the token, a client proves the listener is the agent:
//! `POST /v1/handshake` body `{"nonce": 64 hex}` → `{"version", "proof"}`, the proof being
//! HMAC-SHA256 under the token (see the `handshake` module); no token is sent with it.
//!
//! Routes (all under `http://127.0.0.1:{port}/v1`, header `authorization: Bearer {token}`):
//! - `GET  /health` → 200 when the agent serves.
//! - `PUT  /environments/{env}/rollouts` body [`EnvironmentSpec`] → 202 [`RolloutTicket`]:
//!   starts a zero-downtime rollout of the environment to the spec, decided per service: a
//!   service whose spec (revision included) serves unchanged with every replica healthy keeps
//!   its replicas; one whose replica count alone changed starts or stops the difference (new
//!   replicas join the ingress once healthy, extra ones are drained); any other change replaces
//!   the service's replicas (new replicas first, wait healthy, switch ingress, drain old, stop
//!   old). With `keep_warm_ms`, replaced web replicas stay running out of rotation for that
//!   long, and a rollout whose web service spec equals theirs switches back to them instead of
//!   starting new ones. A rollout already running for the same environment → 409.
//!   `?mode=restart` ([`RolloutMode`]) replaces every replica.
//! - `GET  /environments/{env}/rollouts/{id}` → [`RolloutState`] (poll until not running).
//! - `GET  /environments/{env}` → [`EnvironmentState`] (404 when unknown).
//! - `DELETE /environments/{env}` → stops and removes every replica of the environment.
//! - `GET  /environments/{env}/metrics` → [`MetricsSeries`] (per-second traffic samples).
//! - `GET  /metrics` (outside `/v1`, no token) → every environment's counters in the
//!   Prometheus text format.
//! - `POST /shutdown` → the agent stops its listeners and exits (containers keep running; a
//!   restarted agent adopts them by label).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a running agent listens; written by the agent to `{state_dir}/agent.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentEndpoint {
    pub pid: u32,
    pub port: u16,
    pub token: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheckSpec {
    pub path: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub start_period_ms: u64,
}

/// One service of an environment at one release: what every replica runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    /// Local image ID (`sha256:…`), never a mutable tag.
    pub image: String,
    /// Overrides the image's CMD when set.
    pub command: Option<Vec<String>>,
    /// Every variable, secrets included (the agent keeps its state file mode 0600).
    pub env: BTreeMap<String, String>,
    pub replicas: u32,
    /// Container port of a web service; published on 127.0.0.1 with a random host port.
    pub port: Option<u16>,
    pub health: Option<HealthCheckSpec>,
    pub stop_timeout_secs: u32,
    pub cpu: Option<u32>,
    pub memory_mib: Option<u32>,
    /// Docker volume binds, `volume-name:/path`.
    pub volumes: Vec<String>,
    /// The environment's Docker network, where accessories answer by name (`db`, `redis`).
    /// Set at rollout, not stored in revisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// How much log Docker keeps for each of its containers; `None`: [`LogLimits::default`].
    /// Set at rollout, not stored in revisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<LogLimits>,
    /// The immutable revision this spec is (`family:N`): a rollout keeps the replicas of a
    /// service whose revision and spec are unchanged, and a new revision of the same spec
    /// (`deploy --force`) replaces them. Set at rollout, not stored in revisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

/// The bound on a container's log: at most `max_files` json-file logs of `max_size_mb` MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLimits {
    pub max_size_mb: u32,
    pub max_files: u32,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            max_size_mb: 10,
            max_files: 3,
        }
    }
}

/// The desired state of one environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentSpec {
    pub app: String,
    pub environment: String,
    pub release: u64,
    /// Stable 127.0.0.1 port of the ingress for the web service (the first with a port).
    pub ingress_port: Option<u16>,
    /// Which service the ingress sends traffic to.
    pub web_service: Option<String>,
    /// The other web services, each with an ingress of its own on a stable 127.0.0.1 port
    /// (Flower's UI, for instance): service → port.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ingresses: BTreeMap<String, u16>,
    pub services: Vec<ServiceSpec>,
    /// How long the replaced release's web replicas stay running out of rotation after a
    /// switch, so that a rollback to it within that time is a switch, not a start; 0: off.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub keep_warm_ms: u64,
}

fn is_zero(ms: &u64) -> bool {
    *ms == 0
}

impl EnvironmentSpec {
    /// Every service with an ingress and the port it wants (`None`: any free port, which only
    /// the web service's first rollout without `ingress_port` asks for).
    pub fn ingress_ports(&self) -> Vec<(String, Option<u16>)> {
        self.web_service
            .iter()
            .map(|web| (web.clone(), self.ingress_port))
            .chain(self.ingresses.iter().map(|(s, p)| (s.clone(), Some(*p))))
            .collect()
    }

    /// Whether `service` is served through an ingress.
    pub fn has_ingress(&self, service: &str) -> bool {
        self.web_service.as_deref() == Some(service) || self.ingresses.contains_key(service)
    }
}

/// Whether a rollout of the spec that already serves replaces its replicas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutMode {
    /// Only what differs from what serves (nothing, when it is the same spec at full strength).
    #[default]
    Converge,
    /// New replicas for every service, even when the same spec serves.
    Restart,
}

impl RolloutMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutMode::Converge => "converge",
            RolloutMode::Restart => "restart",
        }
    }
}

/// The query of `PUT …/rollouts`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct RolloutQuery {
    #[serde(default)]
    pub mode: RolloutMode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutTicket {
    pub id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutPhase {
    Running,
    Completed,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutState {
    pub id: String,
    pub release: u64,
    pub phase: RolloutPhase,
    /// Why it failed (e.g. `backend replica 2 failed its health check: 503 …`).
    pub reason: Option<String>,
    /// Progress messages so far, oldest first (clients print the ones they have not seen).
    pub messages: Vec<String>,
    /// The replicas that made a failed rollout fail, read before they were removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_replicas: Vec<FailedReplica>,
}

/// What the agent saw of a replica that failed a rollout, read from the Docker Engine before
/// the replica was removed (its logs and exit are gone after that).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedReplica {
    pub service: String,
    pub container_name: String,
    /// Why it failed, in the agent's words (`exited (code 1)`, `failed its health check: …`).
    pub reason: String,
    pub exit_code: Option<i64>,
    /// Docker's `State.OOMKilled`: killed for exceeding its memory limit.
    #[serde(default)]
    pub oom_killed: bool,
    /// The last health-check result, when a check ran.
    pub last_probe: Option<String>,
    /// Its last log lines, oldest first.
    #[serde(default)]
    pub logs: Vec<String>,
}

/// Where a replica is in its life, as the agent sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaPhase {
    /// Started, not yet healthy.
    Starting,
    /// Serving (web) or working (worker); its health is in `healthy`.
    Running,
    /// Out of rotation, finishing its requests before it stops.
    Draining,
    /// A replaced release's web replica, out of rotation but running until `warm_until`, so
    /// that a rollback to its release switches back to it at once.
    Warm,
    Exited,
}

impl ReplicaPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Draining => "draining",
            Self::Warm => "warm",
            Self::Exited => "exited",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaState {
    pub container_id: String,
    pub container_name: String,
    pub service: String,
    pub release: u64,
    pub state: ReplicaPhase,
    /// None until the first health probe (workers: None).
    pub healthy: Option<bool>,
    /// The 127.0.0.1 host port the container's port is published on.
    pub host_port: Option<u16>,
    /// Requests being proxied to this replica right now.
    pub in_flight: u64,
    /// When a warm replica is stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentEvent {
    pub at: DateTime<Utc>,
    pub service: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentState {
    pub environment: String,
    /// The release the agent keeps running (the last completed rollout).
    pub release: Option<u64>,
    pub previous_release: Option<u64>,
    pub ingress_url: Option<String>,
    /// Desired replicas per service.
    pub desired: BTreeMap<String, u32>,
    pub replicas: Vec<ReplicaState>,
    /// The replaced release's web replicas kept warm out of rotation (phase `warm`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warm: Vec<ReplicaState>,
    /// Recent events, newest last (replaced replicas, switches, failed probes).
    pub events: Vec<AgentEvent>,
    /// The id of the rollout running now, if any (e.g. one whose CLI was killed: wait for it
    /// with `GET …/rollouts/{id}` before starting another, which would get 409).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_rollout: Option<String>,
}

/// Labels on every container the local engine creates; the agent adopts containers by them.
pub mod labels {
    pub const APP: &str = "dev.kaapi.app";
    pub const ENVIRONMENT: &str = "dev.kaapi.environment";
    pub const SERVICE: &str = "dev.kaapi.service";
    pub const RELEASE: &str = "dev.kaapi.release";
    /// `replica` for managed replicas, `task` for one-off tasks.
    pub const ROLE: &str = "dev.kaapi.role";
}

/// `GET /v1/environments/{env}/metrics`: the ingress' recent traffic, one sample per period,
/// oldest first (the agent keeps the last ten minutes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsSeries {
    pub environment: String,
    pub period_ms: u64,
    pub samples: Vec<MetricsSample>,
}

/// What the ingress answered during one period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsSample {
    /// End of the period.
    pub at: DateTime<Utc>,
    /// The release serving at the end of the period.
    pub release: Option<u64>,
    pub requests: u64,
    /// 5xx answers from replicas plus requests the ingress could not serve.
    pub errors: u64,
    /// Latency quantiles (milliseconds, to the response headers), none without requests.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}
