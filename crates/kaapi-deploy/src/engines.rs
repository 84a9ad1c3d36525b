//! Builds the engine an environment names. The only place that knows every engine crate.

use kaapi_core::config::{EngineKind, LoadedConfig};
use kaapi_core::engine::Engine;

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
        EngineKind::Ecs => Err(CliError::Failed(format!(
            "environment `{environment}`: the ecs engine is not built into this binary yet"
        ))),
    }
}
