//! Deploy scenarios through `kaapi_core::pipeline::deploy` with the ECS engine over scripted
//! AWS responses (aws-smithy-mocks): rollouts that complete, fail with a circuit-breaker
//! rollback, get stuck; migrations that fail or never start; throttling.

use std::sync::Arc;
use std::time::Duration;

use crate::support::fake_aws::{FakeAws, Plan, TaskScript, ACCOUNT, DIGEST, REGION};
use crate::support::{write_config, Recorder, ScriptedBuilder};
use chrono::Utc;
use kaapi_core::config::ResolvedEnvironment;
use kaapi_core::engine::{Engine, ImageSource, LockOwner};
use kaapi_core::pipeline::{self, DeployPlan, DeployReport, Migrations};
use kaapi_core::release::{Outcome, ReleaseMeta};
use kaapi_ecs::pacing::Pace;
use kaapi_ecs::{EcsEngine, Target, Tuning};

const BACKEND: &str = "kaapi-staging-service";
const WORKER: &str = "kaapi-staging-worker-service";
const FLOWER: &str = "kaapi-staging-flower-service";

pub(crate) fn fast_tuning() -> Tuning {
    Tuning {
        poll_initial: Duration::from_millis(5),
        poll_max: Duration::from_millis(20),
        pace: Pace::fixed(Duration::from_millis(20)),
        deregistration_delay: Duration::ZERO,
        rollout_timeout: Duration::from_secs(3),
        task_timeout: Duration::from_secs(5),
        throttle_attempts: 8,
        verify_attempts: 2,
        verify_interval: Duration::from_millis(10),
        lock_ttl: Duration::from_secs(600),
        lock_renew: Duration::from_secs(60),
        follow_interval: Duration::from_millis(10),
    }
}

pub(crate) struct Setup {
    pub(crate) fake: FakeAws,
    pub(crate) target: Target,
    pub(crate) engine: EcsEngine,
    pub(crate) builder: Arc<ScriptedBuilder>,
    _dir: tempfile::TempDir,
}

pub(crate) fn setup(tuning: Tuning, extra: &str) -> Setup {
    setup_with(FakeAws::kaapi_staging(), tuning, extra)
}

fn setup_with(fake: FakeAws, tuning: Tuning, extra: &str) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let loaded = write_config(dir.path(), extra);
    let builder = Arc::new(ScriptedBuilder::pushing_to(DIGEST, &fake));
    let target = Target::from(
        ResolvedEnvironment::resolve(loaded.clone(), "staging").expect("staging exists"),
    );
    let engine = EcsEngine::with_clients(
        target.clone(),
        fake.clients(),
        tuning,
        Some(builder.clone()),
    );
    Setup {
        fake,
        target,
        engine,
        builder,
        _dir: dir,
    }
}

pub(crate) fn plan(commit: &str) -> DeployPlan {
    DeployPlan {
        image: ImageSource::Build,
        meta: ReleaseMeta {
            commit: commit.to_owned(),
            version: None,
            author: "alice <alice@example.org>".to_owned(),
            created_at: Utc::now(),
        },
        owner: LockOwner {
            holder: "alice@laptop (pid 42)".to_owned(),
            url: None,
        },
        migrations: Some(Migrations {
            service: "backend".to_owned(),
            command: vec![
                "alembic".to_owned(),
                "upgrade".to_owned(),
                "head".to_owned(),
            ],
            schema: None,
        }),
        // These scenarios script every rollout; the comparison with what runs has its own tests.
        force: true,
        services: Vec::new(),
    }
}

pub(crate) async fn deploy(engine: &EcsEngine, commit: &str, progress: &Recorder) -> DeployReport {
    pipeline::deploy(engine, &plan(commit), progress, std::future::pending())
        .await
        .expect("the deploy runs to an outcome")
}

/// Release 1, which later scenarios fall back to.
async fn first_release(s: &Setup) -> Vec<String> {
    let report = deploy(&s.engine, "abc1234", &Recorder::default()).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    assert_eq!(report.release, Some(1));
    [BACKEND, WORKER, FLOWER]
        .iter()
        .map(|svc| s.fake.live_revision(svc).expect("service runs something"))
        .collect()
}

fn live(fake: &FakeAws) -> Vec<String> {
    [BACKEND, WORKER, FLOWER]
        .iter()
        .map(|svc| fake.live_revision(svc).expect("service runs something"))
        .collect()
}

