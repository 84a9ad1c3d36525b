//! `exec` on ECS: `ExecuteCommand` in a running task of a service, then the session handed to
//! AWS's `session-manager-plugin` (as the AWS CLI does), whose exit code is returned.

use std::path::{Path, PathBuf};

use aws_sdk_ecs::types::{DesiredStatus, Task};
use kaapi_core::engine::{EngineError, EngineResult, ExecRequest};

use crate::error::aws_error;
use crate::session::Ctx;

/// The program AWS's Session Manager ships; ECS Exec sessions need it.
pub const PLUGIN: &str = "session-manager-plugin";

/// How to get the plugin, said when it is not on PATH.
pub const PLUGIN_MISSING: &str = "`session-manager-plugin` is not on PATH; ECS Exec needs it to open the session: install AWS's Session Manager plugin (https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-working-with-install-plugin.html) and run the command again";

/// Runs the request in a running task and returns the plugin's exit code.
pub async fn run(ctx: &Ctx, request: &ExecRequest<'_>) -> EngineResult<i64> {
    let ecs_name = ctx.target.ecs_service_name(request.service)?.to_owned();
    let tasks = running_tasks(ctx, &ecs_name).await?;
    let task = pick(&tasks, request, &ecs_name)?;
    let task_arn = task.task_arn().unwrap_or_default().to_owned();
    let container = task
        .containers()
        .iter()
        .find(|c| c.name() == Some(request.service))
        .or_else(|| task.containers().first())
        .ok_or_else(|| EngineError::failed(format!("task {task_arn} has no container")))?;
    let container_name = container.name().unwrap_or(request.service).to_owned();
    let runtime_id = container.runtime_id().unwrap_or_default().to_owned();
    let executed = ctx
        .clients
        .ecs
        .execute_command()
        .cluster(ctx.cluster())
        .task(&task_arn)
        .container(&container_name)
        .command(shell_command(request.command))
        // ECS Exec only supports interactive sessions.
        .interactive(true)
        .send()
        .await
        .map_err(|e| {
            aws_error(
                &format!(
                    "ExecuteCommand in task {task_arn} (`kaapi-deploy check {}` reports whether ECS Exec is enabled on {ecs_name} and permitted)",
                    ctx.target.resolved().name()
                ),
                e,
            )
        })?;
    let session = executed
        .session()
        .ok_or_else(|| EngineError::failed("ExecuteCommand returned no session"))?;
    let plugin = find_on_path(PLUGIN, std::env::var_os("PATH").as_deref())
        .ok_or_else(|| EngineError::unavailable(PLUGIN_MISSING))?;
    let args = plugin_args(
        &SessionHandle {
            session_id: session.session_id().unwrap_or_default(),
            stream_url: session.stream_url().unwrap_or_default(),
            token: session.token_value().unwrap_or_default(),
        },
        ctx.region(),
        &format!("ecs:{}_{}_{runtime_id}", ctx.cluster(), task_id(&task_arn)),
    );
    let status = tokio::process::Command::new(plugin)
        .args(&args)
        .status()
        .await
        .map_err(|e| EngineError::failed(format!("starting {PLUGIN}: {e}")))?;
    Ok(status.code().map_or(1, i64::from))
}

/// The running tasks of `ecs_name`, oldest first.
async fn running_tasks(ctx: &Ctx, ecs_name: &str) -> EngineResult<Vec<Task>> {
    let mut tasks: Vec<Task> = ctx
        .service_tasks(ecs_name, DesiredStatus::Running)
        .await?
        .into_iter()
        .filter(|t| t.last_status() == Some("RUNNING"))
        .collect();
    tasks.sort_by(|a, b| {
        (a.started_at().map(|t| t.as_nanos()), a.task_arn())
            .cmp(&(b.started_at().map(|t| t.as_nanos()), b.task_arn()))
    });
    Ok(tasks)
}

fn pick<'t>(
    tasks: &'t [Task],
    request: &ExecRequest<'_>,
    ecs_name: &str,
) -> EngineResult<&'t Task> {
    if tasks.is_empty() {
        return Err(EngineError::not_found(format!(
            "no task of {ecs_name} runs; deploy first"
        )));
    }
    request
        .replica
        .checked_sub(1)
        .and_then(|i| tasks.get(i))
        .ok_or_else(|| {
            EngineError::not_found(format!(
                "--replica {}: {ecs_name} has {} running task(s); pick 1 to {}",
                request.replica,
                tasks.len(),
                tasks.len()
            ))
        })
}

/// The last part of a task ARN (`arn:…:task/cluster/ID`).
fn task_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// ExecuteCommand takes one string; arguments with spaces or quotes are single-quoted.
pub fn shell_command(command: &[String]) -> String {
    command
        .iter()
        .map(|arg| {
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c));
            if plain {
                arg.clone()
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The session ExecuteCommand opened. The token is a credential: never printed.
pub struct SessionHandle<'a> {
    pub session_id: &'a str,
    pub stream_url: &'a str,
    pub token: &'a str,
}

/// The plugin's arguments, as the AWS CLI passes them: the session, the region, the
/// `StartSession` operation, no profile, the target, and the ECS endpoint.
pub fn plugin_args(session: &SessionHandle<'_>, region: &str, target: &str) -> Vec<String> {
    vec![
        serde_json::json!({
            "sessionId": session.session_id,
            "streamUrl": session.stream_url,
            "tokenValue": session.token,
        })
        .to_string(),
        region.to_owned(),
        "StartSession".to_owned(),
        String::new(),
        serde_json::json!({ "Target": target }).to_string(),
        format!("https://ecs.{region}.amazonaws.com"),
    ]
}

/// The first executable `name` in the directories of `path`.
pub fn find_on_path(name: &str, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_with_spaces_or_quotes_are_quoted() {
        let command: Vec<String> = ["python", "-c", "print('hi there')", "a.py"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            shell_command(&command),
            r"python -c 'print('\''hi there'\'')' a.py"
        );
    }

    #[test]
    fn plugin_gets_the_session_region_and_target() {
        let args = plugin_args(
            &SessionHandle {
                session_id: "s-1",
                stream_url: "wss://ssmmessages.eu-west-1.amazonaws.com/x",
                token: "tok",
            },
            "eu-west-1",
            "ecs:c_t_r",
        );
        assert_eq!(args.len(), 6);
        let session: serde_json::Value = serde_json::from_str(&args[0]).expect("session JSON");
        assert_eq!(session["sessionId"], "s-1");
        assert_eq!(session["tokenValue"], "tok");
        assert_eq!(args[1], "eu-west-1");
        assert_eq!(args[2], "StartSession");
        assert_eq!(args[4], r#"{"Target":"ecs:c_t_r"}"#);
        assert_eq!(args[5], "https://ecs.eu-west-1.amazonaws.com");
    }

    #[test]
    fn plugin_is_found_only_when_executable_on_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let plugin = dir.path().join(PLUGIN);
        std::fs::write(&plugin, "#!/bin/sh\n").expect("write plugin");
        assert_eq!(find_on_path(PLUGIN, Some(dir.path().as_os_str())), None);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(
            find_on_path(PLUGIN, Some(dir.path().as_os_str())),
            Some(plugin)
        );
        assert_eq!(find_on_path(PLUGIN, None), None);
    }
}
