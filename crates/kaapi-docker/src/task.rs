//! One-off tasks (migrations, `run`): a container of a revision with the same variables and
//! volumes, its output streamed as progress, its exit code returned, the container removed.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use kaapi_core::engine::{EngineError, EngineResult, RunningTasks, TaskExit};
use kaapi_core::progress::Progress;

use crate::containers::ensure_volumes;
use crate::docker::failed;
use crate::revisions::RELEASE_VARIABLE;
use kaapi_agent::api::{labels, ServiceSpec};

/// Everything a one-off task needs besides the revision's spec.
pub struct TaskRequest<'a> {
    pub app: &'a str,
    pub environment: &'a str,
    /// The release whose revision runs; `None` for an image no release carries yet.
    pub release: Option<u64>,
    pub spec: &'a ServiceSpec,
    pub command: &'a [String],
    pub timeout: Option<Duration>,
    /// Prefix of output lines, e.g. `migrate` or `backend/task`.
    pub source: &'a str,
}

pub async fn run(
    docker: &Docker,
    running: &RunningTasks,
    request: &TaskRequest<'_>,
    progress: &dyn Progress,
) -> EngineResult<TaskExit> {
    let spec = request.spec;
    ensure_volumes(docker, request.app, request.environment, &spec.volumes).await?;
    let of = request
        .release
        .map_or_else(|| "image".to_owned(), |n| n.to_string());
    let name = format!(
        "{}-{}-{}-task-{of}-{}",
        request.app,
        request.environment,
        spec.name,
        unique_suffix()
    );
    let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut container_labels = HashMap::from([
        (labels::APP.to_owned(), request.app.to_owned()),
        (
            labels::ENVIRONMENT.to_owned(),
            request.environment.to_owned(),
        ),
        (labels::SERVICE.to_owned(), spec.name.clone()),
        (labels::ROLE.to_owned(), "task".to_owned()),
    ]);
    if let Some(release) = request.release {
        env.push(format!("{RELEASE_VARIABLE}={release}"));
        container_labels.insert(labels::RELEASE.to_owned(), release.to_string());
    }
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: (!request.command.is_empty()).then(|| request.command.to_vec()),
        env: Some(env),
        labels: Some(container_labels),
        host_config: Some(HostConfig {
            binds: (!spec.volumes.is_empty()).then(|| spec.volumes.clone()),
            memory: spec.memory_mib.map(|m| i64::from(m) * 1024 * 1024),
            cpu_shares: spec.cpu.map(i64::from),
            network_mode: spec.network.clone(),
            log_config: Some(kaapi_agent::container_logs::log_config(
                spec.logs.unwrap_or_default(),
            )),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    let created = docker
        .create_container(Some(options), body)
        .await
        .map_err(|e| failed(&format!("creating the one-off container {name}"), e))?;
    let id = created.id;
    running.insert(&id);
    let outcome = run_created(docker, &id, request, progress).await;
    if let Err(e) = remove(docker, &id).await {
        progress.warning(format!(
            "could not remove the one-off container {name}: {e}"
        ));
    }
    running.remove(&id);
    outcome
}

/// Removes (stopping first) every one-off container still registered in `running`.
pub async fn stop_all(docker: &Docker, running: &RunningTasks) -> EngineResult<()> {
    for id in running.take() {
        remove(docker, &id)
            .await
            .map_err(|e| failed(&format!("removing the one-off container {id}"), e))?;
    }
    Ok(())
}

async fn remove(docker: &Docker, id: &str) -> Result<(), bollard::errors::Error> {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(false)
        .build();
    docker.remove_container(id, Some(options)).await
}

async fn run_created(
    docker: &Docker,
    id: &str,
    request: &TaskRequest<'_>,
    progress: &dyn Progress,
) -> EngineResult<TaskExit> {
    docker
        .start_container(id, None)
        .await
        .map_err(|e| failed("starting the one-off container", e))?;
    let follow = async {
        let options = LogsOptionsBuilder::default()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .build();
        let mut logs = docker.logs(id, Some(options));
        let mut pending = String::new();
        while let Some(Ok(chunk)) = logs.next().await {
            pending.push_str(&chunk.to_string());
            while let Some(end) = pending.find('\n') {
                let line: String = pending.drain(..=end).collect();
                progress.output(request.source, line.trim_end_matches(['\n', '\r']));
            }
        }
        if !pending.is_empty() {
            progress.output(request.source, pending.trim_end());
        }
    };
    let wait = async {
        let mut waits = docker.wait_container(id, None);
        match waits.next().await {
            Some(Ok(response)) => Ok(response.status_code),
            // bollard reports a non-zero exit as an error carrying the code.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(failed("waiting for the one-off container", e)),
            None => Err(EngineError::failed(
                "the Docker Engine stopped reporting on the one-off container",
            )),
        }
    };
    let both = async { tokio::join!(wait, follow).0 };
    let code = match request.timeout {
        Some(limit) => match tokio::time::timeout(limit, both).await {
            Ok(code) => code?,
            Err(_) => {
                return Ok(TaskExit {
                    exit_code: -1,
                    reason: Some(format!(
                        "timed out after {}s and was stopped",
                        limit.as_secs()
                    )),
                })
            }
        },
        None => both.await?,
    };
    let reason = match code {
        137 => Some("killed (out of memory or SIGKILL)".to_owned()),
        _ => None,
    };
    Ok(TaskExit {
        exit_code: code,
        reason,
    })
}

/// Enough to keep two tasks started in the same second apart.
fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{:x}{:x}{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
