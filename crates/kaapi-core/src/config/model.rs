//! The shape of `deploy.toml`, as serde reads it. Validation beyond types lives in
//! `validate.rs`; defaults that depend on other fields are resolved by accessor methods.

use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::command::CommandLine;
use super::duration::HumanDuration;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Resource prefix (Kaapi's `AWS_RESOURCE_PREFIX`), e.g. `kaapi`.
    pub app: String,
    pub image: ImageConfig,
    #[serde(default)]
    pub migrations: Option<MigrationsConfig>,
    pub services: IndexMap<String, ServiceConfig>,
    /// Backing services (database, cache, broker) the docker engine runs beside the app.
    #[serde(default)]
    pub accessories: IndexMap<String, AccessoryConfig>,
    /// Variables shared by every environment.
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// Names of variables whose values are secrets; each environment says where they live.
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub variables: VariablesConfig,
    /// Docker engine: how much log every container it starts keeps.
    #[serde(default, skip_serializing_if = "ContainerLogsConfig::is_default")]
    pub container_logs: ContainerLogsConfig,
    pub environments: IndexMap<String, EnvironmentConfig>,
    /// Webhooks told how each deploy and rollback ended (an environment may override them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<crate::notify::NotificationsConfig>,
    /// How many earlier releases keep their images and revisions; every successful deploy and
    /// rollback prunes beyond it (an environment may override it). Absent: nothing is pruned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionConfig>,
}

/// `[retention]`: what automatic pruning keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Successful releases kept before the current one (what `rollback` can go back to).
    pub keep: u32,
}

/// The bound on each container's log (Docker's json-file rotation): at most `max_files` files
/// of `max_size_mb` MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerLogsConfig {
    #[serde(default = "default_log_max_size_mb")]
    pub max_size_mb: u32,
    #[serde(default = "default_log_max_files")]
    pub max_files: u32,
}

fn default_log_max_size_mb() -> u32 {
    10
}

fn default_log_max_files() -> u32 {
    3
}

impl Default for ContainerLogsConfig {
    fn default() -> Self {
        ContainerLogsConfig {
            max_size_mb: default_log_max_size_mb(),
            max_files: default_log_max_files(),
        }
    }
}

impl ContainerLogsConfig {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageConfig {
    /// Build context, relative to the config file's directory.
    pub context: String,
    /// Dockerfile, relative to the context.
    #[serde(default = "default_dockerfile")]
    pub dockerfile: String,
    #[serde(default)]
    pub build_args: IndexMap<String, String>,
    /// Shell command run from the config file's directory before the build.
    #[serde(default)]
    pub pre_build: Option<String>,
    /// Target platform (`linux/amd64`, `linux/arm64`); ECS environments default to
    /// `linux/amd64`, the Docker engine to its own platform.
    #[serde(default)]
    pub platform: Option<String>,
    /// Build secrets by id, for `RUN --mount=type=secret,id=ID`: read when the build runs and
    /// never stored in the image, the build context or the log.
    #[serde(default)]
    pub secrets: IndexMap<String, BuildSecretConfig>,
}

/// Where a build secret's value comes from: exactly one of `env` or `file`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSecretConfig {
    /// Name of a variable in the deployer's environment.
    #[serde(default)]
    pub env: Option<String>,
    /// File path, relative to the config file's directory.
    #[serde(default)]
    pub file: Option<String>,
}

