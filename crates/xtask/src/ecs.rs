//! ECS rollout wait, on scripted SDK responses (aws-smithy-mocks) and a virtual clock. Each
//! scripted service goes through what ECS does after `UpdateService`: the new tasks start
//! (pending), then run; behind a load balancer they pass the target group's health checks,
//! ECS says it "has begun draining connections" on the old tasks, which keep running for the
//! deregistration delay; without one the old tasks stop; a few seconds after the old tasks
//! stopped ECS reports the rollout `COMPLETED`. We run the real ECS engine's `roll_out` on
//! that timeline, and simulate on the same scripted responses the strategy users script today
//! (`aws ecs update-service` then `aws ecs wait services-stable`: DescribeServices at once,
//! then every 15 s, until every service has one deployment and runningCount == desiredCount).
//! For each: API calls made, and the delay between the last service's `COMPLETED` and the
//! moment the strategy notices and returns.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use aws_sdk_ecs::operation::describe_services::DescribeServicesOutput;
use aws_sdk_ecs::operation::update_service::UpdateServiceOutput;
use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState, LoadBalancer, Service, ServiceEvent};
use aws_smithy_mocks::{mock, MockResponseInterceptor, Rule, RuleMode};
use kaapi_core::config::LoadedConfig;
use kaapi_core::config::ResolvedEnvironment;
use kaapi_core::engine::{Engine, RolloutOutcome};
use kaapi_core::progress::Silent;
use kaapi_core::release::{ImageRef, Outcome, Release, ReleaseMeta, ServiceRevision};
use kaapi_ecs::{tuning_for, AwsClients, EcsEngine, Target};
use tokio::time::Instant;

/// The `services-stable` waiter's fixed delay between polls.
pub const WAITER_DELAY: Duration = Duration::from_secs(15);
const WAITER_MAX_ATTEMPTS: u32 = 40;
const ENVIRONMENT: &str = "staging";
/// The web service: behind a load balancer.
const WEB: &str = "kaapi-staging-service";

fn config(deregistration_delay: Duration) -> String {
    format!(
        r#"app = "kaapi"

[image]
context = "backend"

[services.backend]
port = 8000
replicas = 2
health = {{ path = "/api/v1/utils/health/" }}

[services.worker]
command = "celery worker"
replicas = 1

[environments.staging]
engine = "ecs"
region = "us-east-1"
deregistration_delay = "{}s"
"#,
        deregistration_delay.as_secs()
    )
}

/// One strategy on one timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wait {
    /// Seconds between ECS reporting the last service COMPLETED and the strategy returning.
    pub delay: f64,
    /// Every ECS API call, UpdateService included.
    pub calls: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub scenario: Scenario,
    pub completed_after: Duration,
    pub ours: Wait,
    pub waiter: Wait,
}

/// How one service's deployment unfolds, in seconds after its `UpdateService`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServiceTimeline {
    /// The new tasks run (before: pending).
    pub running_at: f64,
    /// Behind a load balancer: the new targets are healthy and the old ones begin draining.
    pub healthy_after: Option<f64>,
    /// The old tasks are stopped this long after they began draining (the deregistration
    /// delay) or, without a load balancer, after the new ones run (their shutdown).
    pub stop_after: f64,
    /// ECS reports COMPLETED this long after the old tasks stopped.
    pub complete_after: f64,
}

impl ServiceTimeline {
    fn drain_at(&self) -> Option<f64> {
        self.healthy_after.map(|h| self.running_at + h)
    }

    fn stopped_at(&self) -> f64 {
        self.drain_at().unwrap_or(self.running_at) + self.stop_after
    }

    fn completed_at(&self) -> f64 {
        self.stopped_at() + self.complete_after
    }
}

/// One rollout of the web service (behind a load balancer) and the worker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scenario {
    pub deregistration_delay: Duration,
    pub web: ServiceTimeline,
    pub worker: ServiceTimeline,
}

impl Scenario {
    /// When the last service completes.
    pub fn completed_at(&self) -> Duration {
        Duration::from_secs_f64(self.web.completed_at().max(self.worker.completed_at()))
    }
}

/// What the scripted ECS knows: each service's timeline, and which revision each service was
/// updated to.
struct Timeline {
    started: Instant,
    wall: chrono::DateTime<chrono::Utc>,
    scenario: Scenario,
    desired: HashMap<String, i32>,
    updated: Mutex<HashMap<String, String>>,
}

