//! IAM as AWS enforces it, which neither moto nor the scripted responses do: every request the
//! ECS engine really sends during deploys (with migrations and a log group to create), a
//! rollback, `deploy --service`, `scale`, `migrate`, `run`, `status` and `logs` is recorded on the wire, mapped to what IAM
//! authorizes for it (action, resource ARNs from the request itself, condition keys, implied
//! TagResource and PassRole), checked against AWS's IAM definitions and evaluated against the
//! policy `infra policy` generates. A call without a mapping fails the test.

use std::sync::Arc;
use std::time::Duration;

use kaapi_core::config::ResolvedEnvironment;
use kaapi_core::engine::{Engine, ImageSource, LogQuery, TaskOn};
use kaapi_core::pipeline::{self, DeployPlan, MigratePlan, Migrations, RollbackPlan};
use kaapi_core::release::Outcome;
use kaapi_core::scaling::parse_requests;
use kaapi_core::schema::SchemaCommands;
use kaapi_ecs::pacing::Pace;
use kaapi_ecs::{EcsEngine, Target, Tuning};
use kaapi_infra::conformance::authorizations::ApiCall;
use kaapi_infra::conformance::refusals;
use kaapi_infra::iam_eval::{evaluate, Request};
use kaapi_infra::policy::{deploy_policy, deploy_policy_with, Scope};
use kaapi_testkit::aws_record::{Call, Recorder as Wire};

use crate::support::fake_aws::{FakeAws, ACCOUNT, DIGEST, REGION};
use crate::support::{lock_owner, release_meta, write_config, Recorder, ScriptedBuilder};

const SERVICES: [&str; 3] = [
    "kaapi-staging-service",
    "kaapi-staging-worker-service",
    "kaapi-staging-flower-service",
];

fn tuning() -> Tuning {
    Tuning {
        poll_initial: Duration::from_millis(5),
        poll_max: Duration::from_millis(20),
        pace: Pace::fixed(Duration::from_millis(20)),
        rollout_timeout: Duration::from_secs(3),
        task_timeout: Duration::from_secs(5),
        verify_attempts: 2,
        verify_interval: Duration::from_millis(10),
        follow_interval: Duration::from_millis(10),
        ..Tuning::default()
    }
}

fn migrations() -> Migrations {
    Migrations {
        service: "backend".to_owned(),
        command: vec!["alembic".into(), "upgrade".into(), "head".into()],
        schema: Some(schema()),
    }
}

/// Each deploy reads the schema version and tags its release with it; the rollback reads it.
fn schema() -> SchemaCommands {
    SchemaCommands {
        service: "backend".to_owned(),
        version: vec!["alembic".into(), "current".into()],
        downgrade: Some(vec![
            "alembic".into(),
            "downgrade".into(),
            "{version}".into(),
        ]),
    }
}

/// The roles the live task definitions carry, which derived revisions keep: what `check` names
/// and `infra policy --pass-role` adds.
fn live_roles(fake: &FakeAws) -> Vec<String> {
    let mut roles: Vec<String> = Vec::new();
    for service in SERVICES {
        let revision = fake.live_revision(service).expect("a live service");
        let (definition, _) = fake.definition(&revision).expect("its task definition");
        for role in [definition.execution_role_arn(), definition.task_role_arn()]
            .into_iter()
            .flatten()
        {
            if !roles.iter().any(|r| r == role) {
                roles.push(role.to_owned());
            }
        }
    }
    roles
}

