//! Replica containers on the Docker Engine: create/start, inspect, stop/remove, list by label.

use std::collections::HashMap;

use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, RemoveContainerOptions,
    StopContainerOptions,
};
use bollard::Docker;

use super::api::{labels, ServiceSpec};
use super::error::AgentError;

/// Which environment and release a replica belongs to (its labels).
#[derive(Debug, Clone)]
pub struct ReplicaOwner<'a> {
    pub app: &'a str,
    pub environment: &'a str,
    pub release: u64,
}

/// What the Docker Engine says about a container right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerStatus {
    Running,
    /// Created but not running yet, or restarting.
    NotStarted,
    Exited(Option<i64>),
    Vanished,
}

/// A container carrying our labels, as listed.
#[derive(Debug, Clone)]
pub struct ListedReplica {
    pub id: String,
    pub name: String,
    pub service: String,
    pub release: Option<u64>,
    pub image_id: String,
    /// The image as the container was created with it (ID or reference).
    pub image: String,
    pub running: bool,
}

#[derive(Clone)]
pub struct Containers {
    docker: Docker,
}

impl Containers {
    pub async fn connect() -> Result<Self, AgentError> {
        let docker = Docker::connect_with_local_defaults()?
            .negotiate_version()
            .await?;
        Ok(Containers { docker })
    }

    /// Creates and starts one replica; returns its id. A name already taken → `Ok(None)` so the
    /// caller can try the next index.
    pub async fn create_replica(
        &self,
        owner: &ReplicaOwner<'_>,
        service: &ServiceSpec,
        name: &str,
    ) -> Result<Option<String>, AgentError> {
        let body = replica_body(owner, service);
        let options = CreateContainerOptions {
            name: Some(name.to_owned()),
            ..Default::default()
        };
        let created = match self.docker.create_container(Some(options), body).await {
            Ok(created) => created,
            Err(DockerError::DockerResponseServerError {
                status_code: 409, ..
            }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            self.remove(&created.id).await;
            return Err(AgentError::Invalid(format!(
                "cannot start replica {name} of service `{}`: {e}",
                service.name
            )));
        }
        Ok(Some(created.id))
    }

    /// The 127.0.0.1 port a container's `port/tcp` is published on.
    pub async fn host_port(&self, id: &str, port: u16) -> Result<Option<u16>, AgentError> {
        let inspect = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await?;
        let bindings = inspect
            .network_settings
            .and_then(|settings| settings.ports)
            .and_then(|mut ports| ports.remove(&format!("{port}/tcp")))
            .flatten()
            .unwrap_or_default();
        Ok(bindings
            .iter()
            .filter(|b| b.host_ip.as_deref().is_none_or(|ip| ip == "127.0.0.1"))
            .find_map(|b| b.host_port.as_deref().and_then(|p| p.parse().ok())))
    }

    pub async fn status(&self, id: &str) -> Result<ContainerStatus, AgentError> {
        let inspect = match self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(inspect) => inspect,
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(ContainerStatus::Vanished),
            Err(e) => return Err(e.into()),
        };
        let state = inspect.state.unwrap_or_default();
        Ok(
            if state.running == Some(true) && state.restarting != Some(true) {
                ContainerStatus::Running
            } else if state
                .finished_at
                .as_deref()
                .is_some_and(|t| !t.starts_with("0001"))
            {
                ContainerStatus::Exited(state.exit_code)
            } else {
                ContainerStatus::NotStarted
            },
        )
    }

    /// Stops gracefully (SIGTERM, then SIGKILL after `timeout_secs`) and removes; errors are
    /// reported but a container that is already gone counts as done.
    pub async fn stop_and_remove(&self, id: &str, timeout_secs: u32) {
        let options = StopContainerOptions {
            t: Some(i32::try_from(timeout_secs).unwrap_or(i32::MAX)),
            signal: None,
        };
        if let Err(e) = self.docker.stop_container(id, Some(options)).await {
            if !is_gone(&e) {
                eprintln!("agent: cannot stop container {id}: {e}");
            }
        }
        self.remove(id).await;
    }

    /// Removes at once (killing it if it runs).
    pub async fn remove(&self, id: &str) {
        let options = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        if let Err(e) = self.docker.remove_container(id, Some(options)).await {
            if !is_gone(&e) {
                eprintln!("agent: cannot remove container {id}: {e}");
            }
        }
    }

    /// Every replica container (running or not) of one environment.
    pub async fn list_replicas(
        &self,
        app: &str,
        environment: &str,
    ) -> Result<Vec<ListedReplica>, AgentError> {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![
                format!("{}={app}", labels::APP),
                format!("{}={environment}", labels::ENVIRONMENT),
                format!("{}=replica", labels::ROLE),
            ],
        )]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let listed = self.docker.list_containers(Some(options)).await?;
        Ok(listed
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                Some(ListedReplica {
                    id: c.id?,
                    name: c
                        .names
                        .and_then(|n| n.into_iter().next())
                        .map(|n| n.trim_start_matches('/').to_owned())
                        .unwrap_or_default(),
                    service: labels.get(labels::SERVICE).cloned().unwrap_or_default(),
                    release: labels.get(labels::RELEASE).and_then(|r| r.parse().ok()),
                    image_id: c.image_id.unwrap_or_default(),
                    image: c.image.unwrap_or_default(),
                    running: c.state.map(|s| s.to_string()).as_deref() == Some("running"),
                })
            })
            .collect())
    }
}

fn is_gone(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404 | 304,
            ..
        }
    )
}

fn replica_body(owner: &ReplicaOwner<'_>, service: &ServiceSpec) -> ContainerCreateBody {
    let mut env: Vec<String> = service
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !service.env.contains_key("KAAPI_RELEASE") {
        env.push(format!("KAAPI_RELEASE={}", owner.release));
    }
    let labels = HashMap::from([
        (labels::APP.to_owned(), owner.app.to_owned()),
        (labels::ENVIRONMENT.to_owned(), owner.environment.to_owned()),
        (labels::SERVICE.to_owned(), service.name.clone()),
        (labels::RELEASE.to_owned(), owner.release.to_string()),
        (labels::ROLE.to_owned(), "replica".to_owned()),
    ]);
    let port_key = service.port.map(|p| format!("{p}/tcp"));
    let port_bindings = port_key.clone().map(|key| {
        // Loopback only, random host port: the ingress is the only way in.
        HashMap::from([(
            key,
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".to_owned()),
                host_port: Some(String::new()),
            }]),
        )])
    });
    let host_config = HostConfig {
        binds: (!service.volumes.is_empty()).then(|| service.volumes.clone()),
        port_bindings,
        nano_cpus: service
            .cpu
            .map(|units| i64::from(units) * 1_000_000_000 / 1024),
        memory: service.memory_mib.map(|mib| i64::from(mib) * 1024 * 1024),
        network_mode: service.network.clone(),
        log_config: Some(super::container_logs::log_config(
            service.logs.unwrap_or_default(),
        )),
        // The agent replaces failed replicas itself, like ECS.
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(service.image.clone()),
        cmd: service.command.clone(),
        env: Some(env),
        labels: Some(labels),
        exposed_ports: port_key.map(|key| vec![key]),
        stop_timeout: Some(i64::from(service.stop_timeout_secs)),
        host_config: Some(host_config),
        ..Default::default()
    }
}
