//! One-off tasks (migrations, `run`): `RunTask` of a service's revision with a command
//! override, on the service's network and launch type or capacity providers; wait for
//! `STOPPED` with backoff; read the exit code and stop reason; show the task's log lines.

use tokio::time::Instant;

use aws_sdk_ecs::types::{
    ContainerOverride, LaunchType, NetworkConfiguration, PropagateTags, Task, TaskDefinitionStatus,
    TaskOverride, TaskStopCode,
};
use kaapi_core::diagnosis::with_hint;
use kaapi_core::engine::{EngineError, EngineResult, RunningTasks, TaskExit};
use kaapi_core::progress::Progress;

use crate::backoff::Backoff;
use crate::error::aws_error;
use crate::logs;
use crate::one_off;
use crate::release_tags::{self as tag_keys, tag};
use crate::retry::retry_throttled;
use crate::revisions::{self, main_container_index, short_revision};
use crate::session::Ctx;

/// How a task launch is placed, copied from the service.
#[derive(Debug, Clone, Default)]
struct Placement {
    network: Option<NetworkConfiguration>,
    launch_type: Option<LaunchType>,
    capacity_providers: Vec<aws_sdk_ecs::types::CapacityProviderStrategyItem>,
    platform_version: Option<String>,
}

/// The exit of a stopped task, from its main container.
pub fn exit_of(task: &Task, container: &str) -> TaskExit {
    let mut exit = exit_without_diagnosis(task, container);
    if exit.exit_code != 0 {
        let facts = crate::diagnose::task_facts(task, container, Some(container));
        exit.diagnosis = Some(facts.diagnose());
    }
    exit
}

fn exit_without_diagnosis(task: &Task, container: &str) -> TaskExit {
    let main = task
        .containers()
        .iter()
        .find(|c| c.name() == Some(container))
        .or_else(|| task.containers().first());
    let exit_code = main.and_then(|c| c.exit_code());
    let stop_code = task.stop_code();
    let stopped_reason = task.stopped_reason().unwrap_or_default();
    let container_reason = main.and_then(|c| c.reason()).unwrap_or_default();
    match exit_code {
        Some(code) if stop_code != Some(&TaskStopCode::TaskFailedToStart) => TaskExit {
            exit_code: i64::from(code),
            reason: (code != 0 && !container_reason.is_empty())
                .then(|| with_hint(container_reason)),
            diagnosis: None,
        },
        _ => {
            let code = stop_code.map(|c| c.as_str()).unwrap_or("stopped");
            let mut reason = format!("{code}: {stopped_reason}");
            if !container_reason.is_empty() {
                reason.push_str(&format!(" ({container_reason})"));
            }
            // No exit code: the command never ran; report failure without inventing a code.
            TaskExit {
                exit_code: 1,
                reason: Some(with_hint(reason.trim_end_matches(": "))),
                diagnosis: None,
            }
        }
    }
}

/// Stops every task in `running` (after an interrupted step).
pub async fn stop_all(ctx: &Ctx, running: &RunningTasks) -> EngineResult<()> {
    for arn in running.take() {
        stop(ctx, &arn, "kaapi-deploy: interrupted").await?;
    }
    Ok(())
}

async fn stop(ctx: &Ctx, task_arn: &str, reason: &str) -> EngineResult<()> {
    ctx.clients
        .ecs
        .stop_task()
        .cluster(ctx.cluster())
        .task(task_arn)
        .reason(reason)
        .send()
        .await
        .map_err(|e| aws_error(&format!("ecs:StopTask of {task_arn}"), e))?;
    Ok(())
}

