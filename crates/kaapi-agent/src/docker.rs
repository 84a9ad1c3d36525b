//! Replica containers on the Docker Engine: create/start, inspect, stop/remove, list by label.

use std::collections::HashMap;

use bollard::errors::Error as DockerError;
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, RemoveContainerOptions,
    StopContainerOptions,
};
use bollard::Docker;

use super::api::{labels, ServiceSpec};
use super::container::{self, Owner, Role};
use super::error::AgentError;
use crate::post_mortem::PostMortem;

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
        owner: Owner<'_>,
        service: &ServiceSpec,
        name: &str,
    ) -> Result<Option<String>, AgentError> {
        let body = container::body(owner, Role::Replica, service);
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

    /// How a container ended and its last `lines` log lines, for a failure report.
    pub async fn post_mortem(&self, id: &str, lines: usize) -> PostMortem {
        crate::post_mortem::read(&self.docker, id, lines).await
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
