//! The local engine's side of `plan`: a service spec seen as the core's [`ServiceView`], with
//! the config's secret names split from the plain variables.

use std::collections::BTreeMap;
use std::time::Duration;

use kaapi_agent::api::{HealthCheckSpec, ServiceSpec};
use kaapi_agent::container::RELEASE_VARIABLE;
use kaapi_core::plan::ServiceView;

/// `spec` as a view; `secret_names` are the config's secrets (their values stay in the view,
/// which never prints them). `replicas` overrides the spec's when the agent runs another count.
pub fn view(spec: &ServiceSpec, secret_names: &[String], replicas: Option<u32>) -> ServiceView {
    let (secrets, env): (BTreeMap<_, _>, BTreeMap<_, _>) = spec
        .env
        .iter()
        .filter(|(name, _)| name.as_str() != RELEASE_VARIABLE)
        .map(|(k, v)| (k.clone(), v.clone()))
        .partition(|(name, _)| secret_names.contains(name));
    ServiceView {
        service: spec.name.clone(),
        image: spec.image.clone(),
        command: spec.command.clone(),
        env,
        secrets,
        replicas: replicas.unwrap_or(spec.replicas),
        port: spec.port,
        health: spec.health.as_ref().map(health_line),
        cpu: spec.cpu,
        memory_mib: spec.memory_mib,
    }
}

fn health_line(health: &HealthCheckSpec) -> String {
    let ms = |ms: u64| humantime::format_duration(Duration::from_millis(ms)).to_string();
    format!(
        "GET {} every {}, timeout {}, {} retries, start period {}",
        health.path,
        ms(health.interval_ms),
        ms(health.timeout_ms),
        health.retries,
        ms(health.start_period_ms)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_split_from_variables_and_the_release_variable_is_left_out() {
        let spec = ServiceSpec {
            name: "web".to_owned(),
            image: "sha256:abc".to_owned(),
            command: None,
            env: BTreeMap::from([
                ("LOG_LEVEL".to_owned(), "info".to_owned()),
                ("SECRET_KEY".to_owned(), "s3cret".to_owned()),
                (RELEASE_VARIABLE.to_owned(), "4".to_owned()),
            ]),
            replicas: 2,
            port: Some(8000),
            health: Some(HealthCheckSpec {
                path: "/health".to_owned(),
                interval_ms: 1000,
                timeout_ms: 500,
                retries: 2,
                start_period_ms: 0,
            }),
            stop_timeout_secs: 10,
            cpu: None,
            memory_mib: None,
            volumes: Vec::new(),
            network: None,
            logs: None,
            revision: None,
        };
        let view = view(&spec, &["SECRET_KEY".to_owned()], Some(5));
        assert_eq!(view.env.keys().collect::<Vec<_>>(), ["LOG_LEVEL"]);
        assert_eq!(view.secrets.keys().collect::<Vec<_>>(), ["SECRET_KEY"]);
        assert_eq!(view.replicas, 5);
        assert_eq!(
            view.health.as_deref(),
            Some("GET /health every 1s, timeout 500ms, 2 retries, start period 0s")
        );
    }
}
