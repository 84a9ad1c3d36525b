//! ECS rollout wait, on scripted SDK responses (aws-smithy-mocks) and a virtual clock: ECS
//! reports the rollout `COMPLETED` at a set time T after `UpdateService`. We run the real ECS
//! engine's `roll_out` against that timeline, and simulate on the same scripted responses the
//! strategy users script today (`aws ecs update-service` then `aws ecs wait services-stable`:
//! DescribeServices at once, then every 15 s, until every service has one deployment and
//! runningCount == desiredCount). For each: API calls made, and the delay between T and the
//! moment the strategy notices and returns.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use aws_sdk_ecs::operation::describe_services::DescribeServicesOutput;
use aws_sdk_ecs::operation::update_service::UpdateServiceOutput;
use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState, Service};
use aws_smithy_mocks::{mock, MockResponseInterceptor, Rule, RuleMode};
use kaapi_core::config::LoadedConfig;
use kaapi_core::config::ResolvedEnvironment;
use kaapi_core::engine::{Engine, RolloutOutcome};
use kaapi_core::progress::Silent;
use kaapi_core::release::{ImageRef, Outcome, Release, ReleaseMeta, ServiceRevision};
use kaapi_ecs::{AwsClients, EcsEngine, Target, Tuning};
use tokio::time::Instant;

/// The `services-stable` waiter's fixed delay between polls.
pub const WAITER_DELAY: Duration = Duration::from_secs(15);
const WAITER_MAX_ATTEMPTS: u32 = 40;
const ENVIRONMENT: &str = "staging";

const CONFIG: &str = r#"app = "kaapi"

[image]
context = "backend"

[services.backend]
port = 8000
replicas = 2
health = { path = "/api/v1/utils/health/" }

[services.worker]
command = "celery worker"
replicas = 1

[environments.staging]
engine = "ecs"
region = "us-east-1"
"#;

/// One strategy on one timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wait {
    /// Seconds between ECS reporting COMPLETED and the strategy returning.
    pub delay: f64,
    /// Every ECS API call, UpdateService included.
    pub calls: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub completed_after: Duration,
    pub ours: Wait,
    pub waiter: Wait,
}

/// What the scripted ECS knows: when the rollout completes, and which revision each service
/// was updated to.
struct Timeline {
    started: Instant,
    complete_at: Duration,
    desired: HashMap<String, i32>,
    updated: Mutex<HashMap<String, String>>,
}

impl Timeline {
    fn completed(&self) -> bool {
        self.started.elapsed() >= self.complete_at
    }

    fn service(&self, name: &str) -> Service {
        let desired = self.desired.get(name).copied().unwrap_or(1);
        let old = Deployment::builder()
            .id("ecs-svc/old")
            .status("PRIMARY")
            .task_definition(format!("{}:1", arn_prefix(name)))
            .rollout_state(DeploymentRolloutState::Completed)
            .desired_count(desired)
            .running_count(desired)
            .build();
        let updated = self.updated.lock().ok().and_then(|u| u.get(name).cloned());
        let deployments = match updated {
            None => vec![old],
            Some(task_definition) => {
                let done = self.completed();
                let new = Deployment::builder()
                    .id("ecs-svc/new")
                    .status("PRIMARY")
                    .task_definition(task_definition)
                    .rollout_state(if done {
                        DeploymentRolloutState::Completed
                    } else {
                        DeploymentRolloutState::InProgress
                    })
                    .desired_count(desired)
                    .running_count(if done { desired } else { desired / 2 })
                    .pending_count(if done { 0 } else { desired - desired / 2 })
                    .build();
                if done {
                    vec![new]
                } else {
                    let draining = old.to_builder().status("ACTIVE").build();
                    vec![new, draining]
                }
            }
        };
        let running = deployments.iter().map(Deployment::running_count).sum();
        Service::builder()
            .service_name(name)
            .cluster_arn("arn:aws:ecs:us-east-1:123456789012:cluster/kaapi-staging-cluster")
            .status("ACTIVE")
            .desired_count(desired)
            .running_count(running)
            .set_deployments(Some(deployments))
            .build()
    }
}

fn arn_prefix(service: &str) -> String {
    format!("arn:aws:ecs:us-east-1:123456789012:task-definition/{service}")
}

trait DeploymentExt {
    fn to_builder(&self) -> aws_sdk_ecs::types::builders::DeploymentBuilder;
}

impl DeploymentExt for Deployment {
    fn to_builder(&self) -> aws_sdk_ecs::types::builders::DeploymentBuilder {
        Deployment::builder()
            .set_id(self.id().map(str::to_owned))
            .set_status(self.status().map(str::to_owned))
            .set_task_definition(self.task_definition().map(str::to_owned))
            .set_rollout_state(self.rollout_state().cloned())
            .desired_count(self.desired_count())
            .running_count(self.running_count())
            .pending_count(self.pending_count())
    }
}

