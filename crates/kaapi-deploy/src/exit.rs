//! Exit codes everywhere: 0 success; 1 the operation ran and failed; 2 usage or an unreadable
//! or invalid config; 3 (`plan`, `deploy --dry-run`) a deploy would change something.

use kaapi_core::config::ConfigError;
use kaapi_core::engine::EngineError;

/// `plan` and `deploy --dry-run`: the plan ran and a deploy would change something (0: nothing
/// would change).
pub const CHANGES_PENDING: u8 = 3;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad usage or bad input files (exit 2).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The operation ran and failed (exit 1); the message was already printed when empty.
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// No AWS access (credentials, OIDC role): exit 1.
    #[cfg(feature = "ecs")]
    #[error(transparent)]
    Aws(#[from] kaapi_aws::AwsError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Config(_) => 2,
            #[cfg(feature = "ecs")]
            CliError::Aws(_) => 1,
            CliError::Failed(_) | CliError::Engine(_) | CliError::Other(_) => 1,
        }
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;
