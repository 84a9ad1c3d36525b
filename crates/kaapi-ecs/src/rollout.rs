//! Rollouts: `UpdateService` for every service with the circuit breaker on (rollback enabled),
//! then follow *our* deployment of each, by its ID and task definition, with one
//! `DescribeServices` call per poll for all services. `COMPLETED` is success; `FAILED`, a
//! circuit-breaker rollback or another deployment becoming primary is failure, reported with
//! what ECS rolled back to; the timeout hands over to the pipeline's own rollback.

use std::collections::{HashMap, HashSet};
use tokio::time::Instant;

use aws_sdk_ecs::types::{
    Deployment, DeploymentCircuitBreaker, DeploymentConfiguration, DeploymentRolloutState,
    DesiredStatus, Service,
};
use kaapi_core::diagnosis::with_hint;
use kaapi_core::engine::{EngineError, EngineResult, RolloutOutcome};
use kaapi_core::progress::Progress;
use kaapi_core::release::Release;

use crate::error::aws_error;
use crate::pacing::{self, Observed, Phase};
use crate::release_tags as tags;
use crate::retry::retry_throttled;
use crate::revisions::short_revision;
use crate::session::Ctx;

/// The deployment we started on one service.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub service: String,
    pub ecs_name: String,
    pub task_definition: String,
    pub deployment_id: Option<String>,
}

/// What one poll says about one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pending(String),
    Completed,
    Failed {
        reason: String,
        rolled_back_to: Option<String>,
    },
}

/// Our deployment on `service`: by its ID, else by its task definition.
fn our_deployment<'a>(service: &'a Service, tracked: &Tracked) -> Option<&'a Deployment> {
    service
        .deployments()
        .iter()
        .find(|d| match &tracked.deployment_id {
            Some(id) => d.id() == Some(id.as_str()),
            None => d.task_definition() == Some(tracked.task_definition.as_str()),
        })
}

/// Judges our deployment on `service` from a DescribeServices answer.
pub fn judge(service: &Service, tracked: &Tracked) -> Verdict {
    let deployments = service.deployments();
    let ours = our_deployment(service, tracked);
    let primary = deployments.iter().find(|d| d.status() == Some("PRIMARY"));
    let other_primary = primary.filter(|p| match &tracked.deployment_id {
        Some(id) => p.id() != Some(id.as_str()),
        None => p.task_definition() != Some(tracked.task_definition.as_str()),
    });
    let rolled_back_to = other_primary
        .and_then(|p| p.task_definition())
        .map(str::to_owned);
    let Some(ours) = ours else {
        return Verdict::Failed {
            reason: format!(
                "our deployment of {} is gone from service {}",
                short_revision(&tracked.task_definition),
                tracked.ecs_name
            ),
            rolled_back_to,
        };
    };
    match ours.rollout_state() {
        Some(DeploymentRolloutState::Completed) => return Verdict::Completed,
        Some(DeploymentRolloutState::Failed) => {
            return Verdict::Failed {
                reason: ours
                    .rollout_state_reason()
                    .unwrap_or("ECS marked the deployment FAILED")
                    .to_owned(),
                rolled_back_to,
            }
        }
        _ => {}
    }
    if other_primary.is_some() {
        return Verdict::Failed {
            reason: format!(
                "another deployment became primary on service {}",
                tracked.ecs_name
            ),
            rolled_back_to,
        };
    }
    // Services not driven by the ECS deployment controller report no rollout state: done once
    // ours is the only deployment and every task runs.
    if ours.rollout_state().is_none()
        && deployments.len() == 1
        && ours.running_count() >= ours.desired_count()
    {
        return Verdict::Completed;
    }
    Verdict::Pending(format!(
        "{}: {}/{} running, {} pending{}",
        tracked.service,
        ours.running_count(),
        ours.desired_count(),
        ours.pending_count(),
        if ours.failed_tasks() > 0 {
            format!(", {} failed", ours.failed_tasks())
        } else {
            String::new()
        }
    ))
}