fn default_dockerfile() -> String {
    "Dockerfile".to_owned()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationsConfig {
    pub command: CommandLine,
    /// Which service's revision runs the migrations; defaults to the web service.
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// Prints the database's current schema version (`alembic current`); each release records
    /// it after its migrations, and `rollback` compares it with the target's.
    #[serde(default)]
    pub version_command: Option<CommandLine>,
    /// Migrates the database down to `{version}` (`alembic downgrade {version}`); `rollback`
    /// runs it on the serving release when the target's code predates the database.
    #[serde(default)]
    pub downgrade_command: Option<CommandLine>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    /// Serves HTTP on `port`; receives traffic and is health-checked over HTTP.
    Web,
    /// Runs in the background; kept alive, never receives traffic.
    Worker,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Defaults to `web` when `port` is set, else `worker`.
    #[serde(default)]
    pub kind: Option<ServiceKind>,
    /// Overrides the image's CMD; omitted means the image's own CMD.
    #[serde(default)]
    pub command: Option<CommandLine>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// CPU units (1024 = one vCPU).
    #[serde(default)]
    pub cpu: Option<u32>,
    /// Memory in MiB.
    #[serde(default)]
    pub memory: Option<u32>,
    #[serde(default)]
    pub stop_timeout: Option<HumanDuration>,
    #[serde(default)]
    pub health: Option<HealthConfig>,
    /// Variables for this service only (on top of the shared and environment ones).
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// Docker engine: named volumes, `NAME:/path` (the volume is `{app}-{env}-NAME`).
    /// Migrations and one-off tasks mount the volumes of the service they run as.
    #[serde(default)]
    pub volumes: Vec<String>,
}

fn default_replicas() -> u32 {
    1
}

impl ServiceConfig {
    pub fn kind(&self) -> ServiceKind {
        self.kind.unwrap_or(if self.port.is_some() {
            ServiceKind::Web
        } else {
            ServiceKind::Worker
        })
    }

    pub fn stop_timeout(&self) -> Duration {
        self.stop_timeout
            .map(Duration::from)
            .unwrap_or(Duration::from_secs(30))
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    pub path: String,
    /// ECS: the container's own health check, run inside the container (`CMD` form, no shell).
    #[serde(default)]
    pub command: Option<CommandLine>,
    #[serde(default)]
    pub interval: Option<HumanDuration>,
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    #[serde(default)]
    pub retries: Option<u32>,
    #[serde(default)]
    pub start_period: Option<HumanDuration>,
}

impl HealthConfig {
    pub fn interval(&self) -> Duration {
        self.interval
            .map(Duration::from)
            .unwrap_or(Duration::from_secs(10))
    }
    pub fn timeout(&self) -> Duration {
        self.timeout
            .map(Duration::from)
            .unwrap_or(Duration::from_secs(5))
    }
    pub fn retries(&self) -> u32 {
        self.retries.unwrap_or(3)
    }
    pub fn start_period(&self) -> Duration {
        self.start_period
            .map(Duration::from)
            .unwrap_or(Duration::from_secs(30))
    }
}

/// A backing service (Kamal's accessory, compose's `db`/`redis`/…): a container of its own
/// image on the environment's network, reachable by its name, started before migrations and
/// left running (and its volumes kept) across deploys and rollbacks. Docker engine only.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccessoryConfig {
    /// Image reference, e.g. `postgres:16`; it must be in the local Docker Engine.
    pub image: String,
    /// Overrides the image's CMD.
    #[serde(default)]
    pub command: Option<CommandLine>,
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// Names from the top-level `secrets`, read from the environment's `secrets_from`.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Named volumes, `NAME:/path` (the volume is `{app}-{env}-NAME`), kept across deploys.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Published on 127.0.0.1 only: `"5432"` (a free host port) or `"15432:5432"`.
    #[serde(default)]
    pub ports: Vec<String>,
    #[serde(default)]
    pub health: Option<AccessoryHealthConfig>,
    /// Environments it runs in; every docker environment when omitted.
    #[serde(default)]
    pub environments: Option<Vec<String>>,
}

/// An accessory's health check: a command run inside the container, or an HTTP path probed
/// through one of its published ports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccessoryHealthConfig {
    #[serde(default)]
    pub command: Option<CommandLine>,
    #[serde(default)]
    pub path: Option<String>,
    /// Container port the HTTP path is probed on; one of `ports`.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub interval: Option<HumanDuration>,
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    #[serde(default)]
    pub retries: Option<u32>,
    #[serde(default)]
    pub start_period: Option<HumanDuration>,
}

impl AccessoryHealthConfig {
    pub fn interval(&self) -> Duration {
        self.interval
            .map(Duration::from)
            .unwrap_or(Duration::from_secs(2))
    }
    pub fn timeout(&self) -> Duration {
        self.timeout
            .map(Duration::from)
            .unwrap_or(Duration::from_secs(5))
    }
    pub fn retries(&self) -> u32 {
        self.retries.unwrap_or(10)
    }
    pub fn start_period(&self) -> Duration {
        self.start_period.map(Duration::from).unwrap_or_default()
    }
}

/// A published accessory port: `5432` or `15432:5432` (host port first, as in compose).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMapping {
    /// `None`: the Docker Engine picks a free 127.0.0.1 port.
    pub host: Option<u16>,
    pub container: u16,
}