impl Timeline {
    fn service(&self, name: &str) -> Service {
        let desired = self.desired.get(name).copied().unwrap_or(1);
        let behind_lb = name == WEB;
        let plan = if behind_lb {
            self.scenario.web
        } else {
            self.scenario.worker
        };
        let old = Deployment::builder()
            .id("ecs-svc/old")
            .status("PRIMARY")
            .task_definition(format!("{}:1", arn_prefix(name)))
            .rollout_state(DeploymentRolloutState::Completed)
            .desired_count(desired)
            .running_count(desired)
            .build();
        let updated = self.updated.lock().ok().and_then(|u| u.get(name).cloned());
        let t = self.started.elapsed().as_secs_f64();
        let mut events = Vec::new();
        let deployments = match updated {
            None => vec![old],
            Some(task_definition) => {
                let done = t >= plan.completed_at();
                let running = t >= plan.running_at;
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
                    .running_count(if running { desired } else { 0 })
                    .pending_count(if running { 0 } else { desired })
                    .build();
                if let Some(drain_at) = plan.drain_at().filter(|at| t >= *at) {
                    events.push(self.event(
                        drain_at,
                        &format!(
                            "(service {name}) has begun draining connections on {desired} tasks."
                        ),
                    ));
                }
                if done {
                    vec![new]
                } else {
                    let old_running = if t >= plan.stopped_at() { 0 } else { desired };
                    let draining = old
                        .to_builder()
                        .status("ACTIVE")
                        .desired_count(0)
                        .running_count(old_running)
                        .build();
                    vec![new, draining]
                }
            }
        };
        let running = deployments.iter().map(Deployment::running_count).sum();
        let load_balancers = behind_lb.then(|| {
            vec![LoadBalancer::builder()
                .target_group_arn(
                    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/kaapi-web/0123456789abcdef",
                )
                .container_name("backend")
                .container_port(8000)
                .build()]
        });
        Service::builder()
            .service_name(name)
            .cluster_arn("arn:aws:ecs:us-east-1:123456789012:cluster/kaapi-staging-cluster")
            .status("ACTIVE")
            .desired_count(desired)
            .running_count(running)
            .set_load_balancers(load_balancers)
            .set_deployments(Some(deployments))
            .set_events(Some(events))
            .build()
    }