/// The ECS rules of a timeline: DescribeServices and UpdateService answer from it.
fn rules(timeline: &Arc<Timeline>) -> (Rule, Rule) {
    let t = Arc::clone(timeline);
    let describe = mock!(aws_sdk_ecs::Client::describe_services).then_compute_output(move |req| {
        DescribeServicesOutput::builder()
            .set_services(Some(req.services().iter().map(|n| t.service(n)).collect()))
            .build()
    });
    let t = Arc::clone(timeline);
    let update = mock!(aws_sdk_ecs::Client::update_service).then_compute_output(move |req| {
        let name = req.service().unwrap_or_default().to_owned();
        if let (Ok(mut updated), Some(td)) = (t.updated.lock(), req.task_definition()) {
            updated.insert(name.clone(), td.to_owned());
        }
        UpdateServiceOutput::builder()
            .service(t.service(&name))
            .build()
    });
    (describe, update)
}

macro_rules! mock_sdk_client {
    ($krate:ident, $interceptor:expr) => {{
        let conf = $krate::Config::builder()
            .behavior_version($krate::config::BehaviorVersion::latest())
            .region($krate::config::Region::new("us-east-1"))
            .credentials_provider($krate::config::Credentials::new(
                "AKIDBENCHMARK",
                "benchmark-only",
                None,
                None,
                "xtask",
            ))
            .http_client(aws_smithy_mocks::create_mock_http_client())
            .interceptor($interceptor)
            .build();
        $krate::Client::from_conf(conf)
    }};
}

fn clients(describe: &Rule, update: &Rule) -> AwsClients {
    let ecs = MockResponseInterceptor::new()
        .rule_mode(RuleMode::MatchAny)
        .with_rule(describe)
        .with_rule(update);
    // The other services are never called during a rollout; any call would fail loudly.
    let none = || MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
    AwsClients {
        region: "us-east-1".to_owned(),
        ecs: mock_sdk_client!(aws_sdk_ecs, ecs),
        ecr: mock_sdk_client!(aws_sdk_ecr, none()),
        logs: mock_sdk_client!(aws_sdk_cloudwatchlogs, none()),
        cloudwatch: mock_sdk_client!(aws_sdk_cloudwatch, none()),
        dynamodb: mock_sdk_client!(aws_sdk_dynamodb, none()),
        sts: mock_sdk_client!(aws_sdk_sts, none()),
    }
}

fn loaded_config() -> Result<LoadedConfig> {
    let path = PathBuf::from("bench/deploy.toml");
    let (config, warnings) = kaapi_core::config::parse(&path, CONFIG)?;
    Ok(LoadedConfig {
        dir: Path::new("bench").to_path_buf(),
        path,
        config,
        warnings,
    })
}

fn release(target: &Target) -> Result<Release> {
    let revisions = target
        .services()
        .map(|service| {
            let family = target.family(service)?;
            Ok(ServiceRevision {
                service: service.to_owned(),
                revision: format!("{}:2", arn_prefix(family)),
            })
        })
        .collect::<Result<Vec<_>, kaapi_core::engine::EngineError>>()?;
    Ok(Release {
        number: 2,
        environment: ENVIRONMENT.to_owned(),
        image: ImageRef {
            reference: "123456789012.dkr.ecr.us-east-1.amazonaws.com/kaapi-staging-repo@sha256:00"
                .to_owned(),
            digest: "sha256:00".to_owned(),
            tags: vec!["bench".to_owned()],
        },
        meta: ReleaseMeta {
            commit: "bench".to_owned(),
            version: None,
            author: "xtask".to_owned(),
            created_at: chrono::Utc::now(),
        },
        revisions,
        outcome: Outcome::InProgress,
        detail: None,
        rollback_of: None,
        schema_version: None,
    })
}

fn timeline(target: &Target, complete_at: Duration) -> Result<Arc<Timeline>> {
    let mut desired = HashMap::new();
    for service in target.services() {
        let replicas = target.resolved().replicas(service) as i32;
        desired.insert(target.ecs_service_name(service)?.to_owned(), replicas);
    }
    Ok(Arc::new(Timeline {
        started: Instant::now(),
        complete_at,
        desired,
        updated: Mutex::new(HashMap::new()),
    }))
}