#[tokio::test]
async fn rollout_completes_with_revisions_pinned_by_digest() {
    let s = setup(fast_tuning(), "");
    let progress = Recorder::default();
    let report = deploy(&s.engine, "abc1234", &progress).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    assert_eq!(report.release, Some(1));
    assert_eq!(report.serving, Some(1));
    assert_eq!(report.migration.as_ref().map(|m| m.exit_code), Some(0));

    let repo = format!("{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/kaapi-staging-repo");
    let pushes = s.builder.pushes.lock().expect("pushes").clone();
    assert_eq!(
        pushes,
        vec![(repo.clone(), vec!["abc1234".to_owned()], true)]
    );

    let backend = s.fake.live_revision(BACKEND).expect("backend revision");
    assert!(
        backend.ends_with("task-definition/kaapi-staging-backend:2"),
        "{backend}"
    );
    let (definition, _) = s.fake.definition(&backend).expect("registered");
    let container = &definition.container_definitions()[0];
    assert_eq!(container.image(), Some(format!("{repo}@{DIGEST}").as_str()));
    assert_eq!(
        container.command(),
        ["fastapi", "run", "app/main.py", "--port", "8000"]
    );
    let env: Vec<(&str, &str)> = container
        .environment()
        .iter()
        .map(|kv| {
            (
                kv.name().unwrap_or_default(),
                kv.value().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(env, [("PROJECT_NAME", "Kaapi"), ("ENVIRONMENT", "staging")]);
    let secrets: Vec<&str> = container.secrets().iter().map(|s| s.value_from()).collect();
    assert_eq!(
        secrets,
        [
            format!("arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/kaapi/staging/SECRET_KEY"),
            format!("arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/kaapi/staging/POSTGRES_PASSWORD"),
        ]
    );
    assert_eq!(definition.cpu(), Some("512"));
    assert_eq!(definition.memory(), Some("1024"));
    let logs = container.log_configuration().expect("awslogs");
    assert_eq!(logs.log_driver().as_str(), "awslogs");
    assert_eq!(
        logs.options()
            .and_then(|o| o.get("awslogs-group"))
            .map(String::as_str),
        Some("/ecs/kaapi-staging-cluster/kaapi-staging-service")
    );
    assert_eq!(s.fake.tag(&backend, "kaapi:release").as_deref(), Some("1"));
    assert_eq!(
        s.fake.tag(&backend, "kaapi:commit").as_deref(),
        Some("abc1234")
    );
    assert_eq!(
        s.fake.tag(&backend, "kaapi:outcome").as_deref(),
        Some("succeeded")
    );
    // Author sanitised to what ECS tag values allow.
    assert_eq!(
        s.fake.tag(&backend, "kaapi:deployer").as_deref(),
        Some("alice _alice@example.org_")
    );
    let worker = s.fake.live_revision(WORKER).expect("worker revision");
    assert_eq!(
        s.fake.tag(&backend, "kaapi:revision:worker").as_deref(),
        worker.rsplit('/').next()
    );
    assert!(!s.fake.lock_held(), "the lock is released");
    assert!(
        progress.contains("Running upgrade"),
        "{:?}",
        progress.lines()
    );

    // History reads back from the tags.
    let releases = s.engine.releases().await.expect("releases");
    assert_eq!(releases.len(), 1);
    assert_eq!(releases[0].outcome, Outcome::Succeeded);
    assert_eq!(releases[0].image.digest, DIGEST);
    assert_eq!(releases[0].revisions.len(), 3);

    let second = deploy(&s.engine, "def5678", &Recorder::default()).await;
    assert_eq!(second.outcome, Outcome::Succeeded, "{}", second.message);
    assert_eq!(second.release, Some(2));
    assert!(s
        .fake
        .live_revision(FLOWER)
        .is_some_and(|r| r.ends_with("kaapi-staging-flower:3")));
}

#[tokio::test]
async fn circuit_breaker_rollback_is_a_failure_that_names_what_ecs_restored() {
    let s = setup(fast_tuning(), "");
    let release_1 = first_release(&s).await;
    s.fake
        .plan(BACKEND, Plan::CircuitBreaker(Duration::from_millis(60)));
    let report = deploy(&s.engine, "bad0001", &Recorder::default()).await;
    assert!(!report.succeeded());
    assert_eq!(report.outcome, Outcome::RolledBack, "{}", report.message);
    assert!(
        report.message.contains("circuit breaker")
            && report
                .message
                .contains("ecs rolled back to release 1 (kaapi-staging-backend:2)"),
        "{}",
        report.message
    );
    assert_eq!(report.serving, Some(1));
    assert_eq!(live(&s.fake), release_1);
    let releases = s.engine.releases().await.expect("releases");
    assert_eq!(releases[0].number, 2);
    assert_eq!(releases[0].outcome, Outcome::RolledBack);
    assert!(releases[0]
        .detail
        .as_deref()
        .is_some_and(|d| d.contains("circuit breaker")));
}

#[tokio::test]
async fn stuck_rollout_times_out_and_we_roll_back() {
    let mut tuning = fast_tuning();
    tuning.rollout_timeout = Duration::from_millis(300);
    let s = setup(tuning, "");
    let release_1 = first_release(&s).await;
    s.fake.plan(WORKER, Plan::Stuck);
    let started = std::time::Instant::now();
    let report = deploy(&s.engine, "slow0001", &Recorder::default()).await;
    assert_eq!(report.outcome, Outcome::RolledBack, "{}", report.message);
    assert!(
        report
            .message
            .contains("worker did not finish rolling out within 300ms"),
        "{}",
        report.message
    );
    assert!(report
        .message
        .contains("rolled back automatically, release 1 serves"));
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(live(&s.fake), release_1);
}

#[tokio::test]
async fn failed_migration_changes_no_service() {
    let s = setup(fast_tuning(), "");
    let release_1 = first_release(&s).await;
    s.fake.clear_calls();
    s.fake.script_task(TaskScript::Exit(1));
    let progress = Recorder::default();
    let report = deploy(&s.engine, "mig0001", &progress).await;
    assert_eq!(
        report.outcome,
        Outcome::FailedMigration,
        "{}",
        report.message
    );
    assert_eq!(report.migration.as_ref().map(|m| m.exit_code), Some(1));
    assert!(report.message.contains("migrations exited with code 1"));
    assert_eq!(s.fake.count("ecs:UpdateService"), 0, "{:?}", s.fake.calls());
    assert_eq!(s.fake.count("ecs:RunTask"), 1);
    assert!(
        progress.contains("Running upgrade"),
        "task log lines are shown"
    );
    assert_eq!(live(&s.fake), release_1);
    assert!(
        !s.fake.lock_held(),
        "the lock is released after a failed deploy"
    );
}

#[tokio::test]
async fn task_that_fails_to_start_aborts_the_deploy() {
    let s = setup(fast_tuning(), "");
    first_release(&s).await;
    s.fake.clear_calls();
    s.fake.script_task(TaskScript::FailedToStart(
        "CannotPullContainerError: pull image manifest has been retried 5 time(s)",
    ));
    let report = deploy(&s.engine, "pull0001", &Recorder::default()).await;
    assert_eq!(
        report.outcome,
        Outcome::FailedMigration,
        "{}",
        report.message
    );
    assert!(
        report
            .message
            .contains("TaskFailedToStart: CannotPullContainerError"),
        "{}",
        report.message
    );
    assert_eq!(s.fake.count("ecs:UpdateService"), 0);
}

#[tokio::test]
async fn throttled_polls_are_retried_with_backoff() {
    let s = setup(fast_tuning(), "");
    first_release(&s).await;
    s.fake.state().throttle_describe_services = 3;
    let progress = Recorder::default();
    let report = deploy(&s.engine, "thr0001", &progress).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    let retries = progress
        .lines()
        .iter()
        .filter(|l| l.contains("AWS is throttling requests; retrying"))
        .count();
    assert_eq!(retries, 3, "{:?}", progress.lines());
}

#[tokio::test]
async fn worker_failure_rolls_every_service_back() {
    let s = setup(fast_tuning(), "");
    let release_1 = first_release(&s).await;
    s.fake
        .plan(BACKEND, Plan::Complete(Duration::from_millis(10)));
    s.fake
        .plan(WORKER, Plan::CircuitBreaker(Duration::from_millis(80)));
    let report = deploy(&s.engine, "wrk0001", &Recorder::default()).await;
    assert_eq!(report.outcome, Outcome::RolledBack, "{}", report.message);
    assert!(
        report.message.starts_with("rollout failed: worker:"),
        "{}",
        report.message
    );
    // The backend had completed its new revision; it is back on release 1 like the others.
    assert_eq!(live(&s.fake), release_1);
    let backend_updates = s
        .fake
        .calls()
        .iter()
        .filter(|c| *c == &format!("ecs:UpdateService {BACKEND}"))
        .count();
    assert_eq!(
        backend_updates, 3,
        "release 1, release 2, rollback to release 1"
    );
}

#[tokio::test]
async fn an_image_missing_from_the_repository_is_refused() {
    let s = setup(fast_tuning(), "");
    let mut bad = plan("abc1234");
    bad.image = ImageSource::Existing("nosuchtag".to_owned());
    let err = pipeline::deploy(
        &s.engine,
        &bad,
        &Recorder::default(),
        std::future::pending(),
    )
    .await
    .expect_err("refused");
    assert!(
        err.to_string()
            .contains("image `nosuchtag` is not in repository"),
        "{err}"
    );
    assert_eq!(s.fake.count("ecs:RegisterTaskDefinition"), 0);
    assert!(!s.fake.lock_held());

    s.fake
        .push_image(DIGEST, &["abc1234".to_owned()])
        .expect("an earlier push");
    let mut existing = plan("abc1234");
    existing.image = ImageSource::Existing("abc1234".to_owned());
    let report = pipeline::deploy(
        &s.engine,
        &existing,
        &Recorder::default(),
        std::future::pending(),
    )
    .await
    .expect("deploys");
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    assert_eq!(report.image.map(|i| i.digest), Some(DIGEST.to_owned()));
    assert!(
        s.builder.pushes.lock().expect("pushes").is_empty(),
        "no build or push"
    );
}

/// The figures of docs/ecs.md: API calls of one standard three-service deploy, and how soon
/// completion is noticed after ECS reports it, against a 15-second `services-stable` waiter.
/// Simulated clock (tokio's paused time), production polling settings.
#[tokio::test(start_paused = true)]
async fn call_count_and_completion_latency_of_a_standard_deploy() {
    let s = setup(Tuning::default(), "");
    first_release(&s).await;
    s.fake.clear_calls();
    let completions = [
        (BACKEND, Duration::from_secs(173)),
        (WORKER, Duration::from_secs(181)),
        (FLOWER, Duration::from_secs(187)),
    ];
    for (svc, after) in completions {
        s.fake.plan(svc, Plan::Complete(after));
    }
    // A fresh engine, like a new `kaapi-deploy deploy` process: nothing cached.
    let engine = EcsEngine::with_clients(
        s.target.clone(),
        s.fake.clients(),
        Tuning::default(),
        Some(s.builder.clone()),
    );
    let report = deploy(&engine, "std0001", &Recorder::default()).await;
    let finished = tokio::time::Instant::now();
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    let calls = s.fake.calls();
    let total = calls.len();
    let polls = s.fake.count("ecs:DescribeServices") - 1; // one is the register step's
                                                          // When ECS marked the last of our deployments COMPLETED (simulated clock); verification is
                                                          // skipped (no url) and recording takes no simulated time, so the rest is noticing.
    let last_completed = s
        .fake
        .state()
        .completed_at
        .values()
        .max()
        .copied()
        .expect("deployments completed");
    let noticed_after = finished.duration_since(last_completed).as_secs_f64();
    // A waiter polling every 15 s from the UpdateService calls notices at the first multiple of
    // 15 s at or after 187 s.
    let last = 187.0_f64;
    let waiter_noticed_after = (last / 15.0).ceil() * 15.0 - last;
    let waiter_polls = (last / 15.0).ceil() as usize;
    eprintln!(
        "standard deploy: {total} AWS calls ({polls} DescribeServices polls during the rollout); completion noticed {noticed_after:.1}s after ECS reported it (services-stable waiter: {waiter_noticed_after:.0}s, {waiter_polls} polls)\n{calls:#?}"
    );
    assert!((0.0..=10.0).contains(&noticed_after), "{noticed_after}");
    assert!(total <= 60, "{total} calls: {calls:#?}");
    assert_eq!(s.fake.count("ecs:UpdateService"), 3);
    assert_eq!(s.fake.count("ecs:RegisterTaskDefinition"), 3);
}

/// Kaapi's production shape: the backend and the Celery worker are two containers of one task
/// definition, next to a sidecar of another image.
fn backend_with_worker_and_sidecar() -> aws_sdk_ecs::types::TaskDefinition {
    use aws_sdk_ecs::types::{
        Compatibility, ContainerDefinition, KeyValuePair, LogConfiguration, LogDriver, NetworkMode,
        PortMapping, Secret, TaskDefinition,
    };
    let app = format!("{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/kaapi-staging-repo:latest");
    let logs = |prefix: &str| {
        LogConfiguration::builder()
            .log_driver(LogDriver::Awslogs)
            .options(
                "awslogs-group",
                "/ecs/kaapi-staging-cluster/kaapi-staging-service",
            )
            .options("awslogs-region", REGION)
            .options("awslogs-stream-prefix", prefix)
            .build()
            .expect("log configuration")
    };
    let secret = Secret::builder()
        .name("SECRET_KEY")
        .value_from(format!(
            "arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:kaapi/staging:SECRET_KEY::"
        ))
        .build()
        .expect("secret");
    TaskDefinition::builder()
        .family("kaapi-staging-backend")
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .execution_role_arn(format!("arn:aws:iam::{ACCOUNT}:role/kaapi-execution"))
        .task_role_arn(format!("arn:aws:iam::{ACCOUNT}:role/kaapi-task"))
        .cpu("1024")
        .memory("2048")
        .container_definitions(
            ContainerDefinition::builder()
                .name("backend")
                .image(&app)
                .essential(true)
                .cpu(512)
                .memory(1024)
                .port_mappings(PortMapping::builder().container_port(8000).build())
                .log_configuration(logs("ecs"))
                .build(),
        )
        .container_definitions(
            ContainerDefinition::builder()
                .name("celery_worker")
                .image(&app)
                .essential(true)
                .cpu(384)
                .memory(768)
                .command("celery")
                .command("-A")
                .command("app.celery.celery_app")
                .command("worker")
                .environment(
                    KeyValuePair::builder()
                        .name("C_FORCE_ROOT")
                        .value("1")
                        .build(),
                )
                .secrets(secret)
                .stop_timeout(120)
                .log_configuration(logs("worker"))
                .build(),
        )
        .container_definitions(
            ContainerDefinition::builder()
                .name("datadog-agent")
                .image("public.ecr.aws/datadog/agent:7")
                .essential(false)
                .cpu(128)
                .memory(256)
                .environment(
                    KeyValuePair::builder()
                        .name("DD_SITE")
                        .value("datadoghq.eu")
                        .build(),
                )
                .build(),
        )
        .build()
}

#[tokio::test]
async fn every_container_of_the_app_image_gets_the_digest_and_sidecars_stay() {
    let fake = FakeAws::new(DIGEST);
    let live = backend_with_worker_and_sidecar();
    fake.add_service_with(BACKEND, live.clone());
    fake.add_service(WORKER, "kaapi-staging-worker", "worker");
    fake.add_service(FLOWER, "kaapi-staging-flower", "flower");
    let s = setup_with(fake, fast_tuning(), "");
    let report = deploy(&s.engine, "abc1234", &Recorder::default()).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);

    let revision = s.fake.live_revision(BACKEND).expect("backend revision");
    assert!(revision.ends_with("kaapi-staging-backend:2"), "{revision}");
    let (registered, _) = s.fake.definition(&revision).expect("registered");
    let pinned = format!("{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/kaapi-staging-repo@{DIGEST}");
    let containers = registered.container_definitions();
    let names: Vec<&str> = containers.iter().filter_map(|c| c.name()).collect();
    assert_eq!(names, ["backend", "celery_worker", "datadog-agent"]);

    // The service's own container: new digest and the config's command.
    assert_eq!(containers[0].image(), Some(pinned.as_str()));
    assert_eq!(
        containers[0].command(),
        ["fastapi", "run", "app/main.py", "--port", "8000"]
    );
    // The config's cpu/memory are the task's; each container keeps its share.
    assert_eq!(registered.cpu(), Some("512"));
    assert_eq!(registered.memory(), Some("1024"));
    assert_eq!(containers[0].cpu(), 512);
    assert_eq!(containers[0].memory(), Some(1024));
    // The live stream prefix stays, so earlier streams and new ones line up.
    assert_eq!(
        containers[0]
            .log_configuration()
            .and_then(|l| l.options())
            .and_then(|o| o.get("awslogs-stream-prefix"))
            .map(String::as_str),
        Some("ecs")
    );

    // The second app container: only the image changed.
    let mut worker = live.container_definitions()[1].clone();
    worker.image = Some(pinned.clone());
    assert_eq!(containers[1], worker);
    // The sidecar of another image: untouched.
    assert_eq!(containers[2], live.container_definitions()[2]);
    // Task-level settings carried over.
    assert_eq!(registered.task_role_arn(), live.task_role_arn());
    assert_eq!(registered.execution_role_arn(), live.execution_role_arn());
    assert_eq!(registered.network_mode(), live.network_mode());

    // The migration ran the backend container alone: RunTask cannot leave a container out, so
    // it ran on a one-off revision without the worker (which would otherwise start beside the
    // migration on the old schema) and without the sidecar, never counted as a release.
    let run_task: Vec<String> = s
        .fake
        .calls()
        .into_iter()
        .filter_map(|c| c.strip_prefix("ecs:RunTask ").map(str::to_owned))
        .collect();
    assert_eq!(run_task.len(), 1, "{:?}", s.fake.calls());
    assert_ne!(run_task[0], revision, "not the release's own revision");
    let (one_off, tags) = s.fake.definition(&run_task[0]).expect("one-off revision");
    let names: Vec<&str> = one_off
        .container_definitions()
        .iter()
        .filter_map(|c| c.name())
        .collect();
    assert_eq!(names, ["backend"]);
    assert_eq!(one_off.container_definitions()[0], containers[0]);
    assert_eq!(one_off.cpu(), registered.cpu());
    assert!(
        !tags.iter().any(|t| t.key() == Some("kaapi:release")),
        "{tags:?}"
    );
}

/// An engine on `fake` over the test config with `from` replaced by `to` in deploy.toml.
fn engine_with_edit(fake: &FakeAws, from: &str, to: &str) -> (EcsEngine, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    write_config(dir.path(), "");
    let path = dir.path().join("deploy.toml");
    let text = std::fs::read_to_string(&path).expect("read deploy.toml");
    assert!(text.contains(from), "the test config has {from}");
    std::fs::write(&path, text.replace(from, to)).expect("write deploy.toml");
    let loaded = kaapi_core::config::load(&path).expect("valid config");
    let target =
        Target::from(ResolvedEnvironment::resolve(loaded, "staging").expect("staging exists"));
    let builder = Arc::new(ScriptedBuilder::pushing_to(DIGEST, fake));
    let engine = EcsEngine::with_clients(target, fake.clients(), fast_tuning(), Some(builder));
    (engine, dir)
}

/// An engine on `fake` whose deploy.toml sets `VAR = value` for every service.
fn engine_with_var(fake: &FakeAws, value: &str) -> (EcsEngine, tempfile::TempDir) {
    engine_with_edit(
        fake,
        "PROJECT_NAME = \"Kaapi\"",
        &format!("PROJECT_NAME = \"Kaapi\"\nVAR = \"{value}\""),
    )
}

fn var_of(fake: &FakeAws, arn: &str) -> Option<String> {
    let (definition, _) = fake.definition(arn).expect("registered");
    definition
        .container_definitions()
        .iter()
        .flat_map(|c| c.environment())
        .find(|kv| kv.name() == Some("VAR"))
        .and_then(|kv| kv.value().map(str::to_owned))
}

#[tokio::test]
async fn rollback_to_a_release_restores_its_variables_exactly() {
    let fake = FakeAws::kaapi_staging();
    let (with_a, _a) = engine_with_var(&fake, "a");
    let first = deploy(&with_a, "aaa1111", &Recorder::default()).await;
    assert_eq!(first.outcome, Outcome::Succeeded, "{}", first.message);
    let release_1 = live(&fake);
    let (with_b, _b) = engine_with_var(&fake, "b");
    let second = deploy(&with_b, "bbb2222", &Recorder::default()).await;
    assert_eq!(second.outcome, Outcome::Succeeded, "{}", second.message);
    let release_2 = live(&fake);
    assert_eq!(
        var_of(&fake, &fake.live_revision(BACKEND).expect("live")),
        Some("b".to_owned())
    );

    // Today's deploy.toml says VAR=b; release 1 ran with VAR=a, and that is what comes back.
    let progress = Recorder::default();
    let plan = pipeline::RollbackPlan {
        to: Some(1),
        meta: plan("rollbak").meta,
        owner: plan("rollbak").owner,
        schema: None,
        force: false,
    };
    let report = pipeline::rollback(&with_b, &plan, &progress, std::future::pending())
        .await
        .expect("the rollback runs to an outcome");
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    assert_eq!(report.release, Some(3));
    for ((ecs_name, one), two) in [BACKEND, WORKER, FLOWER]
        .iter()
        .zip(&release_1)
        .zip(&release_2)
    {
        let now = fake.live_revision(ecs_name).expect("live");
        assert!(
            &now != one && &now != two,
            "a new revision was registered for {ecs_name}"
        );
        assert_eq!(var_of(&fake, &now), Some("a".to_owned()), "{ecs_name}");
        assert_eq!(fake.tag(&now, "kaapi:release").as_deref(), Some("3"));
        assert_eq!(fake.tag(&now, "kaapi:rollback-of").as_deref(), Some("1"));
    }
    let copied = release_1[0].rsplit('/').next().expect("family:revision");
    assert!(
        progress.contains(&format!("an exact copy of {copied}")),
        "{:?}",
        progress.lines()
    );
}

const REBUILT: &str = "sha256:9999999999999999999999999999999999999999999999999999999999999999";

/// The rule the scripted ECR stands in for: an IMMUTABLE repository refuses to move a tag to
/// another digest (and accepts the same digest again).
#[tokio::test]
async fn the_scripted_ecr_refuses_to_move_an_immutable_tag() {
    let fake = FakeAws::kaapi_staging();
    let tags = vec!["ccc3333".to_owned()];
    fake.push_image(DIGEST, &tags).expect("a new tag");
    fake.push_image(DIGEST, &tags)
        .expect("the same digest again");
    let refused = fake.push_image(REBUILT, &tags).expect_err("a moved tag");
    assert!(
        refused
            .starts_with("ImageTagAlreadyExistsException: The image tag 'ccc3333' already exists"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_rerun_of_the_same_commit_deploys_the_digest_already_pushed() {
    let s = setup(fast_tuning(), "");
    let first = deploy(&s.engine, "ddd4444", &Recorder::default()).await;
    assert_eq!(first.outcome, Outcome::Succeeded, "{}", first.message);

    // A fresh runner's rebuild would give another digest, which ECR would refuse under the tag.
    s.builder.rebuild_as(REBUILT);
    let progress = Recorder::default();
    let rerun = deploy(&s.engine, "ddd4444", &progress).await;
    assert_eq!(rerun.outcome, Outcome::Succeeded, "{}", rerun.message);
    assert_eq!(rerun.release, Some(2));
    assert_eq!(rerun.image.map(|i| i.digest), Some(DIGEST.to_owned()));
    assert!(
        progress.contains(":ddd4444 already exists (an earlier run of this commit pushed it)"),
        "{:?}",
        progress.lines()
    );
    assert_eq!(*s.builder.builds.lock().expect("builds"), 1, "no rebuild");
    assert_eq!(
        s.builder.pushes.lock().expect("pushes").len(),
        1,
        "no second push"
    );
    let backend = s.fake.live_revision(BACKEND).expect("live");
    let (definition, _) = s.fake.definition(&backend).expect("registered");
    let image = definition.container_definitions()[0]
        .image()
        .unwrap_or_default()
        .to_owned();
    assert!(image.ends_with(&format!("@{DIGEST}")), "{image}");
}

#[tokio::test]
async fn a_deploy_creates_missing_log_groups_or_says_what_to_run() {
    let s = setup(fast_tuning(), "");
    s.fake
        .state()
        .log_groups
        .retain(|g| !g.ends_with("/kaapi-staging-worker-service"));
    let progress = Recorder::default();
    let report = deploy(&s.engine, "log0001", &progress).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    let worker_group = "/ecs/kaapi-staging-cluster/kaapi-staging-worker-service";
    assert!(
        progress.contains(&format!("created the missing log group {worker_group}")),
        "{:?}",
        progress.lines()
    );
    assert_eq!(
        s.fake.count("logs:CreateLogGroup"),
        1,
        "only the missing one"
    );

    let s = setup(fast_tuning(), "");
    s.fake.state().log_groups.clear();
    s.fake.state().deny_create_log_group = true;
    let refused = pipeline::deploy(
        &s.engine,
        &plan("log0002"),
        &Recorder::default(),
        std::future::pending(),
    )
    .await
    .expect_err("no log group, no way to create it")
    .to_string();
    assert!(
        refused.contains(
            "log group /ecs/kaapi-staging-cluster/kaapi-staging-service does not exist and this role may not create it"
        ) && refused.contains("aws logs create-log-group --log-group-name /ecs/kaapi-staging-cluster/kaapi-staging-service --region eu-west-1"),
        "{refused}"
    );
    assert_eq!(
        s.fake.count("ecs:RegisterTaskDefinition"),
        0,
        "nothing registered"
    );
    assert!(!s.fake.lock_held());
}

#[tokio::test]
async fn health_command_becomes_the_container_health_check() {
    let fake = FakeAws::kaapi_staging();
    let (engine, _dir) = engine_with_edit(
        &fake,
        "health = { path = \"/api/v1/utils/health/\" }",
        "health = { path = \"/api/v1/utils/health/\", command = \"/app/healthcheck --quick\", interval = \"15s\", retries = 4 }",
    );
    let report = deploy(&engine, "hc00001", &Recorder::default()).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    let backend = fake.live_revision(BACKEND).expect("live");
    let (definition, _) = fake.definition(&backend).expect("registered");
    let check = definition.container_definitions()[0]
        .health_check()
        .expect("a health check")
        .clone();
    assert_eq!(check.command(), ["CMD", "/app/healthcheck", "--quick"]);
    assert_eq!((check.interval(), check.retries()), (Some(15), Some(4)));
    // The worker has no [health]: no check is invented for it.
    let worker = fake.live_revision(WORKER).expect("live");
    let (definition, _) = fake.definition(&worker).expect("registered");
    assert!(definition.container_definitions()[0]
        .health_check()
        .is_none());
}

/// The reasons ECS really gives for tasks that stop during a rollout (a task's `stoppedReason`,
/// its container's `reason`), and the hint each one gets in the deploy's failure message.
const STOPPED_TASKS: &[(&str, Option<&str>, &str)] = &[
    (
        "CannotPullContainerError: pull image manifest has been retried 7 time(s): failed to resolve ref 123456789012.dkr.ecr.eu-west-1.amazonaws.com/kaapi-staging-repo@sha256:2c26b46b: not found",
        None,
        "ecr:GetDownloadUrlForLayer",
    ),
    (
        "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: unable to retrieve secrets from ssm: service call has been retried 1 time(s): AccessDeniedException: User: arn:aws:sts::123456789012:assumed-role/kaapi-staging-execution-role/0a1b2c is not authorized to perform: ssm:GetParameters on resource: arn:aws:ssm:eu-west-1:123456789012:parameter/kaapi/staging/SECRET_KEY",
        None,
        "ssm:GetParameters or secretsmanager:GetSecretValue",
    ),
    (
        "Essential container in task exited",
        Some("OutOfMemoryError: Container killed due to memory usage"),
        "raise the service's `memory`",
    ),
    (
        "Essential container in task exited",
        None,
        "kaapi-deploy logs ENV --service NAME",
    ),
    (
        "Task failed ELB health checks in (target-group arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/kaapi-staging-tg/0123456789abcdef)",
        None,
        "must answer health.path with 200",
    ),
];

#[tokio::test]
async fn stopped_task_reasons_reach_the_failure_message_with_a_hint() {
    for (stopped, container, hint) in STOPPED_TASKS {
        let s = setup(fast_tuning(), "");
        first_release(&s).await;
        s.fake.tasks_stop_with(BACKEND, stopped, *container);
        s.fake
            .plan(BACKEND, Plan::CircuitBreaker(Duration::from_millis(40)));
        let report = deploy(&s.engine, "bad0002", &Recorder::default()).await;
        assert_eq!(report.outcome, Outcome::RolledBack, "{}", report.message);
        let message = &report.message;
        assert!(message.contains("circuit breaker"), "{message}");
        assert!(
            message.contains(&format!("a stopped task says: {stopped}")),
            "{message}"
        );
        if let Some(container) = container {
            assert!(message.contains(container), "{message}");
        }
        assert!(
            message.contains("(hint: ") && message.contains(hint),
            "{message}"
        );
    }
}

#[tokio::test]
async fn a_migration_that_cannot_read_its_secrets_says_what_to_grant() {
    let s = setup(fast_tuning(), "");
    first_release(&s).await;
    s.fake.script_task(TaskScript::FailedToStart(
        "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: unable to retrieve secrets from ssm",
    ));
    let report = deploy(&s.engine, "sec0001", &Recorder::default()).await;
    assert_eq!(
        report.outcome,
        Outcome::FailedMigration,
        "{}",
        report.message
    );
    assert!(
        report
            .message
            .contains("TaskFailedToStart: ResourceInitializationError")
            && report
                .message
                .contains("the execution role needs ssm:GetParameters"),
        "{}",
        report.message
    );
}

#[tokio::test]
async fn each_stopped_task_is_diagnosed_with_its_cause_events_and_last_lines() {
    use kaapi_core::diagnosis::Cause;
    let causes = [
        Cause::ImagePull,
        Cause::Secrets,
        Cause::OutOfMemory,
        Cause::Exited,
        Cause::HealthCheck,
    ];
    for ((stopped, container, _), cause) in STOPPED_TASKS.iter().zip(causes) {
        let s = setup(fast_tuning(), "");
        first_release(&s).await;
        s.fake.tasks_stop_with(BACKEND, stopped, *container);
        s.fake
            .plan(BACKEND, Plan::CircuitBreaker(Duration::from_millis(40)));
        let report = deploy(&s.engine, "bad0002", &Recorder::default()).await;
        assert_eq!(report.outcome, Outcome::RolledBack, "{}", report.message);
        let diagnosis = report
            .diagnosis
            .iter()
            .find(|d| d.service == "backend")
            .unwrap_or_else(|| panic!("backend diagnosed for {stopped}: {:?}", report.diagnosis));
        assert_eq!(diagnosis.cause, cause, "{stopped}");
        assert_eq!(diagnosis.replica, "stopped-kaapi-staging-service");
        assert!(diagnosis.reason.contains(stopped), "{}", diagnosis.reason);
        if let Some(container) = container {
            assert!(diagnosis.reason.contains(container), "{}", diagnosis.reason);
        }
        assert!(diagnosis.hint.is_some(), "{stopped}");
        assert!(
            diagnosis
                .events
                .iter()
                .any(|e| e.contains("rolling back to deployment")),
            "the service's events: {:?}",
            diagnosis.events
        );
        assert!(
            diagnosis.logs.iter().any(|l| l.contains("Running upgrade")),
            "the task's last lines from CloudWatch: {:?}",
            diagnosis.logs
        );
        // Services that did not fail are not diagnosed.
        assert!(report.diagnosis.iter().all(|d| d.service == "backend"));
    }
}

#[tokio::test]
async fn a_failed_migration_task_is_diagnosed_with_its_log_lines() {
    let s = setup(fast_tuning(), "");
    first_release(&s).await;
    s.fake.script_task(TaskScript::Exit(1));
    let report = deploy(&s.engine, "mig0002", &Recorder::default()).await;
    assert_eq!(report.outcome, Outcome::FailedMigration);
    let diagnosis = report
        .diagnosis
        .first()
        .expect("the migration is diagnosed");
    assert_eq!(diagnosis.service, "backend");
    assert_eq!(diagnosis.exit_code, Some(1));
    assert!(diagnosis.logs.iter().any(|l| l.contains("Running upgrade")));
    assert_eq!(
        report.migration.as_ref().and_then(|m| m.diagnosis.as_ref()),
        Some(diagnosis)
    );
}

#[tokio::test]
async fn a_migration_that_cannot_read_its_secret_is_diagnosed_as_such() {
    let s = setup(fast_tuning(), "");
    first_release(&s).await;
    s.fake.script_task(TaskScript::FailedToStart(
        "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: unable to retrieve secret from asm: service call has been retried 1 time(s): failed to fetch secret arn:aws:secretsmanager:eu-west-1:123456789012:secret:kaapi-staging from secrets manager: ResourceNotFoundException: Secrets Manager can't find the specified secret.",
    ));
    let report = deploy(&s.engine, "sec0002", &Recorder::default()).await;
    assert_eq!(report.outcome, Outcome::FailedMigration);
    let diagnosis = report
        .diagnosis
        .first()
        .expect("the migration is diagnosed");
    assert_eq!(diagnosis.cause, kaapi_core::diagnosis::Cause::Secrets);
    assert!(
        diagnosis
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("does not exist")),
        "{:?}",
        diagnosis.hint
    );
}