    /// A service event `at` seconds into the timeline, on the wall clock ECS stamps it with.
    fn event(&self, at: f64, message: &str) -> ServiceEvent {
        let when = self.wall + chrono::Duration::milliseconds((at * 1000.0) as i64);
        ServiceEvent::builder()
            .id(format!("event-{message}"))
            .created_at(aws_sdk_ecs::primitives::DateTime::from_millis(
                when.timestamp_millis(),
            ))
            .message(message)
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

fn loaded_config(deregistration_delay: Duration) -> Result<LoadedConfig> {
    let path = PathBuf::from("bench/deploy.toml");
    let (config, warnings) = kaapi_core::config::parse(&path, &config(deregistration_delay))?;
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

fn timeline(target: &Target, scenario: Scenario) -> Result<Arc<Timeline>> {
    let mut desired = HashMap::new();
    for service in target.services() {
        let replicas = target.resolved().replicas(service) as i32;
        desired.insert(target.ecs_service_name(service)?.to_owned(), replicas);
    }
    Ok(Arc::new(Timeline {
        started: Instant::now(),
        wall: chrono::Utc::now(),
        scenario,
        desired,
        updated: Mutex::new(HashMap::new()),
    }))
}

/// Our engine's rollout wait on a scenario's timeline.
async fn ours(target: &Target, scenario: Scenario) -> Result<Wait> {
    let timeline = timeline(target, scenario)?;
    let complete_at = scenario.completed_at();
    let (describe, update) = rules(&timeline);
    let engine = EcsEngine::with_clients(
        target.clone(),
        clients(&describe, &update),
        tuning_for(target),
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
async fn waiter(target: &Target, scenario: Scenario) -> Result<Wait> {
    let timeline = timeline(target, scenario)?;
    let complete_at = scenario.completed_at();
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

/// Both strategies on each scenario, on a paused (virtual) clock so minutes of rollout take
/// milliseconds. Runs on its own thread and runtime.
pub fn compare(scenarios: Vec<Scenario>) -> Result<Vec<Comparison>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()?;
        runtime.block_on(async move {
            let mut results = Vec::with_capacity(scenarios.len());
            for scenario in scenarios {
                let loaded = loaded_config(scenario.deregistration_delay)?;
                let target = Target::from(ResolvedEnvironment::resolve(loaded, ENVIRONMENT)?);
                results.push(Comparison {
                    scenario,
                    completed_after: scenario.completed_at(),
                    ours: ours(&target, scenario).await?,
                    waiter: waiter(&target, scenario).await?,
                });
            }
            Ok(results)
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the ECS simulation thread panicked"))?
}

/// Deregistration delays the scenarios cycle through: a short one teams set, a minute, and
/// AWS's default.
pub const DEREGISTRATION_DELAYS: [u64; 3] = [30, 60, 300];

/// `count` scenarios with deterministic, spread-out durations: tasks run 20–60 s after the
/// update, the web targets turn healthy 10–40 s later, old worker tasks take 1–15 s to stop,
/// and ECS reports COMPLETED 1–10 s after the old tasks stopped.
pub fn scenarios(count: usize) -> Vec<Scenario> {
    // Fractions of irrational steps: deterministic and not aligned with either strategy's polls.
    let fraction = |i: usize, step: f64| ((i as f64 + 1.0) * step).fract();
    (0..count)
        .map(|i| {
            let delay = DEREGISTRATION_DELAYS[i % DEREGISTRATION_DELAYS.len()];
            Scenario {
                deregistration_delay: Duration::from_secs(delay),
                web: ServiceTimeline {
                    running_at: 20.0 + 40.0 * fraction(i, 0.618_033_988_75),
                    healthy_after: Some(10.0 + 30.0 * fraction(i, 0.414_213_562_37)),
                    stop_after: delay as f64,
                    complete_after: 1.0 + 9.0 * fraction(i, 0.732_050_807_57),
                },
                worker: ServiceTimeline {
                    running_at: 20.0 + 40.0 * fraction(i, 0.236_067_977_5),
                    healthy_after: None,
                    stop_after: 1.0 + 14.0 * fraction(i, 0.645_751_311_06),
                    complete_after: 1.0 + 9.0 * fraction(i, 0.316_624_790_36),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(delay: u64) -> Scenario {
        Scenario {
            deregistration_delay: Duration::from_secs(delay),
            web: ServiceTimeline {
                running_at: 40.0,
                healthy_after: Some(20.0),
                stop_after: delay as f64,
                complete_after: 5.5,
            },
            worker: ServiceTimeline {
                running_at: 30.0,
                healthy_after: None,
                stop_after: 5.0,
                complete_after: 3.0,
            },
        }
    }

    #[test]
    fn the_waiter_notices_on_its_15s_grid_and_we_notice_sooner_with_fewer_calls() {
        let results = compare(vec![scenario(300), scenario(30)]).expect("simulation runs");
        // 40 s to run, 20 s to turn healthy, 300 s drain, 5.5 s to COMPLETED: 365.5 s.
        assert_eq!(results[0].completed_after, Duration::from_secs_f64(365.5));
        // Waiter polls at 0, 15, …, 375: 26 DescribeServices and 2 UpdateService.
        assert!((results[0].waiter.delay - 9.5).abs() < 0.01, "{results:?}");
        assert_eq!(results[0].waiter.calls, 2 + 26);
        for r in &results {
            assert!(r.ours.delay <= 5.0, "{r:?}");
        }
        // A long drain: a fraction of the waiter's calls.
        assert!(
            results[0].ours.calls * 2 <= results[0].waiter.calls,
            "{results:?}"
        );
        // A 96 s rollout gives the waiter only 8 polls: about as many (the jitter moves ours by
        // one), where a fixed pace noticing within 5 s would need 20.
        assert!(
            results[1].ours.calls <= results[1].waiter.calls + 1,
            "{results:?}"
        );
    }

    #[test]
    fn scenarios_spread_over_realistic_durations() {
        let all = scenarios(60);
        assert_eq!(all.len(), 60);
        for s in &all {
            assert!((20.0..60.0).contains(&s.web.running_at), "{s:?}");
            assert!((20.0..60.0).contains(&s.worker.running_at), "{s:?}");
            assert_eq!(s.web.stop_after, s.deregistration_delay.as_secs_f64());
            let done = s.completed_at().as_secs_f64();
            assert!((50.0..420.0).contains(&done), "{s:?}");
        }
        let mut ends: Vec<f64> = all.iter().map(|s| s.completed_at().as_secs_f64()).collect();
        ends.sort_by(f64::total_cmp);
        assert!(ends.windows(2).all(|w| w[0] < w[1]), "no two alike");
    }
}
