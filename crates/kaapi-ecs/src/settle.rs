//! Settles the releases a deploy left unfinished from what ECS actually runs. A deploy that is
//! killed or interrupted leaves its release `in_progress` or `interrupted`, while ECS goes on
//! with the rollouts it started: every service completed on the release's revisions → it
//! succeeded; ECS rolled a service back (circuit breaker) → rolled back; ECS failed it → failed;
//! a release no service ever ran → interrupted. A rollout ECS is still running is left for a
//! later look. Call only when no live deploy holds the environment's lock.

use std::collections::HashMap;

use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState, Service};
use kaapi_core::engine::EngineResult;
use kaapi_core::progress::Progress;
use kaapi_core::release::{Outcome, Release};

use crate::history;
use crate::revisions::short_revision;
use crate::session::Ctx;

/// One release whose recorded outcome changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub number: u64,
    pub outcome: Outcome,
    pub detail: String,
}

/// What one service does with one release's revision.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Runs {
    /// Its rollout completed: the service runs the revision.
    Completed,
    /// ECS is still rolling it out.
    RollingOut,
    /// ECS failed the rollout and keeps no other revision primary.
    Failed(String),
    /// ECS rolled back (or another rollout replaced it) to this revision.
    RolledBack(String),
    /// The service never ran it: the deploy stopped before this service's rollout.
    Never,
}

fn unfinished(outcome: Outcome) -> bool {
    matches!(outcome, Outcome::InProgress | Outcome::Interrupted)
}

/// What `service` does with `revision` of `release`.
fn runs(service: &Service, revision: &str, release: &Release) -> Runs {
    let deployments = service.deployments();
    let primary = deployments.iter().find(|d| d.status() == Some("PRIMARY"));
    let ours = deployments
        .iter()
        .find(|d| d.task_definition() == Some(revision));
    let Some(primary) = primary else {
        return Runs::Never;
    };
    if primary.task_definition() == Some(revision) {
        return match primary.rollout_state() {
            Some(DeploymentRolloutState::Completed) => Runs::Completed,
            Some(DeploymentRolloutState::Failed) => Runs::Failed(
                primary
                    .rollout_state_reason()
                    .unwrap_or("ECS marked the deployment FAILED")
                    .to_owned(),
            ),
            Some(_) => Runs::RollingOut,
            // Not run by the ECS deployment controller: done once it is alone and at strength.
            None if deployments.len() == 1
                && primary.running_count() >= primary.desired_count() =>
            {
                Runs::Completed
            }
            None => Runs::RollingOut,
        };
    }
    let other = short_revision(primary.task_definition().unwrap_or_default()).to_owned();
    let failed_ours =
        ours.and_then(Deployment::rollout_state) == Some(&DeploymentRolloutState::Failed);
    if failed_ours || created_after(primary, release) {
        Runs::RolledBack(other)
    } else {
        Runs::Never
    }
}

/// Whether `deployment` began after `release` was made (it replaced the release's rollout).
fn created_after(deployment: &Deployment, release: &Release) -> bool {
    deployment
        .created_at()
        .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
        .is_some_and(|t| t > release.meta.created_at)
}

/// The outcome of an unfinished `release` from what the services run (by kaapi service name),
/// with why; `None` while ECS still rolls it out or when there is nothing new to say.
pub fn verdict(release: &Release, live: &HashMap<&str, &Service>) -> Option<(Outcome, String)> {
    let mut states = Vec::new();
    for revision in &release.revisions {
        // A service we cannot see tells nothing; let a later look settle it.
        let service = live.get(revision.service.as_str())?;
        states.push((
            revision.service.as_str(),
            runs(service, &revision.revision, release),
        ));
    }
    if states.iter().any(|(_, s)| *s == Runs::RollingOut) {
        return None;
    }
    let stopped = "its deploy stopped before the end";
    if states.iter().all(|(_, s)| *s == Runs::Completed) {
        return Some((
            Outcome::Succeeded,
            format!("{stopped}, but ECS finished rolling out every service on its revisions"),
        ));
    }
    let rolled_back: Vec<String> = states
        .iter()
        .filter_map(|(service, s)| match s {
            Runs::RolledBack(to) => Some(format!("{service} to {to}")),
            _ => None,
        })
        .collect();
    if !rolled_back.is_empty() {
        return Some((
            Outcome::RolledBack,
            format!("{stopped}; ECS rolled back {}", rolled_back.join(", ")),
        ));
    }
    if let Some((service, Runs::Failed(reason))) =
        states.iter().find(|(_, s)| matches!(s, Runs::Failed(_)))
    {
        return Some((
            Outcome::Failed,
            format!("{stopped}; ECS failed the rollout of {service}: {reason}"),
        ));
    }
    let never: Vec<&str> = states
        .iter()
        .filter(|(_, s)| *s == Runs::Never)
        .map(|(service, _)| *service)
        .collect();
    if never.len() == states.len() {
        return (release.outcome == Outcome::InProgress).then(|| {
            (
                Outcome::Interrupted,
                format!("{stopped} and ECS never ran it"),
            )
        });
    }
    Some((
        Outcome::Failed,
        format!(
            "{stopped} halfway: {} never ran it, the other services do",
            never.join(", ")
        ),
    ))
}

