//! How a container ended and what it last wrote, read from the Docker Engine for a failure
//! report before the container is removed. Shared by the agent (failed rollouts) and the local
//! engine (failed one-off tasks, unhealthy replicas).

use bollard::query_parameters::{InspectContainerOptions, LogsOptionsBuilder};
use bollard::Docker;
use futures_util::StreamExt;

/// How a container ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostMortem {
    /// Set once the container has exited.
    pub exit_code: Option<i64>,
    /// Docker's `State.OOMKilled`: killed for exceeding its memory limit.
    pub oom_killed: bool,
    /// Its last log lines (stdout and stderr), oldest first.
    pub logs: Vec<String>,
}

/// Best effort: what cannot be read is left empty.
pub async fn read(docker: &Docker, id: &str, lines: usize) -> PostMortem {
    let state = docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .ok()
        .and_then(|inspect| inspect.state)
        .unwrap_or_default();
    let exited = state.running != Some(true)
        && state
            .finished_at
            .as_deref()
            .is_some_and(|t| !t.starts_with("0001"));
    let options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .tail(&lines.to_string())
        .build();
    let mut logs = Vec::new();
    let mut stream = docker.logs(id, Some(options));
    while let Some(Ok(chunk)) = stream.next().await {
        logs.extend(chunk.to_string().lines().map(str::to_owned));
    }
    let skip = logs.len().saturating_sub(lines);
    PostMortem {
        exit_code: state.exit_code.filter(|_| exited),
        oom_killed: state.oom_killed == Some(true),
        logs: logs.into_iter().skip(skip).collect(),
    }
}
