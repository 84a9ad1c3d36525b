//! The one place a service's spec becomes a Docker container: labels, variables (with the
//! release number), resources, volumes and network. Replicas (the agent) and one-off tasks
//! (the engine's migrations and `run`) are both built here, so they cannot drift apart.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};

use crate::api::{labels, ServiceSpec};
use crate::container_logs;

/// The variable that tells a process which release it belongs to. Set when the container is
/// created, never stored in a revision: a rollback re-uses a revision under a new number.
pub const RELEASE_VARIABLE: &str = "KAAPI_RELEASE";

/// Which environment (and release, when there is one) a container belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub app: &'a str,
    pub environment: &'a str,
    /// `None` for a one-off task on an image no release carries yet.
    pub release: Option<u64>,
}

/// What the container is for.
#[derive(Debug, Clone, Copy)]
pub enum Role<'a> {
    /// A long-running replica kept alive by the agent; its port is published on 127.0.0.1.
    Replica,
    /// A one-off task running `command` (the image's own CMD when empty) to its exit.
    Task { command: &'a [String] },
}

impl Role<'_> {
    fn label(&self) -> &'static str {
        match self {
            Role::Replica => "replica",
            Role::Task { .. } => "task",
        }
    }
}

/// The container to create for `service`.
pub fn body(owner: Owner<'_>, role: Role<'_>, service: &ServiceSpec) -> ContainerCreateBody {
    let mut env: Vec<String> = service
        .env
        .iter()
        .filter(|(name, _)| name.as_str() != RELEASE_VARIABLE)
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    let mut container_labels = HashMap::from([
        (labels::APP.to_owned(), owner.app.to_owned()),
        (labels::ENVIRONMENT.to_owned(), owner.environment.to_owned()),
        (labels::SERVICE.to_owned(), service.name.clone()),
        (labels::ROLE.to_owned(), role.label().to_owned()),
    ]);
    if let Some(release) = owner.release {
        env.push(format!("{RELEASE_VARIABLE}={release}"));
        container_labels.insert(labels::RELEASE.to_owned(), release.to_string());
    }
    let mut host_config = HostConfig {
        binds: (!service.volumes.is_empty()).then(|| service.volumes.clone()),
        nano_cpus: service.cpu.map(nano_cpus),
        memory: service.memory_mib.map(|mib| i64::from(mib) * 1024 * 1024),
        network_mode: service.network.clone(),
        log_config: Some(container_logs::log_config(service.logs.unwrap_or_default())),
        ..Default::default()
    };
    let mut body = ContainerCreateBody {
        image: Some(service.image.clone()),
        env: Some(env),
        labels: Some(container_labels),
        ..Default::default()
    };
    match role {
        Role::Replica => {
            let port_key = service.port.map(|port| format!("{port}/tcp"));
            // Loopback only, random host port: the ingress is the only way in.
            host_config.port_bindings = port_key.clone().map(|key| {
                HashMap::from([(
                    key,
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".to_owned()),
                        host_port: Some(String::new()),
                    }]),
                )])
            });
            // The agent replaces failed replicas itself, like ECS.
            host_config.restart_policy = Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            });
            body.cmd = service.command.clone();
            body.exposed_ports = port_key.map(|key| vec![key]);
            body.stop_timeout = Some(i64::from(service.stop_timeout_secs));
        }
        Role::Task { command } => {
            body.cmd = (!command.is_empty()).then(|| command.to_vec());
        }
    }
    body.host_config = Some(host_config);
    body
}

/// ECS CPU units (1024 per vCPU) as a hard limit, as Fargate applies a task's `cpu`.
fn nano_cpus(units: u32) -> i64 {
    i64::from(units) * 1_000_000_000 / 1024
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn service() -> ServiceSpec {
        ServiceSpec {
            name: "backend".to_owned(),
            image: "sha256:abc".to_owned(),
            command: Some(vec!["serve".to_owned()]),
            env: BTreeMap::from([
                ("A".to_owned(), "1".to_owned()),
                (RELEASE_VARIABLE.to_owned(), "stale".to_owned()),
            ]),
            replicas: 2,
            port: Some(8000),
            health: None,
            stop_timeout_secs: 30,
            cpu: Some(512),
            memory_mib: Some(256),
            volumes: vec!["data:/data".to_owned()],
            network: Some("app-local".to_owned()),
            logs: None,
            revision: None,
        }
    }

    fn owner(release: Option<u64>) -> Owner<'static> {
        Owner {
            app: "app",
            environment: "local",
            release,
        }
    }

    #[test]
    fn replicas_and_tasks_share_resources_variables_and_labels() {
        let spec = service();
        let replica = body(owner(Some(7)), Role::Replica, &spec);
        let migrate = ["migrate".to_owned()];
        let task = body(owner(Some(7)), Role::Task { command: &migrate }, &spec);
        for made in [&replica, &task] {
            let host = made
                .host_config
                .as_ref()
                .expect("host config is always set");
            assert_eq!(host.nano_cpus, Some(500_000_000));
            assert_eq!(host.memory, Some(256 * 1024 * 1024));
            assert_eq!(host.network_mode.as_deref(), Some("app-local"));
            let log_config = host
                .log_config
                .as_ref()
                .expect("every container's log is bounded");
            assert_eq!(log_config.typ.as_deref(), Some("json-file"));
            let env = made.env.as_ref().expect("env is always set");
            assert!(env.contains(&"KAAPI_RELEASE=7".to_owned()));
            assert!(!env.iter().any(|v| v == "KAAPI_RELEASE=stale"));
            let labels = made.labels.as_ref().expect("labels are always set");
            assert_eq!(labels.get(labels::RELEASE).map(String::as_str), Some("7"));
        }
        assert_eq!(replica.cmd, Some(vec!["serve".to_owned()]));
        assert_eq!(task.cmd, Some(vec!["migrate".to_owned()]));
        assert!(task.exposed_ports.is_none(), "a task publishes no port");
        assert_eq!(
            replica.labels.as_ref().and_then(|l| l.get(labels::ROLE)),
            Some(&"replica".to_owned())
        );
    }

    #[test]
    fn a_task_on_a_bare_image_has_no_release() {
        let task = body(owner(None), Role::Task { command: &[] }, &service());
        let env = task.env.expect("env is always set");
        assert!(!env.iter().any(|v| v.starts_with("KAAPI_RELEASE=")));
        assert_eq!(task.cmd, None, "no command runs the image's own CMD");
        let made_labels = task.labels.expect("labels are always set");
        assert!(!made_labels.contains_key(labels::RELEASE));
    }
}
