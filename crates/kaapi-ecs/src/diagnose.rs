//! Why the tasks of a release failed: the stopped tasks of each service's revision
//! (`stoppedReason`, the containers' reasons and exit codes), the service's recent events and
//! each task's last CloudWatch log lines. Best effort: a call that fails leaves its part out.

use aws_sdk_ecs::types::{ContainerDefinition, DesiredStatus, Task};
use kaapi_core::diagnosis::{Diagnosis, Facts, EVENTS, LOG_LINES};
use kaapi_core::progress::Progress;
use kaapi_core::release::Release;

use crate::logs;
use crate::revisions::main_container_index;
use crate::session::Ctx;

/// At most this many stopped tasks are diagnosed per service: they usually fail alike.
const TASKS_PER_SERVICE: usize = 3;

/// The task's ID, the last part of its ARN.
pub fn task_id(task: &Task) -> String {
    let arn = task.task_arn().unwrap_or_default();
    arn.rsplit('/').next().unwrap_or(arn).to_owned()
}

/// What ECS says stopped `task`: `stoppedReason` and its containers' reasons.
pub fn stopped_reason(task: &Task) -> Option<String> {
    let mut parts: Vec<&str> = task.stopped_reason().into_iter().collect();
    parts.extend(task.containers().iter().filter_map(|c| c.reason()));
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// The facts of one stopped task, without logs or events.
pub fn task_facts(task: &Task, service: &str, container: Option<&str>) -> Facts {
    let main = task
        .containers()
        .iter()
        .find(|c| container.is_some() && c.name() == container)
        .or_else(|| task.containers().first());
    Facts {
        service: service.to_owned(),
        replica: task_id(task),
        reason: stopped_reason(task).unwrap_or_default(),
        exit_code: main.and_then(|c| c.exit_code()).map(i64::from),
        ..Facts::default()
    }
}

/// The awslogs stream of `container` in task `task_id`, when the container logs to CloudWatch.
pub fn log_stream(container: &ContainerDefinition, task_id: &str) -> Option<(String, String)> {
    let options = container.log_configuration()?.options()?;
    let group = options.get("awslogs-group")?;
    let prefix = options.get("awslogs-stream-prefix")?;
    let name = container.name()?;
    Some((group.clone(), format!("{prefix}/{name}/{task_id}")))
}

/// The last lines of a task's log stream (nothing when it cannot be read).
pub async fn last_log_lines(
    ctx: &Ctx,
    container: &ContainerDefinition,
    task_id: &str,
    progress: &dyn Progress,
) -> Vec<String> {
    let Some((group, stream)) = log_stream(container, task_id) else {
        return Vec::new();
    };
    let lines = logs::stream_lines(ctx, &group, &stream, progress)
        .await
        .unwrap_or_default();
    let skip = lines.len().saturating_sub(LOG_LINES);
    lines.into_iter().skip(skip).map(|l| l.line).collect()
}

/// One diagnosis per stopped task of each revision in `release` (at most a few per service).
pub async fn diagnose_release(
    ctx: &Ctx,
    release: &Release,
    progress: &dyn Progress,
) -> Vec<Diagnosis> {
    let mut found = Vec::new();
    for revision in &release.revisions {
        let Ok(ecs_name) = ctx.target.ecs_service_name(&revision.service) else {
            continue;
        };
        let ecs_name = ecs_name.to_owned();
        let events = service_events(ctx, &ecs_name, progress).await;
        let container = match ctx
            .describe_task_definition(&revision.revision, progress)
            .await
        {
            Ok(Some(described)) => {
                main_container_index(&described.definition, &[revision.service.as_str()])
                    .map(|i| described.definition.container_definitions()[i].clone())
            }
            _ => None,
        };
        for task in stopped_tasks(ctx, &ecs_name, &revision.revision).await {
            let mut facts = task_facts(
                &task,
                &revision.service,
                container.as_ref().and_then(|c| c.name()),
            );
            if let Some(container) = &container {
                facts.logs = last_log_lines(ctx, container, &facts.replica, progress).await;
            }
            facts.events = events.clone();
            found.push(facts.diagnose());
        }
    }
    found
}

/// The stopped tasks of `ecs_name` that ran `task_definition`, newest first as ECS lists them.
async fn stopped_tasks(ctx: &Ctx, ecs_name: &str, task_definition: &str) -> Vec<Task> {
    // Best effort: the failure stands whether or not its details can be read.
    let tasks = ctx
        .service_tasks(ecs_name, DesiredStatus::Stopped)
        .await
        .unwrap_or_default();
    tasks
        .into_iter()
        .filter(|t| t.task_definition_arn() == Some(task_definition))
        .take(TASKS_PER_SERVICE)
        .collect()
}

/// The service's most recent events, oldest first (ECS lists them newest first).
async fn service_events(ctx: &Ctx, ecs_name: &str, progress: &dyn Progress) -> Vec<String> {
    let services = ctx
        .describe_services(&[ecs_name.to_owned()], progress)
        .await
        .unwrap_or_default();
    let mut events: Vec<String> = services
        .first()
        .map(|s| {
            s.events()
                .iter()
                .take(EVENTS)
                .filter_map(|e| e.message().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    events.reverse();
    events
}
