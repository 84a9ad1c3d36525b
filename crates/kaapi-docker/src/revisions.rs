//! What every replica of a service runs in one environment, derived from the config: the
//! command, plain variables and secret values, replicas, port, health check, resources and
//! volumes. Pure except for reading the environment's secrets file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kaapi_core::config::ResolvedEnvironment;
use kaapi_core::engine::{EngineError, EngineResult};

use crate::history::NewRevision;
use kaapi_agent::api::{HealthCheckSpec, LogLimits, ServiceSpec};

/// How much log each container keeps (`[container_logs]`), set at rollout like the network.
pub fn log_limits(target: &ResolvedEnvironment) -> LogLimits {
    let logs = target.config().container_logs;
    LogLimits {
        max_size_mb: logs.max_size_mb,
        max_files: logs.max_files,
    }
}

/// Docker volume of `NAME` in an environment: `{app}-{env}-NAME`.
pub fn volume_name(app: &str, environment: &str, name: &str) -> String {
    format!("{app}-{environment}-{name}")
}

/// `NAME:/path` from the config as a bind of the environment's volume.
pub fn volume_bind(app: &str, environment: &str, volume: &str) -> EngineResult<String> {
    match volume.split_once(':') {
        Some((name, path)) if !name.is_empty() && path.starts_with('/') => {
            Ok(format!("{}:{path}", volume_name(app, environment, name)))
        }
        _ => Err(EngineError::failed(format!(
            "volume `{volume}` must be written NAME:/path, e.g. data:/data"
        ))),
    }
}

/// The secret values of `environment`, read from its `secrets_from.env_file`. Every name in
/// `secrets` must be there; values are never printed.
pub fn read_secrets(target: &ResolvedEnvironment) -> EngineResult<BTreeMap<String, String>> {
    let config = target.config();
    let environment = target.name();
    if config.secrets.is_empty() {
        return Ok(BTreeMap::new());
    }
    let file = target
        .env()
        .secrets_from
        .as_ref()
        .and_then(|s| s.env_file.as_deref())
        .ok_or_else(|| {
            EngineError::failed(format!(
                "{}: environments.{environment}.secrets_from.env_file is not set, but secrets are declared ({}); add secrets_from = {{ env_file = \".env\" }}",
                target.path().display(),
                config.secrets.join(", ")
            ))
        })?;
    let path: PathBuf = target.loaded().resolve(file);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        EngineError::failed(format!(
            "cannot read the secrets file {} of environment `{environment}` ({e}); create it with one NAME=value line for each of: {}",
            path.display(),
            config.secrets.join(", ")
        ))
    })?;
    let values = kaapi_core::envfile::parse(&text)
        .map_err(|e| EngineError::failed(format!("{}: {e}", path.display())))?;
    let mut secrets = BTreeMap::new();
    let mut missing = Vec::new();
    for name in &config.secrets {
        match values.get(name) {
            Some(value) => {
                secrets.insert(name.clone(), value.clone());
            }
            None => missing.push(name.as_str()),
        }
    }
    if !missing.is_empty() {
        return Err(EngineError::failed(format!(
            "{} does not set the secret variable(s) {}; add a NAME=value line for each (`kaapi-deploy secrets generate` makes values)",
            path.display(),
            missing.join(", ")
        )));
    }
    Ok(secrets)
}

/// One revision per service for `image_id`, in the config's order.
pub fn revisions(
    target: &ResolvedEnvironment,
    image_id: &str,
    secrets: &BTreeMap<String, String>,
) -> EngineResult<Vec<NewRevision>> {
    target
        .config()
        .services
        .keys()
        .map(|service| {
            let family = target
                .names()
                .service(service)
                .map(|n| n.family.clone())
                .unwrap_or_else(|| format!("{}-{}-{service}", target.app(), target.name()));
            Ok(NewRevision {
                family,
                spec: service_spec(target, service, image_id, secrets)?,
            })
        })
        .collect()
}