/// Starts the deployment of one service and says which deployment to follow.
async fn update_service(
    ctx: &Ctx,
    service: &str,
    task_definition: &str,
    desired: i32,
    progress: &dyn Progress,
) -> EngineResult<Tracked> {
    let ecs_name = ctx.target.ecs_service_name(service)?.to_owned();
    let live = ctx.live_service(service).await?.ok_or_else(|| {
        EngineError::not_found(format!(
            "ECS service `{ecs_name}` does not exist in cluster {}; create it (the infrastructure templates do) or set `names.services.{service}`",
            ctx.cluster()
        ))
    })?;
    let live_config = live.deployment_configuration();
    let breaker = DeploymentCircuitBreaker::builder()
        .enable(true)
        .rollback(true)
        .build();
    // Passing deploymentConfiguration replaces it whole, so carry the live percentages over.
    let configuration = DeploymentConfiguration::builder()
        .deployment_circuit_breaker(breaker)
        .set_maximum_percent(live_config.and_then(|c| c.maximum_percent()))
        .set_minimum_healthy_percent(live_config.and_then(|c| c.minimum_healthy_percent()))
        .set_alarms(live_config.and_then(|c| c.alarms()).cloned())
        .build();
    let out = retry_throttled(&ctx.tuning, "ecs:UpdateService", progress, || {
        ctx.clients
            .ecs
            .update_service()
            .cluster(ctx.cluster())
            .service(&ecs_name)
            .task_definition(task_definition)
            .desired_count(desired)
            .deployment_configuration(configuration.clone())
            .send()
    })
    .await
    .map_err(|e| aws_error(&format!("ecs:UpdateService {ecs_name}"), e))?;
    let deployment_id = out.service().and_then(|s| {
        s.deployments()
            .iter()
            .find(|d| d.status() == Some("PRIMARY") && d.task_definition() == Some(task_definition))
            .and_then(|d| d.id())
            .map(str::to_owned)
    });
    progress.info(format!(
        "{service}: rolling out {}{}",
        short_revision(task_definition),
        deployment_id
            .as_deref()
            .map(|id| format!(" (deployment {id})"))
            .unwrap_or_default()
    ));
    Ok(Tracked {
        service: service.to_owned(),
        ecs_name,
        task_definition: task_definition.to_owned(),
        deployment_id,
    })
}

/// "release 3 (kaapi-web:6)" when we know the revision's release, else "kaapi-web:6".
async fn describe_revision(ctx: &Ctx, arn: &str, progress: &dyn Progress) -> String {
    let release = match ctx.describe_task_definition(arn, progress).await {
        Ok(Some(d)) => d.tag(tags::RELEASE).map(str::to_owned),
        _ => None,
    };
    match release {
        Some(n) => format!("release {n} ({})", short_revision(arn)),
        None => short_revision(arn).to_owned(),
    }
}

/// Rolls the services of `release` (only those in `only`, when given: `deploy --service`) and
/// waits for all of them.
pub async fn roll_out(
    ctx: &Ctx,
    release: &Release,
    only: Option<&[String]>,
    progress: &dyn Progress,
) -> EngineResult<RolloutOutcome> {
    let started = Instant::now();
    let since_wall = chrono::Utc::now();
    let since = since_wall - chrono::Duration::seconds(5);
    let rolled: Vec<_> = release
        .revisions
        .iter()
        .filter(|r| only.is_none_or(|only| only.contains(&r.service)))
        .collect();
    let mut ecs_names = Vec::new();
    for revision in &rolled {
        ecs_names.push(ctx.target.ecs_service_name(&revision.service)?.to_owned());
    }
    // Each update reads its service's live deployment configuration: one call for all.
    ctx.prefetch_services(&ecs_names, progress).await?;
    let desired = crate::scale::desired_counts(ctx, progress).await;
    let mut pending = Vec::new();
    for revision in rolled {
        let count = desired
            .get(&revision.service)
            .copied()
            .unwrap_or_else(|| ctx.target.resolved().replicas(&revision.service) as i32);
        pending.push(
            update_service(ctx, &revision.service, &revision.revision, count, progress).await?,
        );
    }
    let mut seen_events: HashSet<String> = HashSet::new();
    let mut last_state: HashMap<String, String> = HashMap::new();
    let pace = &ctx.tuning.pace;
    // Every service starts by starting its tasks; whether it drains comes from the answers the
    // updates read (cached, no call).
    let mut starting = Vec::new();
    for tracked in &pending {
        if let Some(service) = ctx.live_service(&tracked.service).await? {
            starting.push(Observed {
                phase: Phase::Starting,
                in_phase: std::time::Duration::ZERO,
                draining_for: None,
                drain: drain_of(ctx, &service),
            });
        }
    }
    let mut delay = pace.next_poll(&starting);
    let mut phases: HashMap<String, (Phase, Instant)> = HashMap::new();
    let mut last_poll = started;
    while !pending.is_empty() {
        let elapsed = started.elapsed();
        if elapsed >= ctx.tuning.rollout_timeout {
            let names: Vec<&str> = pending.iter().map(|t| t.service.as_str()).collect();
            return Ok(RolloutOutcome::Failed {
                reason: format!(
                    "{} did not finish rolling out within {} (rollout_timeout)",
                    names.join(", "),
                    humantime::format_duration(ctx.tuning.rollout_timeout)
                ),
                engine_rolled_back_to: None,
            });
        }
        tokio::time::sleep(delay.min(ctx.tuning.rollout_timeout - elapsed)).await;
        let polled = Instant::now();
        let names: Vec<String> = pending.iter().map(|t| t.ecs_name.clone()).collect();
        let services = ctx.describe_services(&names, progress).await?;
        let mut still = Vec::new();
        let mut observed = Vec::new();
        for tracked in pending {
            let Some(service) = services
                .iter()
                .find(|s| s.service_name() == Some(tracked.ecs_name.as_str()))
            else {
                return Err(EngineError::failed(format!(
                    "ECS service `{}` disappeared during the rollout",
                    tracked.ecs_name
                )));
            };
            print_new_events(service, &tracked.service, since, &mut seen_events, progress);
            match judge(service, &tracked) {
                Verdict::Completed => {
                    progress.info(format!(
                        "{}: {} is rolled out",
                        tracked.service,
                        short_revision(&tracked.task_definition)
                    ));
                }
                Verdict::Failed {
                    reason,
                    rolled_back_to,
                } => {
                    let to = match rolled_back_to {
                        Some(arn) => Some(describe_revision(ctx, &arn, progress).await),
                        None => None,
                    };
                    let reason = match stopped_task_reason(ctx, &tracked).await {
                        Some(stopped) => format!("{reason}; a stopped task says: {stopped}"),
                        None => reason,
                    };
                    return Ok(RolloutOutcome::Failed {
                        reason: format!("{}: {}", tracked.service, with_hint(&reason)),
                        engine_rolled_back_to: to,
                    });
                }
                Verdict::Pending(state) => {
                    if last_state.get(&tracked.service) != Some(&state) {
                        progress.info(state.clone());
                        last_state.insert(tracked.service.clone(), state);
                    }
                    if let Some(ours) = our_deployment(service, &tracked) {
                        let phase = pacing::phase(service, ours);
                        let since = match phases.get(&tracked.service) {
                            Some((seen, since)) if *seen == phase => *since,
                            _ => last_poll,
                        };
                        phases.insert(tracked.service.clone(), (phase, since));
                        observed.push(Observed {
                            phase,
                            in_phase: polled - since,
                            draining_for: draining_for(service, since_wall, started),
                            drain: drain_of(ctx, service),
                        });
                    }
                    still.push(tracked);
                }
            }
        }
        pending = still;
        last_poll = polled;
        delay = pace.next_poll(&observed);
    }
    Ok(RolloutOutcome::Completed)
}

