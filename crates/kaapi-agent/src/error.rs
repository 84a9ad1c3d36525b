//! The agent's error type, shared by the server side and the client.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The state directory or a file in it is not private (a link, another user's).
    #[error(transparent)]
    Private(#[from] crate::private::PrivateError),
    #[error("Docker Engine: {0}; is Docker running (`docker info`)?")]
    Docker(#[from] bollard::errors::Error),
    #[error("{0}")]
    Network(String),
    /// The agent answered with an error status.
    #[error("agent answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("the agent did not start: {0}")]
    Start(String),
    #[error("cannot encode or decode agent data: {0}")]
    Json(#[from] serde_json::Error),
}

impl AgentError {
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AgentError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
