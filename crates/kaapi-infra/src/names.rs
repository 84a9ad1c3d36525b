//! Every AWS name an environment's infrastructure uses, in one place, so that the preflight
//! check, the CloudFormation template and the IAM policy can never disagree.

use indexmap::IndexMap;
use kaapi_core::config::ResolvedEnvironment;
use kaapi_core::naming::{self, ServiceNames};

/// The GitHub Actions OIDC issuer (host part, as IAM names the provider).
pub const GITHUB_OIDC_HOST: &str = "token.actions.githubusercontent.com";

/// The backing services Kaapi may use, recognised by the variables that point at them.
pub const POSTGRES_VARIABLE: &str = "POSTGRES_SERVER";
pub const REDIS_VARIABLE: &str = "REDIS_URL";
pub const RABBITMQ_VARIABLE: &str = "RABBITMQ_HOST";

/// Where an environment's secret values live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretStore {
    /// SSM Parameter Store, SecureString parameters named `{path}{NAME}`.
    Ssm { path: String },
    /// Secrets Manager secrets named `{prefix}{NAME}`.
    SecretsManager { prefix: String },
    /// One Secrets Manager secret (a name or an ARN) holding a JSON object with every secret
    /// under its own name as key.
    SecretsManagerJson { secret: String },
}

