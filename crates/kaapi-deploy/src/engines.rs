//! Builds the engine an environment names. The only place that knows every engine crate.

use std::sync::Arc;

use kaapi_core::config::{EngineKind, LoadedConfig};
use kaapi_core::engine::{Engine, ImageBuilder};

use crate::context;
use crate::exit::{CliError, CliResult};

pub async fn connect(loaded: &LoadedConfig, environment: &str) -> CliResult<Box<dyn Engine>> {
    let env = context::environment(loaded, environment)?;
    match env.engine {
        EngineKind::Docker => {
            // The agent is this same program (`kaapi-deploy agent run`).
            let program = std::env::current_exe().map_err(|e| {
                CliError::Failed(format!("cannot find the kaapi-deploy executable: {e}"))
            })?;
            let engine = kaapi_docker::DockerEngine::connect(
                loaded.clone(),
                environment,
                &context::state_dir(loaded),
                &program,
            )
            .await?;
            Ok(Box::new(engine))
        }
        EngineKind::Ecs => {
            let engine =
                kaapi_ecs::EcsEngine::connect(loaded, environment, ecs_image_builder(loaded))
                    .await?;
            Ok(Box::new(engine))
        }
    }
}

/// The shared build step the ECS engine pushes with.
///
/// LEAD: wire `kaapi_docker`'s `DockerImageBuilder` here (it builds the config's image on the
/// local Docker Engine and pushes it with the ECR credentials the engine passes in), e.g.
/// `Some(Arc::new(kaapi_docker::DockerImageBuilder::new(loaded)?))`. Until then `deploy ENV`
/// on ECS says no builder is available, and `deploy ENV --image REF` works.
fn ecs_image_builder(_loaded: &LoadedConfig) -> Option<Arc<dyn ImageBuilder>> {
    None
}
