//! The environment's own Docker network (`{app}-{env}`): accessories, replicas and one-off
//! tasks all join it, so that the app reaches an accessory by its name (`db`, `redis`).

use std::collections::HashMap;

use bollard::models::NetworkCreateRequest;
use bollard::query_parameters::InspectNetworkOptions;
use bollard::Docker;
use kaapi_core::engine::EngineResult;

use crate::docker::failed;
use kaapi_agent::api::labels;

pub fn network_name(app: &str, environment: &str) -> String {
    format!("{app}-{environment}")
}

/// Creates the environment's network when it does not exist yet; returns its name.
pub async fn ensure(docker: &Docker, app: &str, environment: &str) -> EngineResult<String> {
    let name = network_name(app, environment);
    match docker
        .inspect_network(&name, None::<InspectNetworkOptions>)
        .await
    {
        Ok(_) => return Ok(name),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        Err(e) => return Err(failed(&format!("inspecting network {name}"), e)),
    }
    let request = NetworkCreateRequest {
        name: name.clone(),
        driver: Some("bridge".to_owned()),
        labels: Some(HashMap::from([
            (labels::APP.to_owned(), app.to_owned()),
            (labels::ENVIRONMENT.to_owned(), environment.to_owned()),
        ])),
        ..Default::default()
    };
    match docker.create_network(request).await {
        Ok(_) => Ok(name),
        // Another deploy created it meanwhile.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => Ok(name),
        Err(e) => Err(failed(&format!("creating network {name}"), e)),
    }
}