impl SecretStore {
    /// The parameter or secret that holds `secret` (for a JSON secret: the secret itself).
    pub fn name_of(&self, secret: &str) -> String {
        match self {
            SecretStore::Ssm { path } => format!("{path}{secret}"),
            SecretStore::SecretsManager { prefix } => format!("{prefix}{secret}"),
            SecretStore::SecretsManagerJson { secret } => secret.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct InfraNames {
    pub environment: String,
    pub stem: String,
    pub region: Option<String>,
    pub cluster: String,
    pub repository: String,
    pub services: IndexMap<String, ServiceNames>,
    pub execution_role: String,
    pub task_role: String,
    /// The deploy role's name, from the environment's `role_arn`.
    pub deploy_role: Option<String>,
    pub deploy_role_arn: Option<String>,
    /// The ECS engine's deploy lock table (kaapi-ecs `lock.rs`).
    pub lock_table: String,
    pub secret_store: Option<SecretStore>,
    pub secrets: Vec<String>,
    /// Present when the config uses PostgreSQL (`POSTGRES_SERVER`).
    pub database: Option<String>,
    /// Present when the config uses Redis (`REDIS_URL`).
    pub cache: Option<String>,
    /// Present when the config uses RabbitMQ (`RABBITMQ_HOST`).
    pub broker: Option<String>,
}

impl InfraNames {
    /// Names of the environment `target` is bound to.
    pub fn new(target: &ResolvedEnvironment) -> Self {
        let (config, environment) = (target.config(), target.name());
        let env = target.env();
        let overrides = env.names.clone();
        let base = target.names().clone();
        let stem = naming::stem(&config.app, environment);
        let deploy_role_arn = env.role_arn.clone();
        let deploy_role = deploy_role_arn.as_deref().map(role_name_of);
        let secret_store = env.secrets_from.as_ref().and_then(|s| {
            if let Some(path) = &s.ssm {
                Some(SecretStore::Ssm { path: path.clone() })
            } else {
                s.secrets_manager.as_ref().map(|name| {
                    if s.json_key {
                        SecretStore::SecretsManagerJson {
                            secret: name.clone(),
                        }
                    } else {
                        SecretStore::SecretsManager {
                            prefix: name.clone(),
                        }
                    }
                })
            }
        });
        let variables = referenced_variables(target);
        let backing = |variable: &str, suffix: &str, from_host: fn(&str) -> Option<String>| {
            variables.contains_key(variable).then(|| {
                variables
                    .get(variable)
                    .and_then(|value| value.as_deref())
                    .and_then(|value| from_host(&host_of(value)))
                    .unwrap_or_else(|| format!("{stem}-{suffix}"))
            })
        };
        Self {
            environment: environment.to_owned(),
            region: env.region.clone(),
            cluster: base.cluster,
            repository: base.repository,
            services: base.services,
            execution_role: overrides
                .execution_role
                .unwrap_or_else(|| format!("{stem}-execution-role")),
            task_role: overrides
                .task_role
                .unwrap_or_else(|| format!("{stem}-task-role")),
            deploy_role,
            deploy_role_arn,
            lock_table: base.lock_table,
            secret_store,
            secrets: config.secrets.clone(),
            database: backing(POSTGRES_VARIABLE, "db", rds_identifier),
            cache: backing(REDIS_VARIABLE, "redis", elasticache_identifier),
            broker: backing(RABBITMQ_VARIABLE, "mq", mq_identifier),
            stem,
        }
    }
}

/// `arn:aws:iam::123:role/path/name` → `name`.
pub fn role_name_of(arn: &str) -> String {
    arn.rsplit('/').next().unwrap_or(arn).to_owned()
}

/// Variables the environment's services see, by name, with the plain value when there is one
/// (secrets and variables listed only in the example file have none).
fn referenced_variables(target: &ResolvedEnvironment) -> IndexMap<String, Option<String>> {
    let config = target.config();
    let mut vars: IndexMap<String, Option<String>> = IndexMap::new();
    if let Some(example) = &config.variables.example {
        if let Ok(text) = std::fs::read_to_string(target.loaded().resolve(example)) {
            if let Ok(parsed) = kaapi_core::envfile::parse(&text) {
                for name in parsed.keys() {
                    vars.insert(name.clone(), None);
                }
            }
        }
    }
    for name in &config.secrets {
        vars.insert(name.clone(), None);
    }
    for service in config.services.keys() {
        for (name, value) in target.plain_env(service) {
            vars.insert(name, Some(value));
        }
    }
    vars
}

/// The host of `redis://user@host:6379/0`, `host:5432` or `host`.
fn host_of(value: &str) -> String {
    let rest = value.split_once("://").map_or(value, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or(rest);
    host.split(':').next().unwrap_or(host).to_ascii_lowercase()
}

/// `kaapi-db.abc123.eu-west-1.rds.amazonaws.com` → `kaapi-db`.
fn rds_identifier(host: &str) -> Option<String> {
    host.ends_with(".rds.amazonaws.com")
        .then(|| host.split('.').next().map(str::to_owned))
        .flatten()
}

/// `kaapi-redis.abc123.0001.euw1.cache.amazonaws.com` → `kaapi-redis`;
/// `master.kaapi-redis.abc123.euw1.cache.amazonaws.com` → `kaapi-redis` (a replication group).
fn elasticache_identifier(host: &str) -> Option<String> {
    if !host.ends_with(".cache.amazonaws.com") {
        return None;
    }
    let mut labels = host.split('.');
    let first = labels.next()?;
    if matches!(first, "master" | "replica" | "clustercfg") {
        labels.next().map(str::to_owned)
    } else {
        Some(first.to_owned())
    }
}

/// `b-1234-abcd.mq.eu-west-1.amazonaws.com` → `b-1234-abcd` (a broker id).
fn mq_identifier(host: &str) -> Option<String> {
    (host.contains(".mq.") && host.ends_with(".amazonaws.com"))
        .then(|| host.split('.').next().map(str::to_owned))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_urls_and_endpoints() {
        assert_eq!(host_of("redis://:pw@Cache.example:6379/0"), "cache.example");
        assert_eq!(host_of("db.internal:5432"), "db.internal");
        assert_eq!(
            rds_identifier("kaapi-db.abc.eu-west-1.rds.amazonaws.com").as_deref(),
            Some("kaapi-db")
        );
        assert_eq!(rds_identifier("localhost"), None);
        assert_eq!(
            elasticache_identifier("master.kaapi-redis.abc.euw1.cache.amazonaws.com").as_deref(),
            Some("kaapi-redis")
        );
        assert_eq!(
            mq_identifier("b-12ab.mq.eu-west-1.amazonaws.com").as_deref(),
            Some("b-12ab")
        );
        assert_eq!(role_name_of("arn:aws:iam::1:role/ci/deploy"), "deploy");
    }
}
