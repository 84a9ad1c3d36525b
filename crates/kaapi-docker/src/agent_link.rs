//! The engine's side of the agent: start it on demand, hand it an environment's desired
//! state, follow the rollout, read its view of the environment. Every call to the agent's
//! client goes through here, so its errors become engine errors in one place.

use std::path::Path;
use std::time::{Duration, Instant};

use kaapi_core::engine::{EngineError, EngineResult};

use kaapi_agent::api::{EnvironmentSpec, EnvironmentState, RolloutMode, RolloutState};
use kaapi_agent::{AgentClient, AgentError};

/// How long a rollout waits for the agent to finish one that is already running for the same
/// environment (a deploy killed mid-rollout leaves its rollout running in the agent).
const BUSY_WAIT: Duration = Duration::from_secs(120);

pub struct AgentLink {
    client: AgentClient,
}

fn engine_error(e: AgentError) -> EngineError {
    match e {
        AgentError::Start(_) | AgentError::Network(_) => EngineError::unavailable(format!(
            "the kaapi-deploy agent: {e}; `kaapi-deploy agent status` says whether it runs"
        )),
        other => EngineError::failed(format!("the kaapi-deploy agent: {other}")),
    }
}

impl AgentLink {
    /// The running agent of `state_dir`, started from `program` when none answers.
    pub async fn connect(state_dir: &Path, program: &Path) -> EngineResult<Self> {
        let client = AgentClient::ensure_running(state_dir, program)
            .await
            .map_err(engine_error)?;
        Ok(Self { client })
    }

    /// Starts a rollout of `spec` and follows it to its end, passing on progress messages.
    pub async fn roll_out(
        &self,
        spec: &EnvironmentSpec,
        on_message: &(dyn Fn(&str) + Send + Sync),
    ) -> EngineResult<RolloutState> {
        let asked = Instant::now();
        let mut said_busy = false;
        let ticket = loop {
            match self.client.rollout(spec, RolloutMode::Converge).await {
                Ok(ticket) => break ticket,
                Err(AgentError::Api {
                    status: 409,
                    message,
                }) if asked.elapsed() < BUSY_WAIT => {
                    if !said_busy {
                        on_message(&format!(
                            "waiting for the rollout already running in `{}` to end ({message})",
                            spec.environment
                        ));
                        said_busy = true;
                    }
                    self.wait_for_active(&spec.environment).await;
                }
                Err(e) => return Err(engine_error(e)),
            }
        };
        self.client
            .wait_rollout(&spec.environment, &ticket.id, on_message)
            .await
            .map_err(engine_error)
    }

    /// Waits for the environment's running rollout (started by a deploy that was killed, say)
    /// to end; pauses briefly when none is known.
    async fn wait_for_active(&self, environment: &str) {
        let active = match self.client.environment(environment).await {
            Ok(Some(state)) => state.active_rollout,
            _ => None,
        };
        match active {
            Some(id) => {
                let _ = self.client.wait_rollout(environment, &id, |_| {}).await;
            }
            None => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// The agent's view of an environment when it already runs; never starts it.
pub async fn environment_if_running(
    state_dir: &Path,
    environment: &str,
) -> EngineResult<Option<EnvironmentState>> {
    let Some(client) = AgentClient::connect(state_dir)
        .await
        .map_err(engine_error)?
    else {
        return Ok(None);
    };
    client.environment(environment).await.map_err(engine_error)
}

/// The agent's view of an environment for `status`. When no agent answers but one has desired
/// state to restore (it died or was killed), it is started again first: like ECS's control
/// plane, the agent should not stay down just because nobody deployed since.
pub async fn environment_reviving(
    state_dir: &Path,
    program: &Path,
    environment: &str,
) -> EngineResult<Option<EnvironmentState>> {
    if let Some(state) = environment_if_running(state_dir, environment).await? {
        return Ok(Some(state));
    }
    if !state_dir.join("agent-state.json").is_file() {
        return Ok(None);
    }
    let link = AgentLink::connect(state_dir, program).await?;
    link.client
        .environment(environment)
        .await
        .map_err(engine_error)
}

/// What `down` did to the agent.
#[derive(Debug, Default)]
pub struct AgentTeardown {
    pub removed_environment: bool,
    pub stopped: bool,
    pub still_serves: Vec<String>,
}

/// Makes the agent forget `environment` (its replicas and ingresses go) and stops the agent
/// when it serves none of `others` and keeps no other desired state. An agent that is down but
/// would restore the environment when it next starts is started first, so that it forgets it.
pub async fn remove_environment(
    state_dir: &Path,
    program: &Path,
    environment: &str,
    others: &[String],
) -> EngineResult<AgentTeardown> {
    let stored = || kaapi_agent::stored_environments(state_dir).map_err(engine_error);
    let client = match AgentClient::connect(state_dir)
        .await
        .map_err(engine_error)?
    {
        Some(client) => client,
        None if stored()?.iter().any(|e| e == environment) => {
            AgentLink::connect(state_dir, program).await?.client
        }
        None => return Ok(AgentTeardown::default()),
    };
    client
        .remove_environment(environment)
        .await
        .map_err(engine_error)?;
    let mut still_serves = stored()?;
    for other in others {
        if client
            .environment(other)
            .await
            .map_err(engine_error)?
            .is_some()
        {
            still_serves.push(other.clone());
        }
    }
    still_serves.sort();
    still_serves.dedup();
    let stopped = still_serves.is_empty();
    if stopped {
        client.shutdown().await.map_err(engine_error)?;
    }
    Ok(AgentTeardown {
        removed_environment: true,
        stopped,
        still_serves,
    })
}