/// Runs `command` as a one-off task of `revision` (a task-definition ARN) of `service`.
pub async fn run_task(
    ctx: &Ctx,
    running: &RunningTasks,
    revision: &str,
    service: &str,
    command: &[String],
    progress: &dyn Progress,
) -> EngineResult<TaskExit> {
    let definition = ctx
        .describe_task_definition(revision, progress)
        .await?
        .ok_or_else(|| {
            EngineError::not_found(format!("task definition {revision} no longer exists"))
        })?;
    // ECS starts no new task of a deregistered revision (`prune` deregisters the revisions of
    // releases beyond the kept ones); say so before RunTask's bare ClientException.
    if definition.definition.status() == Some(&TaskDefinitionStatus::Inactive) {
        return Err(EngineError::not_found(format!(
            "task definition {revision} was deregistered (pruned), and ECS runs no new task of an INACTIVE revision; run on a release that was kept, or deploy that release's image again (`kaapi-deploy deploy ENV --image IMAGE`)"
        )));
    }
    let index = main_container_index(&definition.definition, &[service])
        .ok_or_else(|| EngineError::failed(format!("{revision} has no container")))?;
    let container = definition.definition.container_definitions()[index].clone();
    let container_name = container.name().unwrap_or(service).to_owned();
    let revision = match one_off::trimmed(&definition.definition, index) {
        Some(one_off) => {
            // Tagged without a release number, like `migrate`'s revision: never a release.
            let mut tags = vec![tag(tag_keys::SERVICE, service)];
            tags.extend(
                definition
                    .tag(tag_keys::IMAGE)
                    .map(|image| tag(tag_keys::IMAGE, image)),
            );
            let registered = revisions::register(ctx, &one_off, tags, progress).await?;
            progress.info(format!(
                "{service}: registered {} for the one-off task, with container `{container_name}` only of {}",
                short_revision(registered.arn()),
                short_revision(revision)
            ));
            registered.arn().to_owned()
        }
        None => revision.to_owned(),
    };
    let revision = revision.as_str();

    let live = ctx.live_service(service).await?;
    let placement = match &live {
        Some(s) => Placement {
            network: s.network_configuration().cloned(),
            launch_type: s.launch_type().cloned(),
            capacity_providers: s.capacity_provider_strategy().to_vec(),
            platform_version: s.platform_version().map(str::to_owned),
        },
        None => Placement::default(),
    };
    let overrides = TaskOverride::builder()
        .container_overrides(
            ContainerOverride::builder()
                .name(&container_name)
                .set_command(Some(command.to_vec()))
                .build(),
        )
        .build();
    let launch_type = if placement.capacity_providers.is_empty() {
        placement.launch_type.clone()
    } else {
        None
    };
    let out = retry_throttled(&ctx.tuning, "ecs:RunTask", progress, || {
        ctx.clients
            .ecs
            .run_task()
            .cluster(ctx.cluster())
            .task_definition(revision)
            .overrides(overrides.clone())
            .set_network_configuration(placement.network.clone())
            .set_launch_type(launch_type.clone())
            .set_capacity_provider_strategy(
                (!placement.capacity_providers.is_empty())
                    .then(|| placement.capacity_providers.clone()),
            )
            .set_platform_version(placement.platform_version.clone())
            .propagate_tags(PropagateTags::TaskDefinition)
            .started_by("kaapi-deploy")
            .count(1)
            .send()
    })
    .await
    .map_err(|e| aws_error(&format!("ecs:RunTask of {revision}"), e))?;
    if let Some(failure) = out.failures().first() {
        return Ok(TaskExit {
            exit_code: 1,
            reason: Some(
                format!(
                    "ECS could not start the task: {} {}",
                    failure.reason().unwrap_or_default(),
                    failure.detail().unwrap_or_default()
                )
                .trim_end()
                .to_owned(),
            ),
            diagnosis: None,
        });
    }
    let task_arn = out
        .tasks()
        .first()
        .and_then(|t| t.task_arn())
        .map(str::to_owned)
        .ok_or_else(|| EngineError::failed("ecs:RunTask started no task and gave no reason"))?;
    let task_id = task_arn.rsplit('/').next().unwrap_or(&task_arn).to_owned();
    running.insert(&task_arn);
    progress.info(format!(
        "{service}: task {task_id} of {} runs `{}`",
        short_revision(revision),
        command.join(" ")
    ));

    let stopped = wait_stopped(ctx, &task_arn, progress).await;
    let stopped = match stopped {
        Ok(task) => task,
        Err(e) => {
            // Don't leave a migration running behind a deploy that gave up on it.
            if let Err(stop_error) = stop(ctx, &task_arn, "kaapi-deploy: gave up waiting").await {
                progress.warning(format!("could not stop task {task_id}: {stop_error}"));
            }
            running.remove(&task_arn);
            return Err(e);
        }
    };
    running.remove(&task_arn);
    let mut output = Vec::new();
    if let Some((group, stream)) = crate::diagnose::log_stream(&container, &task_id) {
        match logs::stream_lines(ctx, &group, &stream, progress).await {
            Ok(lines) => {
                for line in lines {
                    progress.output(&format!("{service}/{task_id}"), &line.line);
                    output.push(line.line);
                }
            }
            Err(e) => progress.warning(format!("could not read the task's logs: {e}")),
        }
    }
    let mut exit = exit_of(&stopped, &container_name);
    if let Some(diagnosis) = exit.diagnosis.take() {
        // The task's service, not its container name, and the lines it wrote.
        let facts = kaapi_core::diagnosis::Facts {
            service: service.to_owned(),
            replica: diagnosis.replica,
            reason: diagnosis.reason,
            exit_code: diagnosis.exit_code,
            logs: output,
            ..Default::default()
        };
        exit.diagnosis = Some(facts.diagnose());
    }
    progress.info(format!(
        "{service}: task {task_id} exited with code {}{}",
        exit.exit_code,
        exit.reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    ));
    Ok(exit)
}

async fn wait_stopped(ctx: &Ctx, task_arn: &str, progress: &dyn Progress) -> EngineResult<Task> {
    let started = Instant::now();
    let mut backoff = Backoff::new(ctx.tuning.poll_initial, ctx.tuning.poll_max);
    let mut last_status = String::new();
    loop {
        if started.elapsed() >= ctx.tuning.task_timeout {
            return Err(EngineError::failed(format!(
                "task {task_arn} did not stop within {}; it was stopped",
                humantime::format_duration(ctx.tuning.task_timeout)
            )));
        }
        backoff.wait().await;
        let out = retry_throttled(&ctx.tuning, "ecs:DescribeTasks", progress, || {
            ctx.clients
                .ecs
                .describe_tasks()
                .cluster(ctx.cluster())
                .tasks(task_arn)
                .send()
        })
        .await
        .map_err(|e| aws_error("ecs:DescribeTasks", e))?;
        let Some(task) = out.tasks().first() else {
            return Err(EngineError::failed(format!(
                "ECS no longer knows task {task_arn}"
            )));
        };
        let status = task.last_status().unwrap_or("UNKNOWN").to_owned();
        if status != last_status {
            progress.info(format!("task is {status}"));
            last_status = status.clone();
        }
        if status == "STOPPED" {
            return Ok(task.clone());
        }
    }
}
