//! `exec` on the local engine: runs a command in a running replica through the Docker exec API,
//! streaming its output to this process's stdout/stderr (and stdin to it when interactive).

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerSummary, ContainerSummaryStateEnum};
use bollard::Docker;
use futures_util::StreamExt;
use kaapi_core::engine::{EngineError, EngineResult, ExecRequest};
use tokio::io::AsyncWriteExt;

use crate::containers;
use crate::docker::failed;

/// The running replicas of `service`, oldest first, so that `--replica N` names the same
/// container from one call to the next.
pub async fn running_replicas(
    docker: &Docker,
    app: &str,
    environment: &str,
    service: &str,
) -> EngineResult<Vec<ContainerSummary>> {
    let mut replicas: Vec<ContainerSummary> =
        containers::replicas(docker, app, environment, Some(service))
            .await?
            .into_iter()
            .filter(|c| c.state == Some(ContainerSummaryStateEnum::RUNNING))
            .collect();
    replicas.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
    Ok(replicas)
}

/// Picks the `index`th (1-based) of `replicas`, or says how many run.
pub fn pick(
    replicas: &[ContainerSummary],
    request: &ExecRequest<'_>,
    environment: &str,
) -> EngineResult<String> {
    if replicas.is_empty() {
        return Err(EngineError::not_found(format!(
            "no replica of `{}` runs in `{environment}`; deploy first with `kaapi-deploy deploy {environment}`",
            request.service
        )));
    }
    request
        .replica
        .checked_sub(1)
        .and_then(|i| replicas.get(i))
        .and_then(|c| c.id.clone())
        .ok_or_else(|| {
            EngineError::not_found(format!(
                "--replica {}: `{}` has {} running replica(s) in `{environment}`; pick 1 to {}",
                request.replica,
                request.service,
                replicas.len(),
                replicas.len()
            ))
        })
}

/// Runs the request's command in `container` and returns its exit code.
pub async fn run(docker: &Docker, container: &str, request: &ExecRequest<'_>) -> EngineResult<i64> {
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(request.command.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                attach_stdin: Some(request.interactive),
                tty: Some(request.interactive),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| failed(&format!("creating an exec in container {container}"), e))?;
    let started = docker
        .start_exec(
            &created.id,
            Some(StartExecOptions {
                detach: false,
                tty: request.interactive,
                output_capacity: None,
            }),
        )
        .await
        .map_err(|e| failed("starting the exec", e))?;
    if let StartExecResults::Attached {
        mut output,
        mut input,
    } = started
    {
        // Keys (Ctrl-C included) go to the command, not to this process, until it ends.
        let _raw = request.interactive.then(RawTerminal::enter).flatten();
        if request.interactive {
            // Stdin is read on a plain thread: tokio's stdin would hold the runtime's shutdown
            // on a blocking read after the command ended, until the next key.
            let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
            std::thread::spawn(move || {
                use std::io::Read;
                let mut buffer = [0u8; 1024];
                let mut stdin = std::io::stdin();
                while let Ok(n) = stdin.read(&mut buffer) {
                    if n == 0 || sender.blocking_send(buffer[..n].to_vec()).is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                while let Some(chunk) = receiver.recv().await {
                    if input.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                let _ = input.shutdown().await;
            });
        }
        let mut stdout = tokio::io::stdout();
        let mut stderr = tokio::io::stderr();
        while let Some(chunk) = output.next().await {
            let chunk = chunk.map_err(|e| failed("reading the exec's output", e))?;
            let written = match chunk {
                LogOutput::StdErr { message } => stderr.write_all(&message).await,
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    stdout.write_all(&message).await
                }
                LogOutput::StdIn { .. } => Ok(()),
            };
            written.map_err(|e| EngineError::failed(format!("writing the exec's output: {e}")))?;
        }
        let _ = stdout.flush().await;
        let _ = stderr.flush().await;
    }
    let inspected = docker
        .inspect_exec(&created.id)
        .await
        .map_err(|e| failed("reading the exec's exit code", e))?;
    inspected.exit_code.ok_or_else(|| {
        EngineError::failed(format!(
            "the exec in container {container} reported no exit code"
        ))
    })
}

/// Stdin in raw mode (no echo, no line buffering, no signals from keys) while it lives; the
/// previous mode is restored on drop, also when the exec fails.
struct RawTerminal(libc::termios);

impl RawTerminal {
    /// `None` when stdin is not a terminal (then there is nothing to restore).
    fn enter() -> Option<Self> {
        // SAFETY: termios is plain data; tcgetattr fills it and fails on a non-terminal.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut saved) } != 0 {
            return None;
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw and tcsetattr only read and write the termios given.
        unsafe { libc::cfmakeraw(&mut raw) };
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) } != 0 {
            return None;
        }
        Some(Self(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: restores the mode read in `enter`.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.0) };
    }
}
