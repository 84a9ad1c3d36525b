//! Connecting to the Docker Engine, with an error that says how to start it when it is not
//! there.

use bollard::Docker;
use kaapi_core::engine::{EngineError, EngineResult};

/// What to do when the engine cannot be reached; shared by every message that says so.
const START_HINT: &str = "start it with `sudo dockerd` (or run scripts/setup-docker.sh), or point DOCKER_HOST at a running engine";

/// Connects to the local Docker Engine (or `DOCKER_HOST`) and negotiates the API version, so
/// older engines (20.10 speaks 1.41) work with a newer client.
pub async fn connect() -> EngineResult<Docker> {
    let docker = Docker::connect_with_local_defaults().map_err(|e| unavailable(&e))?;
    docker
        .negotiate_version()
        .await
        .map_err(|e| unavailable(&e))
}

fn unavailable(error: &bollard::errors::Error) -> EngineError {
    let target = std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
    EngineError::unavailable(format!(
        "cannot reach the Docker Engine at {target} ({error}); {START_HINT}"
    ))
}

/// Turns a Docker API error met while doing `what` into an engine failure; a lost connection
/// becomes [`EngineError::Unavailable`] with the hint.
pub fn failed(what: &str, error: bollard::errors::Error) -> EngineError {
    use bollard::errors::Error as E;
    match error {
        E::DockerResponseServerError {
            status_code: 404,
            message,
        } => EngineError::not_found(format!("{what}: {message}")),
        E::DockerResponseServerError { message, .. } => {
            EngineError::failed(format!("{what}: {message}"))
        }
        E::HyperResponseError { .. } | E::IOError { .. } | E::RequestTimeoutError => {
            EngineError::unavailable(format!(
                "{what}: lost the Docker Engine ({error}); {START_HINT}"
            ))
        }
        other => EngineError::failed(format!("{what}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_message_names_the_target_and_what_to_do() {
        let error = bollard::errors::Error::RequestTimeoutError;
        let message = unavailable(&error).to_string();
        assert!(
            message.contains("cannot reach the Docker Engine"),
            "{message}"
        );
        assert!(message.contains("sudo dockerd"), "{message}");
        assert!(message.contains("DOCKER_HOST"), "{message}");
    }

    #[test]
    fn a_404_is_not_found() {
        let error = bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            message: "No such image: x".to_owned(),
        };
        assert!(matches!(
            failed("inspecting x", error),
            EngineError::NotFound { .. }
        ));
    }
}