/// The spec of one service (also used for one-off tasks of a release that was never stored).
pub fn service_spec(
    target: &ResolvedEnvironment,
    service: &str,
    image_id: &str,
    secrets: &BTreeMap<String, String>,
) -> EngineResult<ServiceSpec> {
    let config = target.config();
    let environment = target.name();
    let settings = config.services.get(service).ok_or_else(|| {
        EngineError::not_found(format!(
            "no service `{service}` in {}",
            target.path().display()
        ))
    })?;
    let mut env: BTreeMap<String, String> = target.plain_env(service).into_iter().collect();
    env.extend(secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
    let volumes = settings
        .volumes
        .iter()
        .map(|v| volume_bind(&config.app, environment, v))
        .collect::<EngineResult<Vec<_>>>()?;
    let health = settings.health.as_ref().map(|h| HealthCheckSpec {
        path: h.path.clone(),
        interval_ms: millis(h.interval()),
        timeout_ms: millis(h.timeout()),
        retries: h.retries(),
        start_period_ms: millis(h.start_period()),
    });
    Ok(ServiceSpec {
        name: service.to_owned(),
        image: image_id.to_owned(),
        command: settings.command.as_ref().map(|c| c.argv().to_vec()),
        env,
        replicas: target.replicas(service),
        port: settings.port,
        health,
        stop_timeout_secs: u32::try_from(settings.stop_timeout().as_secs()).unwrap_or(u32::MAX),
        cpu: settings.cpu,
        memory_mib: settings.memory,
        volumes,
        network: None,
        logs: None,
        revision: None,
    })
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const CONFIG: &str = r#"
app = "shop"
secrets = ["SECRET_KEY"]
env = { LOG_LEVEL = "info", SHARED = "base" }

[image]
context = "backend"

[services.web]
port = 8000
replicas = 2
memory = 256
command = "/app serve"
volumes = ["data:/data"]
env = { ROLE = "web" }
health = { path = "/health", interval = "1s", timeout = "500ms", retries = 2, start_period = "5s" }

[services.worker]
command = ["/app", "worker"]

[environments.local]
engine = "docker"
ingress_port = 8080
secrets_from = { env_file = ".env.local" }
env = { SHARED = "local" }
replicas = { worker = 3 }
"#;

    fn loaded(dir: &Path, secrets_file: Option<&str>) -> ResolvedEnvironment {
        let path = dir.join("deploy.toml");
        std::fs::write(&path, CONFIG).expect("write config");
        if let Some(text) = secrets_file {
            std::fs::write(dir.join(".env.local"), text).expect("write secrets");
        }
        let loaded = kaapi_core::config::load(&path).expect("valid config");
        ResolvedEnvironment::resolve(loaded, "local").expect("environment")
    }

    #[test]
    fn specs_layer_variables_and_resolve_volumes_and_health() {
        let dir = tempfile::tempdir().expect("tempdir");
        let loaded = loaded(dir.path(), Some("SECRET_KEY=abc\nUNRELATED=1\n"));
        let secrets = read_secrets(&loaded).expect("secrets");
        assert_eq!(secrets.len(), 1);
        let revisions = revisions(&loaded, "sha256:img", &secrets).expect("revisions");
        assert_eq!(revisions.len(), 2);
        let web = &revisions[0];
        assert_eq!(web.family, "shop-local-web");
        assert_eq!(web.spec.image, "sha256:img");
        assert_eq!(
            web.spec.command,
            Some(vec!["/app".to_owned(), "serve".to_owned()])
        );
        assert_eq!(web.spec.env["SHARED"], "local");
        assert_eq!(web.spec.env["ROLE"], "web");
        assert_eq!(web.spec.env["SECRET_KEY"], "abc");
        assert!(!web.spec.env.contains_key("UNRELATED"));
        assert_eq!(web.spec.volumes, vec!["shop-local-data:/data".to_owned()]);
        assert_eq!(web.spec.replicas, 2);
        assert_eq!(web.spec.memory_mib, Some(256));
        let health = web.spec.health.as_ref().expect("health");
        assert_eq!(
            (health.interval_ms, health.timeout_ms, health.retries),
            (1000, 500, 2)
        );
        let worker = &revisions[1];
        assert_eq!(worker.spec.replicas, 3);
        assert_eq!(worker.spec.port, None);
    }

    #[test]
    fn a_missing_secret_names_the_file_and_variable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let loaded = loaded(dir.path(), Some("OTHER=1\n"));
        let message = read_secrets(&loaded).expect_err("missing").to_string();
        assert!(message.contains(".env.local"), "{message}");
        assert!(message.contains("SECRET_KEY"), "{message}");
    }

    #[test]
    fn a_missing_secrets_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let loaded = loaded(dir.path(), None);
        let message = read_secrets(&loaded).expect_err("no file").to_string();
        assert!(message.contains(".env.local"), "{message}");
        assert!(message.contains("SECRET_KEY"), "{message}");
    }

    #[test]
    fn volumes_must_name_a_path() {
        assert_eq!(
            volume_bind("a", "local", "data:/data").expect("valid"),
            "a-local-data:/data"
        );
        assert!(volume_bind("a", "local", "data").is_err());
        assert!(volume_bind("a", "local", "data:rel").is_err());
    }
}
