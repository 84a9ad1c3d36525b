//! The engine's side of the agent: start it on demand, hand it an environment's desired
//! state, follow the rollout, read its view of the environment. Every call to the agent's
//! client goes through here.

use std::path::Path;

use kaapi_core::engine::{EngineError, EngineResult};

use crate::agent::api::{EnvironmentSpec, EnvironmentState, RolloutState};

pub struct AgentLink;

impl AgentLink {
    pub async fn connect(_state_dir: &Path, _program: &Path) -> EngineResult<Self> {
        Err(EngineError::unavailable(
            "the local agent is not part of this build yet",
        ))
    }

    pub async fn roll_out(
        &self,
        _spec: &EnvironmentSpec,
        _on_message: &(dyn Fn(&str) + Send + Sync),
    ) -> EngineResult<RolloutState> {
        Err(EngineError::unavailable(
            "the local agent is not part of this build yet",
        ))
    }
}

/// The agent's view of an environment when it already runs; never starts it.
pub async fn environment_if_running(
    _state_dir: &Path,
    _environment: &str,
) -> EngineResult<Option<EnvironmentState>> {
    Ok(None)
}