/// Our engine's rollout wait on a timeline that completes at `complete_at`.
async fn ours(target: &Target, complete_at: Duration) -> Result<Wait> {
    let timeline = timeline(target, complete_at)?;
    let (describe, update) = rules(&timeline);
    let engine = EcsEngine::with_clients(
        target.clone(),
        clients(&describe, &update),
        Tuning::default(),
        None,
    );
    let release = release(target)?;
    let outcome = engine.roll_out(&release, &Silent).await?;
    let ended = timeline.started.elapsed();
    if outcome != RolloutOutcome::Completed {
        bail!("the scripted rollout should complete, got {outcome:?}");
    }
    Ok(Wait {
        delay: ended.saturating_sub(complete_at).as_secs_f64(),
        calls: describe.num_calls() + update.num_calls(),
    })
}

/// `aws ecs update-service` per service, then `aws ecs wait services-stable` on all of them.
async fn waiter(target: &Target, complete_at: Duration) -> Result<Wait> {
    let timeline = timeline(target, complete_at)?;
    let (describe, update) = rules(&timeline);
    let ecs = clients(&describe, &update).ecs;
    let release = release(target)?;
    let mut names = Vec::new();
    for revision in &release.revisions {
        let name = target.ecs_service_name(&revision.service)?.to_owned();
        ecs.update_service()
            .cluster("kaapi-staging-cluster")
            .service(&name)
            .task_definition(&revision.revision)
            .send()
            .await
            .context("scripted UpdateService")?;
        names.push(name);
    }
    for _ in 0..WAITER_MAX_ATTEMPTS {
        let out = ecs
            .describe_services()
            .cluster("kaapi-staging-cluster")
            .set_services(Some(names.clone()))
            .send()
            .await
            .context("scripted DescribeServices")?;
        // botocore's services-stable acceptor: every service has exactly one deployment and
        // runs as many tasks as it wants.
        let stable = out
            .services()
            .iter()
            .all(|s| s.deployments().len() == 1 && s.running_count() == s.desired_count());
        if stable {
            let ended = timeline.started.elapsed();
            return Ok(Wait {
                delay: ended.saturating_sub(complete_at).as_secs_f64(),
                calls: describe.num_calls() + update.num_calls(),
            });
        }
        tokio::time::sleep(WAITER_DELAY).await;
    }
    bail!("services-stable gave up after {WAITER_MAX_ATTEMPTS} attempts")
}

/// Both strategies on `timelines` completion times, on a paused (virtual) clock so minutes of
/// rollout take milliseconds. Runs on its own thread and runtime.
pub fn compare(timelines: Vec<Duration>) -> Result<Vec<Comparison>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()?;
        runtime.block_on(async move {
            let loaded = loaded_config()?;
            let target = Target::from(ResolvedEnvironment::resolve(loaded, ENVIRONMENT)?);
            let mut results = Vec::with_capacity(timelines.len());
            for complete_at in timelines {
                results.push(Comparison {
                    completed_after: complete_at,
                    ours: ours(&target, complete_at).await?,
                    waiter: waiter(&target, complete_at).await?,
                });
            }
            Ok(results)
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the ECS simulation thread panicked"))?
}

/// `count` completion times spread evenly over `from..to` seconds, with a seeded offset so
/// they do not line up with either strategy's polls.
pub fn completion_times(count: usize, from: f64, to: f64) -> Vec<Duration> {
    let step = (to - from) / count.max(1) as f64;
    (0..count)
        .map(|i| {
            // A fixed irrational fraction of a step: deterministic and not grid-aligned.
            let jitter = ((i as f64 + 1.0) * 0.618_033_988_75).fract() * step;
            Duration::from_secs_f64(from + step * i as f64 + jitter)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_waiter_notices_on_its_15s_grid_and_we_notice_sooner() {
        let times = vec![
            Duration::from_secs_f64(31.0),
            Duration::from_secs_f64(44.0),
            Duration::from_secs_f64(120.5),
        ];
        let results = compare(times).expect("simulation runs");
        // Waiter polls at 0, 15, 30, 45, …: completion at 31 s is seen at 45 s, 44 at 45.
        assert!((results[0].waiter.delay - 14.0).abs() < 0.01, "{results:?}");
        assert!((results[1].waiter.delay - 1.0).abs() < 0.01, "{results:?}");
        assert!((results[2].waiter.delay - 14.5).abs() < 0.01, "{results:?}");
        // 2 UpdateService + one DescribeServices per poll (0, 15, 30, 45).
        assert_eq!(results[0].waiter.calls, 2 + 4);
        for r in &results {
            // Our poll interval is capped at 10 s plus 20 % jitter.
            assert!(r.ours.delay <= 12.0, "{r:?}");
            assert!(r.ours.calls >= 3, "{r:?}");
        }
    }

    #[test]
    fn completion_times_cover_the_range_without_repeats() {
        let times = completion_times(50, 20.0, 180.0);
        assert_eq!(times.len(), 50);
        assert!(times
            .iter()
            .all(|t| (20.0..180.0).contains(&t.as_secs_f64())));
        assert!(times.windows(2).all(|w| w[0] < w[1]));
    }
}