/// The head of the history: the unfinished releases newer than the newest finished one (newest
/// first), and that finished release.
#[derive(Debug, Default)]
pub struct Head {
    pub unfinished: Vec<Release>,
    pub finished: Option<Release>,
}

/// Reads the head of the history. The walk stops at the first finished release, so when the
/// newest release is finished this is one ListTaskDefinitions and one DescribeTaskDefinition,
/// and nothing is unfinished: nothing to settle.
pub async fn head(ctx: &Ctx, progress: &dyn Progress) -> EngineResult<Head> {
    let walked = history::walk(ctx, progress, |r| !unfinished(r.outcome)).await?;
    let (unfinished, finished): (Vec<Release>, Vec<Release>) =
        walked.into_iter().partition(|r| unfinished(r.outcome));
    Ok(Head {
        unfinished,
        finished: finished.into_iter().next(),
    })
}

/// Settles `candidates` (the unfinished releases of [`head`]) from what the services run, and records
/// each change on the history. Call only when no live deploy holds the lock.
pub async fn settle(
    ctx: &Ctx,
    candidates: &[Release],
    progress: &dyn Progress,
) -> EngineResult<Vec<Settled>> {
    let Some(newest) = candidates.first() else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for revision in &newest.revisions {
        names.push(ctx.target.ecs_service_name(&revision.service)?.to_owned());
    }
    let services = ctx.describe_services(&names, progress).await?;
    let mut live = HashMap::new();
    for (revision, name) in newest.revisions.iter().zip(&names) {
        if let Some(service) = services
            .iter()
            .find(|s| s.service_name() == Some(name.as_str()))
        {
            live.insert(revision.service.as_str(), service);
        }
    }
    let mut settled = Vec::new();
    if let Some((outcome, detail)) = verdict(newest, &live) {
        settled.push((newest, outcome, detail));
    }
    // Older unfinished releases were replaced by the newest one before they finished.
    for older in candidates.iter().skip(1) {
        if older.outcome == Outcome::InProgress {
            let detail = format!(
                "its deploy stopped before the end and release {} was deployed after it",
                newest.number
            );
            settled.push((older, Outcome::Interrupted, detail));
        }
    }
    let mut changed = Vec::new();
    for (release, outcome, detail) in settled {
        history::record(ctx, release, outcome, Some(&detail), progress).await?;
        changed.push(Settled {
            number: release.number,
            outcome,
            detail,
        });
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::primitives::DateTime;
    use chrono::Utc;
    use kaapi_core::release::{ImageRef, ReleaseMeta, ServiceRevision};

    const WEB_NEW: &str = "arn:aws:ecs:eu-west-1:1:task-definition/web:7";
    const WEB_OLD: &str = "arn:aws:ecs:eu-west-1:1:task-definition/web:6";
    const WORKER_NEW: &str = "arn:aws:ecs:eu-west-1:1:task-definition/worker:7";

    fn release(outcome: Outcome) -> Release {
        Release {
            number: 7,
            environment: "staging".to_owned(),
            image: ImageRef {
                reference: "repo@sha256:1".to_owned(),
                digest: "sha256:1".to_owned(),
                tags: Vec::new(),
            },
            meta: ReleaseMeta {
                commit: "c7".to_owned(),
                version: None,
                author: "alice".to_owned(),
                created_at: Utc::now() - chrono::Duration::minutes(10),
            },
            revisions: vec![
                ServiceRevision {
                    service: "web".to_owned(),
                    revision: WEB_NEW.to_owned(),
                },
                ServiceRevision {
                    service: "worker".to_owned(),
                    revision: WORKER_NEW.to_owned(),
                },
            ],
            outcome,
            detail: None,
            rollback_of: None,
            schema_version: None,
        }
    }

    fn deployment(
        status: &str,
        td: &str,
        state: DeploymentRolloutState,
        minutes_ago: i64,
    ) -> Deployment {
        let at = Utc::now() - chrono::Duration::minutes(minutes_ago);
        Deployment::builder()
            .status(status)
            .task_definition(td)
            .rollout_state(state)
            .desired_count(1)
            .running_count(1)
            .created_at(DateTime::from_secs(at.timestamp()))
            .build()
    }

    fn service(deployments: Vec<Deployment>) -> Service {
        Service::builder()
            .set_deployments(Some(deployments))
            .build()
    }

    fn judge(outcome: Outcome, web: &Service, worker: &Service) -> Option<(Outcome, String)> {
        let live = HashMap::from([("web", web), ("worker", worker)]);
        verdict(&release(outcome), &live)
    }

    use DeploymentRolloutState::{Completed, Failed, InProgress};

    #[test]
    fn every_service_completed_on_its_revision_means_succeeded() {
        let web = service(vec![deployment("PRIMARY", WEB_NEW, Completed, 9)]);
        let worker = service(vec![deployment("PRIMARY", WORKER_NEW, Completed, 9)]);
        let (outcome, detail) = judge(Outcome::Interrupted, &web, &worker).expect("settled");
        assert_eq!(outcome, Outcome::Succeeded);
        assert!(detail.contains("ECS finished"), "{detail}");
    }

    #[test]
    fn a_rollout_still_running_is_left_alone() {
        let web = service(vec![
            deployment("PRIMARY", WEB_NEW, InProgress, 9),
            deployment("ACTIVE", WEB_OLD, Completed, 60),
        ]);
        let worker = service(vec![deployment("PRIMARY", WORKER_NEW, Completed, 9)]);
        assert_eq!(judge(Outcome::InProgress, &web, &worker), None);
    }

    #[test]
    fn a_circuit_breaker_rollback_means_rolled_back() {
        // The failed deployment still listed.
        let web = service(vec![
            deployment("PRIMARY", WEB_OLD, Completed, 5),
            deployment("ACTIVE", WEB_NEW, Failed, 9),
        ]);
        let worker = service(vec![deployment("PRIMARY", WORKER_NEW, Completed, 9)]);
        let (outcome, detail) = judge(Outcome::Interrupted, &web, &worker).expect("settled");
        assert_eq!(outcome, Outcome::RolledBack);
        assert!(detail.contains("web to web:6"), "{detail}");
        // Gone from the list: the rollback deployment began after the release.
        let web = service(vec![deployment("PRIMARY", WEB_OLD, Completed, 5)]);
        let (outcome, _) = judge(Outcome::Interrupted, &web, &worker).expect("settled");
        assert_eq!(outcome, Outcome::RolledBack);
    }

    #[test]
    fn a_release_never_rolled_out_is_interrupted_once() {
        let web = service(vec![deployment("PRIMARY", WEB_OLD, Completed, 60)]);
        let worker = service(vec![deployment(
            "PRIMARY",
            "arn:aws:ecs:eu-west-1:1:task-definition/worker:6",
            Completed,
            60,
        )]);
        let (outcome, _) = judge(Outcome::InProgress, &web, &worker).expect("settled");
        assert_eq!(outcome, Outcome::Interrupted);
        assert_eq!(judge(Outcome::Interrupted, &web, &worker), None);
    }

    #[test]
    fn a_release_half_rolled_out_failed() {
        let web = service(vec![deployment("PRIMARY", WEB_NEW, Completed, 9)]);
        let worker = service(vec![deployment(
            "PRIMARY",
            "arn:aws:ecs:eu-west-1:1:task-definition/worker:6",
            Completed,
            60,
        )]);
        let (outcome, detail) = judge(Outcome::Interrupted, &web, &worker).expect("settled");
        assert_eq!(outcome, Outcome::Failed);
        assert!(detail.contains("worker never ran it"), "{detail}");
        let failed = service(vec![deployment("PRIMARY", WORKER_NEW, Failed, 9)]);
        let (outcome, _) = judge(Outcome::Interrupted, &web, &failed).expect("settled");
        assert_eq!(outcome, Outcome::Failed);
    }
}