/// Runs every command the engine serves, each request recorded; returns the calls.
async fn every_command(fake: &FakeAws, target: &ResolvedEnvironment) -> Vec<Call> {
    let wire = Wire::new();
    let builder = Arc::new(ScriptedBuilder::pushing_to(DIGEST, fake));
    let engine = EcsEngine::with_clients(
        Target::from(target.clone()),
        fake.recorded_clients(&wire),
        tuning(),
        Some(builder),
    );
    let progress = Recorder::default();
    // What `alembic current` prints in every task's log.
    fake.state().task_log = Some("ae1027a6acf (head)".to_owned());
    for commit in ["aaa1111", "bbb2222"] {
        let plan = DeployPlan {
            image: ImageSource::Build,
            meta: release_meta(commit),
            owner: lock_owner(),
            migrations: Some(migrations()),
            // Record every call a rollout makes, even where the scripted services already run it.
            force: true,
            services: Vec::new(),
        };
        let report = pipeline::deploy(&engine, &plan, &progress, std::future::pending())
            .await
            .expect("the deploy runs to an outcome");
        assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    }
    let rollback = RollbackPlan {
        to: Some(1),
        meta: release_meta("ccc3333"),
        owner: lock_owner(),
        schema: Some(schema()),
        force: false,
    };
    let report = pipeline::rollback(&engine, &rollback, &progress, std::future::pending())
        .await
        .expect("the rollback runs to an outcome");
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    // `deploy --service`: new revisions for the worker (and the history copy) only.
    let only_worker = DeployPlan {
        image: ImageSource::Build,
        meta: release_meta("eee5555"),
        owner: lock_owner(),
        migrations: Some(migrations()),
        force: true,
        services: vec!["worker".to_owned()],
    };
    let report = pipeline::deploy(&engine, &only_worker, &progress, std::future::pending())
        .await
        .expect("the deploy runs to an outcome");
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    let counts = vec!["worker=2".to_owned()];
    let requests = parse_requests(target, &counts).expect("valid request");
    let events = pipeline::scale(
        &engine,
        &requests,
        &lock_owner(),
        &progress,
        std::future::pending(),
    )
    .await
    .expect("scale");
    assert_eq!(
        engine.scaling_events().await.expect("events").len(),
        events.len()
    );
    let releases = engine.releases().await.expect("releases");
    assert!(
        releases
            .iter()
            .all(|r| r.schema_version.as_deref() == Some("ae1027a6acf")),
        "every release was tagged with its schema version: {releases:?}"
    );
    // The dashboard's read of what changed, with the newest release as if read in progress.
    let mut seen = releases.clone();
    if let Some(newest) = seen.first_mut() {
        newest.outcome = Outcome::InProgress;
    }
    let changes = engine.releases_since(&seen).await.expect("history changes");
    assert_eq!(changes.releases().len(), 1, "{changes:?}");
    let migrate = MigratePlan {
        meta: release_meta("ddd4444"),
        owner: lock_owner(),
        migrations: migrations(),
    };
    let exit = pipeline::migrate(&engine, &migrate, &progress, std::future::pending())
        .await
        .expect("migrate runs");
    assert_eq!(exit.exit_code, 0);
    let current = engine
        .current_release()
        .await
        .expect("releases")
        .expect("a release");
    let command = vec!["python".to_owned(), "-V".to_owned()];
    let exit = engine
        .run_task(TaskOn::Release(&current), "backend", &command, &progress)
        .await
        .expect("run");
    assert_eq!(exit.exit_code, 0);
    // `run --release N`: a one-off task of an older release's revision.
    let oldest = releases.last().expect("a first release");
    assert_ne!(oldest.number, current.number);
    let exit = engine
        .run_task(TaskOn::Release(oldest), "backend", &command, &progress)
        .await
        .expect("run on an older release");
    assert_eq!(exit.exit_code, 0);
    // A deploy interrupted once its rollouts started leaves its release unfinished: `status`
    // then reads the lock before settling it.
    let updates = fake.count("ecs:UpdateService");
    let watched = fake.clone();
    let ctrl_c = async move {
        while watched.count("ecs:UpdateService") < updates + SERVICES.len() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let interrupted = DeployPlan {
        image: ImageSource::Build,
        meta: release_meta("fff6666"),
        owner: lock_owner(),
        migrations: None,
        force: true,
        services: Vec::new(),
    };
    pipeline::deploy(&engine, &interrupted, &progress, ctrl_c)
        .await
        .expect_err("the deploy is interrupted");
    engine.status().await.expect("status");
    let query = LogQuery {
        service: Some("backend".to_owned()),
        since: Some(Duration::from_secs(600)),
        follow: false,
    };
    engine.logs(&query, &|_| {}).await.expect("logs");
    wire.calls()
}

/// The recorded calls as the conformance check reads them.
fn api_calls(calls: &[Call]) -> Vec<ApiCall<'_>> {
    calls
        .iter()
        .map(|c| ApiCall {
            service: &c.service,
            operation: &c.operation,
            params: &c.params,
        })
        .collect()
}

