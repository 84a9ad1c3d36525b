//! Builds the engine an environment names. The only place that knows every engine crate, and
//! the one that says what a build without the `ecs` feature cannot do.

#[cfg(feature = "ecs")]
use std::sync::Arc;

use kaapi_core::config::{EngineKind, ResolvedEnvironment};
use kaapi_core::engine::Engine;
#[cfg(feature = "ecs")]
use kaapi_core::engine::ImageBuilder;

use crate::exit::{CliError, CliResult};
use crate::project;

pub async fn connect(target: &ResolvedEnvironment) -> CliResult<Box<dyn Engine>> {
    match target.env().engine {
        EngineKind::Docker => Ok(Box::new(connect_docker(target).await?)),
        #[cfg(not(feature = "ecs"))]
        EngineKind::Ecs => Err(without_ecs(&format!(
            "environment `{}` (engine = \"ecs\")",
            target.name()
        ))),
        #[cfg(feature = "ecs")]
        EngineKind::Ecs => {
            // GitHub's OIDC token and the environment's role when running in Actions without
            // credentials; the SDK's standard chain otherwise.
            let shared = kaapi_aws::load(target.env(), None, &kaapi_aws::process_vars()).await?;
            let engine = kaapi_ecs::EcsEngine::connect_with_config(
                target.clone(),
                ecs_image_builder(target).await,
                shared,
            );
            Ok(Box::new(engine))
        }
    }
}

/// The local engine of a docker environment (commands only it has, such as `down`, use it
/// directly).
pub async fn connect_docker(target: &ResolvedEnvironment) -> CliResult<kaapi_docker::DockerEngine> {
    // The agent is this same program (`kaapi-deploy agent run`).
    let program = std::env::current_exe()
        .map_err(|e| CliError::Failed(format!("cannot find the kaapi-deploy executable: {e}")))?;
    Ok(kaapi_docker::DockerEngine::connect(
        target.clone(),
        &project::state_dir(target.loaded()),
        &program,
    )
    .await?)
}

/// The error for what a binary built without the `ecs` feature cannot do (AWS, and image
/// promotion between registries, whose client lives with the AWS code).
#[cfg(not(feature = "ecs"))]
pub fn without_ecs(what: &str) -> CliError {
    CliError::Failed(format!(
        "{what}: this kaapi-deploy was built without ECS support; install with \
         `cargo install kaapi-deploy` (default features) or download a release binary"
    ))
}

/// The shared build step the ECS engine pushes with: the config's image built on the local
/// Docker Engine. `None` when no Docker Engine answers, so `deploy ENV --image REF` still works
/// where Docker is absent (the engine says a build needs Docker).
#[cfg(feature = "ecs")]
async fn ecs_image_builder(target: &ResolvedEnvironment) -> Option<Arc<dyn ImageBuilder>> {
    let docker = kaapi_docker::docker::connect().await.ok()?;
    let spec = kaapi_docker::BuildSpec::from_config(target).ok()?;
    Some(Arc::new(kaapi_docker::DockerImageBuilder::new(
        docker, spec,
    )))
}