impl PortMapping {
    pub fn parse(text: &str) -> Option<Self> {
        let port = |p: &str| p.trim().parse::<u16>().ok().filter(|p| *p != 0);
        match text.split_once(':') {
            Some((host, container)) => Some(Self {
                host: Some(port(host)?),
                container: port(container)?,
            }),
            None => Some(Self {
                host: None,
                container: port(text)?,
            }),
        }
    }
}

impl AccessoryConfig {
    /// Whether it runs in `environment` (of the given engine): accessories are docker-only.
    pub fn runs_in(&self, environment: &str, engine: EngineKind) -> bool {
        engine == EngineKind::Docker
            && self
                .environments
                .as_ref()
                .is_none_or(|names| names.iter().any(|n| n == environment))
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VariablesConfig {
    /// The list of variables every environment must provide, relative to the config file.
    #[serde(default)]
    pub example: Option<String>,
    /// Variables of the example file that may stay unset.
    #[serde(default)]
    pub optional: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Docker,
    Ecs,
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EngineKind::Docker => "docker",
            EngineKind::Ecs => "ecs",
        })
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentConfig {
    pub engine: EngineKind,
    #[serde(default)]
    pub region: Option<String>,
    /// Public URL used to verify the deploy from outside.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub trigger: Option<TriggerConfig>,
    /// Environment whose image this one deploys instead of rebuilding.
    #[serde(default)]
    pub promote_from: Option<String>,
    /// Where secret values come from for this environment.
    #[serde(default)]
    pub secrets_from: Option<SecretSource>,
    /// Registry to push to (docker engine: optional; ecs: overrides the ECR host).
    #[serde(default)]
    pub registry: Option<String>,
    /// Docker engine: the stable loopback port of the ingress.
    #[serde(default)]
    pub ingress_port: Option<u16>,
    /// Docker engine: the stable loopback ports of the other web services (e.g. `flower =
    /// 5555`), each served through an ingress of its own.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub ingress_ports: IndexMap<String, u16>,
    /// Docker engine: how long the replaced release's web replicas stay running out of
    /// rotation after a deploy, so that a rollback within that time is a switch, not a start
    /// (`0s`: off); [`EnvironmentConfig::keep_warm`] gives the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_warm: Option<HumanDuration>,
    /// ECS: role assumed through GitHub's OIDC token.
    #[serde(default)]
    pub role_arn: Option<String>,
    /// ECS: seconds to wait for a rollout before rolling back ourselves.
    #[serde(default)]
    pub rollout_timeout: Option<HumanDuration>,
    /// ECS: the deregistration delay of the web service's target group (AWS's default: 300 s);
    /// rollouts poll fast only once old targets can have drained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregistration_delay: Option<HumanDuration>,
    #[serde(default)]
    pub names: NameOverrides,
    /// Variables for this environment (override the shared ones).
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// Per-service replica counts for this environment.
    #[serde(default)]
    pub replicas: IndexMap<String, u32>,
    /// Replaces the shared `[notifications]` for this environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<crate::notify::NotificationsConfig>,
    /// Replaces the shared `[retention]` for this environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub tags: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// SSM Parameter Store path prefix, e.g. `/kaapi/staging/`.
    #[serde(default)]
    pub ssm: Option<String>,
    /// Secrets Manager name prefix, e.g. `kaapi/staging/`; with `json_key`, the name (or full
    /// ARN) of one JSON secret.
    #[serde(default)]
    pub secrets_manager: Option<String>,
    /// With `secrets_manager`: one JSON secret holds every secret under its own name as key,
    /// referenced as `arn:…:secret:NAME:KEY::`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub json_key: bool,
    /// Local env file (docker engine), relative to the config file.
    #[serde(default)]
    pub env_file: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NameOverrides {
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub repository: Option<String>,
    /// Per service: the ECS service name.
    #[serde(default)]
    pub services: IndexMap<String, String>,
    /// Per service: the task-definition family.
    #[serde(default)]
    pub families: IndexMap<String, String>,
    /// Per service: the CloudWatch log group; default `/ecs/{cluster}/{ecs service}`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub log_groups: IndexMap<String, String>,
    /// ECS task execution role (pulls the image, reads secrets); default `{stem}-execution-role`.
    #[serde(default)]
    pub execution_role: Option<String>,
    /// ECS task role (the application's own AWS permissions); default `{stem}-task-role`.
    #[serde(default)]
    pub task_role: Option<String>,
}

/// How long replaced web replicas stay warm when `keep_warm` is not set.
pub const DEFAULT_KEEP_WARM: Duration = Duration::from_secs(5 * 60);
/// The longest `keep_warm`: warm replicas hold their memory for all that time.
pub const MAX_KEEP_WARM: Duration = Duration::from_secs(24 * 60 * 60);

impl EnvironmentConfig {
    /// The docker engine's warm window after a deploy ([`DEFAULT_KEEP_WARM`] unless set).
    pub fn keep_warm(&self) -> Duration {
        self.keep_warm.map_or(DEFAULT_KEEP_WARM, Duration::from)
    }
}

impl Config {
    /// The service that owns the `…-service` name and receives traffic.
    pub fn web_service(&self) -> Option<(&str, &ServiceConfig)> {
        self.services
            .iter()
            .find(|(_, s)| s.kind() == ServiceKind::Web)
            .map(|(n, s)| (n.as_str(), s))
    }

    pub fn environment(&self, name: &str) -> Option<&EnvironmentConfig> {
        self.environments.get(name)
    }

    /// How many earlier releases automatic pruning keeps in an environment (its own
    /// `retention` first); `None`: deploys do not prune.
    pub fn retention(&self, env: &str) -> Option<u32> {
        self.environments
            .get(env)
            .and_then(|e| e.retention)
            .or(self.retention)
            .map(|r| r.keep)
    }

    /// Replicas of a service in an environment (environment override first).
    pub fn replicas(&self, env: &str, service: &str) -> u32 {
        self.environments
            .get(env)
            .and_then(|e| e.replicas.get(service).copied())
            .or_else(|| self.services.get(service).map(|s| s.replicas))
            .unwrap_or(1)
    }

    /// Plain (non-secret) variables of a service in an environment, later layers winning:
    /// shared, environment, service.
    pub fn plain_env(&self, env: &str, service: &str) -> IndexMap<String, String> {
        let mut vars = self.env.clone();
        if let Some(e) = self.environments.get(env) {
            vars.extend(e.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        if let Some(s) = self.services.get(service) {
            vars.extend(s.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        vars
    }

    /// The accessories that run in environment `env`, in the config's order.
    pub fn accessories_of(&self, env: &str) -> Vec<(&str, &AccessoryConfig)> {
        let Some(engine) = self.environments.get(env).map(|e| e.engine) else {
            return Vec::new();
        };
        self.accessories
            .iter()
            .filter(|(_, a)| a.runs_in(env, engine))
            .map(|(n, a)| (n.as_str(), a))
            .collect()
    }

    /// The service whose revision runs the migrations.
    pub fn migrations_service(&self) -> Option<&str> {
        let m = self.migrations.as_ref()?;
        match &m.service {
            Some(s) => Some(s.as_str()),
            None => self.web_service().map(|(n, _)| n),
        }
    }
}

/// Which kind of store holds an environment's secret values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretStore {
    Ssm,
    SecretsManager,
    EnvFile,
}

/// Where one secret's value lives: an SSM parameter name, a Secrets Manager secret name, or
/// a variable of a local env file (`reference` is then the file's path as written).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretReference {
    pub store: SecretStore,
    pub reference: String,
}

fn is_false(value: &bool) -> bool {
    !value
}

impl SecretSource {
    /// The reference of secret `name` in this source (`/kaapi/staging/` + `SECRET_KEY` →
    /// `/kaapi/staging/SECRET_KEY`). `None` when the source names no store.
    pub fn reference(&self, name: &str) -> Option<SecretReference> {
        let join = |prefix: &str, separator: char| {
            if prefix.is_empty() || prefix.ends_with(separator) {
                format!("{prefix}{name}")
            } else {
                format!("{prefix}{separator}{name}")
            }
        };
        if let Some(path) = &self.ssm {
            return Some(SecretReference {
                store: SecretStore::Ssm,
                reference: join(path, '/'),
            });
        }
        if let (Some(secret), true) = (&self.secrets_manager, self.json_key) {
            return Some(SecretReference {
                store: SecretStore::SecretsManager,
                reference: format!("{secret}:{name}"),
            });
        }
        if let Some(prefix) = &self.secrets_manager {
            return Some(SecretReference {
                store: SecretStore::SecretsManager,
                reference: join(prefix, '/'),
            });
        }
        self.env_file.as_ref().map(|file| SecretReference {
            store: SecretStore::EnvFile,
            reference: file.clone(),
        })
    }
}