#[tokio::test]
async fn the_generated_policy_allows_every_request_the_engine_sends() {
    let fake = FakeAws::kaapi_staging();
    // One log group is missing: the deploy creates it.
    fake.state().log_groups.clear();
    let dir = tempfile::tempdir().expect("temp dir");
    let loaded = write_config(dir.path(), "");
    let target = ResolvedEnvironment::resolve(loaded, "staging").expect("staging");
    let live = live_roles(&fake);
    let calls = every_command(&fake, &target).await;

    // What was recorded covers what this test is about; none of it went unread.
    for expected in [
        "ecs:RegisterTaskDefinition",
        "ecs:RunTask",
        "ecs:UpdateService",
        "ecs:TagResource",
        // `scale`, `status` and every rollout read the scaling events with the services.
        "ecs:DescribeServices",
        "ecs:DescribeTasks",
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
        // `status` reads the lock before settling an unfinished release.
        "dynamodb:GetItem",
        "ecr:DescribeImages",
    ] {
        assert!(
            calls
                .iter()
                .any(|c| format!("{}:{}", c.service, c.operation) == expected),
            "no {expected} recorded: {calls:#?}"
        );
    }

    // The scaling events come with DescribeServices (`include: TAGS`), never one call apiece.
    assert!(
        calls.iter().all(|c| c.operation != "ListTagsForResource"),
        "{calls:#?}"
    );
    assert!(calls
        .iter()
        .filter(|c| c.operation == "DescribeServices")
        .all(|c| c.params["include"] == serde_json::json!(["TAGS"])));

    let scope = Scope::new(REGION, ACCOUNT);
    let policy = deploy_policy_with(&target, &scope, &live);
    let problems = refusals(&api_calls(&calls), &policy, &scope);
    assert!(
        problems.is_empty(),
        "{} recorded calls; on AWS:\n{}",
        calls.len(),
        problems.join("\n")
    );

    // A service takes the scaling event's tag only: a release's tags stay off it.
    let service = format!(
        "arn:aws:ecs:{REGION}:{ACCOUNT}:service/kaapi-staging-cluster/{}",
        SERVICES[1]
    );
    let tags = |keys: &[&str]| {
        evaluate(
            &policy,
            &Request::new("ecs:TagResource", &service).with("aws:TagKeys", keys),
        )
        .expect("evaluates")
        .is_allowed()
    };
    assert!(tags(&["kaapi:scaled"]));
    assert!(!tags(&["kaapi:scaled", "kaapi:outcome"]));
    // Nothing lists a service's tags on its own any more: the policy does not allow it.
    let lists_tags = evaluate(&policy, &Request::new("ecs:ListTagsForResource", &service))
        .expect("evaluates")
        .is_allowed();
    assert!(!lists_tags);
    // Nor a revision's: its release tags come with DescribeTaskDefinition (`include: TAGS`).
    let revision = fake.live_revision(SERVICES[0]).expect("a live revision");
    let lists_tags = evaluate(&policy, &Request::new("ecs:ListTagsForResource", &revision))
        .expect("evaluates")
        .is_allowed();
    assert!(!lists_tags, "{revision}");
    let registers = evaluate(
        &policy,
        &Request::new("ecs:RegisterTaskDefinition", &revision),
    )
    .expect("evaluates")
    .is_allowed();
    assert!(
        registers,
        "the same resource, an action the policy grants: {revision}"
    );

    // The evaluation is not vacuous: without the live roles, passing them is denied.
    let without = refusals(&api_calls(&calls), &deploy_policy(&target, &scope), &scope);
    assert!(
        !without.is_empty() && without.iter().all(|p| p.contains("iam:PassRole")),
        "{without:#?}"
    );
}