/// How long old targets of `service` drain: the deregistration delay behind a load balancer.
fn drain_of(ctx: &Ctx, service: &Service) -> std::time::Duration {
    if service.load_balancers().is_empty() {
        std::time::Duration::ZERO
    } else {
        ctx.tuning.deregistration_delay
    }
}

/// How long ago ECS said it began draining old targets, if it did since the rollout began.
/// "Now" is the rollout's start plus the time elapsed since, on the same clock as the waits.
fn draining_for(
    service: &Service,
    rollout_began: chrono::DateTime<chrono::Utc>,
    started: Instant,
) -> Option<std::time::Duration> {
    let now = rollout_began + chrono::Duration::from_std(started.elapsed()).ok()?;
    service
        .events()
        .iter()
        .filter(|e| e.message().is_some_and(pacing::is_drain_event))
        .filter_map(|e| e.created_at())
        .filter_map(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
        .filter(|t| *t >= rollout_began)
        .max()
        .map(|t| (now - t).to_std().unwrap_or_default())
}

/// Why the last stopped task of our revision stopped (`stoppedReason` and its containers'
/// reasons): ECS's deployment reason only says that tasks failed. Best effort: the rollout has
/// failed either way, so a failed lookup leaves the reason as it was.
async fn stopped_task_reason(ctx: &Ctx, tracked: &Tracked) -> Option<String> {
    let tasks = ctx
        .service_tasks(&tracked.ecs_name, DesiredStatus::Stopped)
        .await
        .ok()?;
    tasks
        .iter()
        .filter(|t| t.task_definition_arn() == Some(tracked.task_definition.as_str()))
        .find_map(crate::diagnose::stopped_reason)
}

/// Prints service events newer than the rollout's start that we have not shown yet, oldest
/// first (ECS lists them newest first).
fn print_new_events(
    service: &Service,
    label: &str,
    since: chrono::DateTime<chrono::Utc>,
    seen: &mut HashSet<String>,
    progress: &dyn Progress,
) {
    let mut fresh: Vec<_> = service
        .events()
        .iter()
        .filter(|e| {
            e.created_at()
                .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
                .is_none_or(|t| t >= since)
        })
        .filter(|e| e.id().is_some_and(|id| !seen.contains(id)))
        .collect();
    fresh.reverse();
    for event in fresh {
        if let Some(id) = event.id() {
            seen.insert(id.to_owned());
        }
        progress.output(label, event.message().unwrap_or_default());
    }
}
