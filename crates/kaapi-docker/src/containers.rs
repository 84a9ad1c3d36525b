//! Finding the containers of an environment by their labels, and the volumes they mount.

use std::collections::HashMap;

use bollard::models::{ContainerSummary, VolumeCreateRequest};
use bollard::query_parameters::ListContainersOptionsBuilder;
use bollard::Docker;
use kaapi_core::engine::EngineResult;

use crate::docker::failed;
use kaapi_agent::api::labels;

/// Every container (running or not) carrying all of `wanted` labels.
pub async fn list(docker: &Docker, wanted: &[(&str, &str)]) -> EngineResult<Vec<ContainerSummary>> {
    let filters: HashMap<String, Vec<String>> = HashMap::from([(
        "label".to_owned(),
        wanted.iter().map(|(k, v)| format!("{k}={v}")).collect(),
    )]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    docker
        .list_containers(Some(options))
        .await
        .map_err(|e| failed("listing containers", e))
}

/// The replicas of an environment (optionally of one service).
pub async fn replicas(
    docker: &Docker,
    app: &str,
    environment: &str,
    service: Option<&str>,
) -> EngineResult<Vec<ContainerSummary>> {
    let mut wanted = vec![
        (labels::APP, app),
        (labels::ENVIRONMENT, environment),
        (labels::ROLE, "replica"),
    ];
    if let Some(service) = service {
        wanted.push((labels::SERVICE, service));
    }
    list(docker, &wanted).await
}

pub fn label<'a>(container: &'a ContainerSummary, key: &str) -> Option<&'a str> {
    container
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map(String::as_str)
}

/// `service/abc123def456`: how a replica is named in logs and status.
pub fn source_name(container: &ContainerSummary) -> String {
    let service = label(container, labels::SERVICE).unwrap_or("?");
    let id: String = container
        .id
        .as_deref()
        .unwrap_or("?")
        .chars()
        .take(12)
        .collect();
    format!("{service}/{id}")
}

/// Creates the named volumes of `binds` (`name:/path`) if absent, labelled with their owner.
pub async fn ensure_volumes(
    docker: &Docker,
    app: &str,
    environment: &str,
    binds: &[String],
) -> EngineResult<()> {
    for bind in binds {
        let Some((name, _)) = bind.split_once(':') else {
            continue;
        };
        let request = VolumeCreateRequest {
            name: Some(name.to_owned()),
            labels: Some(HashMap::from([
                (labels::APP.to_owned(), app.to_owned()),
                (labels::ENVIRONMENT.to_owned(), environment.to_owned()),
            ])),
            ..Default::default()
        };
        docker
            .create_volume(request)
            .await
            .map_err(|e| failed(&format!("creating volume {name}"), e))?;
    }
    Ok(())
}
