//! Builds the engine an environment names. The only place that knows every engine crate.

use std::sync::Arc;

use kaapi_core::config::{EngineKind, ResolvedEnvironment};
use kaapi_core::engine::{Engine, ImageBuilder};

use crate::exit::{CliError, CliResult};
use crate::project;

pub async fn connect(target: &ResolvedEnvironment) -> CliResult<Box<dyn Engine>> {
    match target.env().engine {
        EngineKind::Docker => {
            // The agent is this same program (`kaapi-deploy agent run`).
            let program = std::env::current_exe().map_err(|e| {
                CliError::Failed(format!("cannot find the kaapi-deploy executable: {e}"))
            })?;
            let engine = kaapi_docker::DockerEngine::connect(
                target.clone(),
                &project::state_dir(target.loaded()),
                &program,
            )
            .await?;
            Ok(Box::new(engine))
        }
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

/// The shared build step the ECS engine pushes with: the config's image built on the local
/// Docker Engine. `None` when no Docker Engine answers, so `deploy ENV --image REF` still works
/// where Docker is absent (the engine says a build needs Docker).
async fn ecs_image_builder(target: &ResolvedEnvironment) -> Option<Arc<dyn ImageBuilder>> {
    let docker = kaapi_docker::docker::connect().await.ok()?;
    let spec = kaapi_docker::BuildSpec::from_config(target).ok()?;
    Some(Arc::new(kaapi_docker::DockerImageBuilder::new(
        docker, spec,
    )))
}
