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
use kaapi_core::engine::{EngineError, EngineResult, TaskExit};
use kaapi_core::progress::Progress;

use crate::agent::api::{labels, ServiceSpec};
use crate::containers::ensure_volumes;
use crate::docker::failed;

/// Everything a one-off task needs besides the revision's spec.
pub struct TaskRequest<'a> {
    pub app: &'a str,
    pub environment: &'a str,
    pub release: u64,
    pub spec: &'a ServiceSpec,
    pub command: &'a [String],
    /// Extra variables (the release number).
    pub extra_env: &'a [(String, String)],
    pub timeout: Option<Duration>,
    /// Prefix of output lines, e.g. `migrate` or `backend/task`.
    pub source: &'a str,
}

pub async fn run(
    docker: &Docker,
    request: &TaskRequest<'_>,
    progress: &dyn Progress,
) -> EngineResult<TaskExit> {
    let spec = request.spec;
    ensure_volumes(docker, request.app, request.environment, &spec.volumes).await?;
    let name = format!(
        "{}-{}-{}-task-{}-{}",
        request.app,
        request.environment,
        spec.name,
        request.release,
        unique_suffix()
    );
    let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.extend(request.extra_env.iter().map(|(k, v)| format!("{k}={v}")));
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: (!request.command.is_empty()).then(|| request.command.to_vec()),
        env: Some(env),
        labels: Some(HashMap::from([
            (labels::APP.to_owned(), request.app.to_owned()),
            (
                labels::ENVIRONMENT.to_owned(),
                request.environment.to_owned(),
            ),
            (labels::SERVICE.to_owned(), spec.name.clone()),
            (labels::RELEASE.to_owned(), request.release.to_string()),
            (labels::ROLE.to_owned(), "task".to_owned()),
        ])),
        host_config: Some(HostConfig {
            binds: (!spec.volumes.is_empty()).then(|| spec.volumes.clone()),
            memory: spec.memory_mib.map(|m| i64::from(m) * 1024 * 1024),
            cpu_shares: spec.cpu.map(i64::from),
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
    let outcome = run_created(docker, &id, request, progress).await;
    let remove = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(false)
        .build();
    if let Err(e) = docker.remove_container(&id, Some(remove)).await {
        progress.warning(format!(
            "could not remove the one-off container {name}: {e}"
        ));
    }
    outcome
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
