//! `down`: what stays on the Docker Engine once the agent forgot an environment, removed. Its
//! containers (one-off tasks left over, accessories), its network and, when asked, its volumes.
//! Images and the release history stay, so a later deploy numbers on and a rollback still works.

use std::collections::{BTreeSet, HashMap};

use bollard::query_parameters::{
    ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
};
use bollard::Docker;
use kaapi_core::engine::EngineResult;
use serde::Serialize;

use crate::containers;
use crate::docker::failed;
use kaapi_agent::api::labels;

/// What `down` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DownReport {
    pub environment: String,
    /// The agent forgot the environment (its replicas and ingresses are gone).
    pub agent_removed_environment: bool,
    /// The agent exited: it served no other environment.
    pub agent_stopped: bool,
    /// Other environments the agent still serves (so it keeps running).
    pub agent_still_serves: Vec<String>,
    /// Names of the removed containers (tasks, accessories, replicas the agent did not know).
    pub containers: Vec<String>,
    pub network_removed: bool,
    /// Removed volumes (only with `--volumes`).
    pub volumes: Vec<String>,
}

/// Force-removes every container labelled with the environment; with `volumes`, their
/// anonymous volumes too. Returns their names.
pub async fn remove_containers(
    docker: &Docker,
    app: &str,
    environment: &str,
    volumes: bool,
) -> EngineResult<Vec<String>> {
    let listed = containers::list(
        docker,
        &[(labels::APP, app), (labels::ENVIRONMENT, environment)],
    )
    .await?;
    let mut removed = Vec::new();
    for container in listed {
        let Some(id) = container.id.as_deref() else {
            continue;
        };
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(volumes)
            .build();
        match docker.remove_container(id, Some(options)).await {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(failed(&format!("removing container {id}"), e)),
        }
        let name = container
            .names
            .as_ref()
            .and_then(|names| names.first())
            .map(|n| n.trim_start_matches('/').to_owned())
            .unwrap_or_else(|| id.to_owned());
        removed.push(name);
    }
    Ok(removed)
}

/// Removes the environment's network; `false` when it did not exist.
pub async fn remove_network(docker: &Docker, name: &str) -> EngineResult<bool> {
    match docker.remove_network(name).await {
        Ok(()) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(e) => Err(failed(&format!("removing network {name}"), e)),
    }
}

/// Removes the volumes labelled with the environment and the named ones in `known` (service
/// volumes Docker created unlabelled when a replica first mounted them). Returns those removed.
pub async fn remove_volumes(
    docker: &Docker,
    app: &str,
    environment: &str,
    known: BTreeSet<String>,
) -> EngineResult<Vec<String>> {
    let filters: HashMap<String, Vec<String>> = HashMap::from([(
        "label".to_owned(),
        vec![
            format!("{}={app}", labels::APP),
            format!("{}={environment}", labels::ENVIRONMENT),
        ],
    )]);
    let options = ListVolumesOptionsBuilder::default()
        .filters(&filters)
        .build();
    let labelled = docker
        .list_volumes(Some(options))
        .await
        .map_err(|e| failed("listing volumes", e))?
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name);
    let mut removed = Vec::new();
    for name in labelled.chain(known).collect::<BTreeSet<_>>() {
        let options = RemoveVolumeOptionsBuilder::default().force(true).build();
        match docker.remove_volume(&name, Some(options)).await {
            Ok(()) => removed.push(name),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(failed(&format!("removing volume {name}"), e)),
        }
    }
    Ok(removed)
}

/// The volume names of `NAME:/path` binds.
pub fn bind_volumes(binds: &[String]) -> impl Iterator<Item = String> + '_ {
    binds
        .iter()
        .filter_map(|bind| bind.split_once(':').map(|(name, _)| name.to_owned()))
}
