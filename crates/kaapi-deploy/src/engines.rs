//! Builds the engine an environment names. The only place that knows every engine crate.

use kaapi_core::config::{EngineKind, LoadedConfig};
use kaapi_core::engine::Engine;

use crate::context;
use crate::exit::{CliError, CliResult};

pub async fn connect(loaded: &LoadedConfig, environment: &str) -> CliResult<Box<dyn Engine>> {
    let env = context::environment(loaded, environment)?;
    match env.engine {
        EngineKind::Docker => Err(CliError::Failed(format!(
            "environment `{environment}`: the docker engine is not built into this binary yet"
        ))),
        EngineKind::Ecs => Err(CliError::Failed(format!(
            "environment `{environment}`: the ecs engine is not built into this binary yet"
        ))),
    }
}
