//! Migration-aware rollback over a scripted engine: each release records the schema version
//! its migrations left, and a rollback compares the database's version (read on the release
//! that serves) with the target's before anything changes. A rollback never runs the
//! migrations (upgrade) command.

use chrono::Utc;
use kaapi_core::engine::{Engine, ImageSource, LockOwner};
use kaapi_core::pipeline::{self, DeployPlan, DeployReport, Migrations, RollbackPlan};
use kaapi_core::progress::{Event, Progress};
use kaapi_core::release::{Outcome, ReleaseMeta};
use kaapi_core::schema::{DowngradeResult, SchemaCommands};
use kaapi_testkit::fake_engine::{FakeEngine, Script};

const UPGRADE: &str = "migrate up";
const CURRENT: &str = "migrate current";
const DOWN_TO_2: &str = "migrate down 0002";

fn meta() -> ReleaseMeta {
    ReleaseMeta {
        commit: "abc123".to_owned(),
        version: None,
        author: "tester".to_owned(),
        created_at: Utc::now(),
    }
}

fn owner() -> LockOwner {
    LockOwner {
        holder: "tester".into(),
        url: None,
    }
}

fn schema(downgrade: bool) -> SchemaCommands {
    SchemaCommands {
        service: "backend".into(),
        version: vec!["migrate".into(), "current".into()],
        downgrade: downgrade.then(|| vec!["migrate".into(), "down".into(), "{version}".into()]),
    }
}

fn deploy_plan(downgrade: bool) -> DeployPlan {
    DeployPlan {
        image: ImageSource::Build,
        meta: meta(),
        owner: owner(),
        migrations: Some(Migrations {
            service: "backend".into(),
            command: vec!["migrate".into(), "up".into()],
            schema: Some(schema(downgrade)),
        }),
        force: true,
        services: Vec::new(),
    }
}

fn rollback_plan(downgrade: bool, force: bool) -> RollbackPlan {
    RollbackPlan {
        to: Some(1),
        meta: meta(),
        owner: owner(),
        schema: Some(schema(downgrade)),
        force,
    }
}

fn database_at(engine: &FakeEngine, version: &str) {
    engine.script.lock().expect("script").task_output = vec![(
        CURRENT.to_owned(),
        format!("INFO  [alembic] context\n{version} (head)\n"),
    )];
}

/// A deploy whose migrations leave the database at `version`.
async fn deploy_at(
    engine: &FakeEngine,
    version: &str,
    downgrade: bool,
    progress: &Warnings,
) -> DeployReport {
    database_at(engine, version);
    pipeline::deploy(
        engine,
        &deploy_plan(downgrade),
        progress,
        std::future::pending(),
    )
    .await
    .expect("deploy")
}

/// Release 1 migrated to 0002, release 2 to 0003; release 2 serves.
/// `rollback` (to the release before the serving one) with `rollback_plan(downgrade, force)`.
async fn roll_back(
    engine: &FakeEngine,
    downgrade: bool,
    force: bool,
) -> kaapi_core::engine::EngineResult<DeployReport> {
    pipeline::rollback(
        engine,
        &rollback_plan(downgrade, force),
        &Warnings::default(),
        std::future::pending(),
    )
    .await
}

async fn two_releases() -> FakeEngine {
    let engine = FakeEngine::new("local", Script::default());
    for version in ["0002", "0003"] {
        let report = deploy_at(&engine, version, false, &Warnings::default()).await;
        assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    }
    engine
}

#[derive(Default)]
struct Warnings(std::sync::Mutex<Vec<String>>);

impl Warnings {
    fn all(&self) -> Vec<String> {
        self.0.lock().map(|w| w.clone()).unwrap_or_default()
    }
}

impl Progress for Warnings {
    fn event(&self, event: Event) {
        if let Event::Warning { message } = event {
            if let Ok(mut warnings) = self.0.lock() {
                warnings.push(message);
            }
        }
    }
}

/// Calls made after the first `n`.
fn calls_after(engine: &FakeEngine, n: usize) -> Vec<String> {
    engine.calls().into_iter().skip(n).collect()
}

fn assert_no_upgrade(calls: &[String]) {
    assert!(
        !calls.iter().any(|c| c.ends_with(UPGRADE)),
        "a rollback ran the upgrade: {calls:?}"
    );
}

#[tokio::test]
async fn each_release_records_the_version_its_migrations_left() {
    let engine = two_releases().await;
    let releases = engine.releases().await.expect("releases");
    let versions: Vec<_> = releases
        .iter()
        .map(|r| (r.number, r.schema_version.clone()))
        .collect();
    assert_eq!(
        versions,
        vec![(2, Some("0003".to_owned())), (1, Some("0002".to_owned()))]
    );
    // Read after the migrations, on the new release (alongside its rollout).
    let calls = engine.calls();
    let position = |call: String| calls.iter().position(|c| *c == call);
    let upgrade =
        position(format!("run_task release 2 backend {UPGRADE}")).expect("migrations of release 2");
    let read = position(format!("run_task release 2 backend {CURRENT}"))
        .expect("schema version read on release 2");
    assert!(read > upgrade, "read before the migrations: {calls:?}");
}

#[tokio::test]
async fn a_rollback_to_older_code_than_the_database_is_refused_with_nothing_changed() {
    let engine = two_releases().await;
    let before = engine.calls().len();
    let error = roll_back(&engine, false, false).await.expect_err("refused");
    let message = error.to_string();
    for expected in ["0003", "0002", "release 1", "--force", "downgrade_command"] {
        assert!(message.contains(expected), "{expected} in: {message}");
    }
    let calls = calls_after(&engine, before);
    // The version was read on the serving release 2, never on release 1's older code.
    assert!(
        calls.contains(&format!("run_task release 2 backend {CURRENT}")),
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|c| c.starts_with("run_task release 1")),
        "{calls:?}"
    );
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("register_release") || c.starts_with("roll_out")),
        "{calls:?}"
    );
    assert_eq!(engine.releases().await.expect("releases").len(), 2);
    assert!(!engine.is_locked());
}

#[tokio::test]
async fn a_configured_downgrade_runs_on_the_serving_release_before_the_rollout() {
    let engine = two_releases().await;
    let before = engine.calls().len();
    let report = roll_back(&engine, true, false).await.expect("rollback");
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    let calls = calls_after(&engine, before);
    let down = calls
        .iter()
        .position(|c| c == &format!("run_task release 2 backend {DOWN_TO_2}"))
        .unwrap_or_else(|| panic!("downgrade on release 2: {calls:?}"));
    let rolled = calls
        .iter()
        .position(|c| c == "roll_out 3")
        .unwrap_or_else(|| panic!("rollout: {calls:?}"));
    assert!(down < rolled, "{calls:?}");
    assert_no_upgrade(&calls);
    let releases = engine.releases().await.expect("releases");
    assert_eq!(releases[0].rollback_of, Some(1));
    assert_eq!(releases[0].schema_version.as_deref(), Some("0002"));
}

#[tokio::test]
async fn a_failed_downgrade_stops_the_rollback_before_anything_rolls_out() {
    let engine = two_releases().await;
    engine.script.lock().expect("script").failing_tasks = vec![DOWN_TO_2.to_owned()];
    let before = engine.calls().len();
    let error = roll_back(&engine, true, false).await.expect_err("stopped");
    assert!(
        error.to_string().contains("release 2 still serves"),
        "{error}"
    );
    let calls = calls_after(&engine, before);
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("register_release") || c.starts_with("roll_out")),
        "{calls:?}"
    );
    assert_eq!(engine.releases().await.expect("releases").len(), 2);
}

#[tokio::test]
async fn force_rolls_back_without_downgrading_and_warns() {
    let engine = two_releases().await;
    let before = engine.calls().len();
    let warnings = Warnings::default();
    let report = pipeline::rollback(
        &engine,
        &rollback_plan(true, true),
        &warnings,
        std::future::pending(),
    )
    .await
    .expect("rollback");
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    let calls = calls_after(&engine, before);
    assert!(
        !calls.iter().any(|c| c.contains("migrate down")),
        "{calls:?}"
    );
    assert_no_upgrade(&calls);
    assert!(
        warnings
            .all()
            .iter()
            .any(|w| w.contains("--force") && w.contains("0003") && w.contains("0002")),
        "{:?}",
        warnings.all()
    );
}

#[tokio::test]
async fn a_target_without_a_recorded_version_is_rolled_back_with_a_warning() {
    let engine = FakeEngine::new("local", Script::default()).with_release(
        1,
        "sha256:old",
        "old",
        Outcome::Succeeded,
    );
    deploy_at(&engine, "0003", false, &Warnings::default()).await;
    let before = engine.calls().len();
    let warnings = Warnings::default();
    let report = pipeline::rollback(
        &engine,
        &rollback_plan(false, false),
        &warnings,
        std::future::pending(),
    )
    .await
    .expect("rollback");
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    assert_no_upgrade(&calls_after(&engine, before));
    assert!(
        warnings
            .all()
            .iter()
            .any(|w| w.contains("recorded no schema version")),
        "{:?}",
        warnings.all()
    );
}

#[tokio::test]
async fn equal_versions_roll_back_without_a_downgrade() {
    let engine = two_releases().await;
    database_at(&engine, "0002");
    let before = engine.calls().len();
    let report = roll_back(&engine, true, false).await.expect("rollback");
    assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    let calls = calls_after(&engine, before);
    assert!(
        !calls.iter().any(|c| c.contains("migrate down")),
        "{calls:?}"
    );
    assert_no_upgrade(&calls);
}

/// Release 1 serves on schema 0002; release 2's migrations take the database to `version`,
/// then release 2 fails its verification and the deploy rolls back to release 1 on its own.
/// Returns the engine, the deploy's report, its warnings and the calls after release 1.
async fn a_failed_deploy_to(
    version: &str,
    downgrade: bool,
    failing_downgrade: bool,
) -> (FakeEngine, DeployReport, Warnings, Vec<String>) {
    let engine = FakeEngine::new("local", Script::default());
    deploy_at(&engine, "0002", downgrade, &Warnings::default()).await;
    let before = engine.calls().len();
    {
        let mut script = engine.script.lock().expect("script");
        script.verify = Some(Err("health check failed".to_owned()));
        if failing_downgrade {
            script.failing_tasks = vec![DOWN_TO_2.to_owned()];
        }
    }
    let warnings = Warnings::default();
    let report = deploy_at(&engine, version, downgrade, &warnings).await;
    let calls = calls_after(&engine, before);
    // Whatever the schema, the old code serves again.
    assert_eq!(report.outcome, Outcome::RolledBack, "{}", report.message);
    assert_eq!(report.serving, Some(1), "{}", report.message);
    assert!(calls.contains(&"roll_out 1".to_owned()), "{calls:?}");
    (engine, report, warnings, calls)
}

fn position(calls: &[String], call: &str) -> usize {
    calls
        .iter()
        .position(|c| c == call)
        .unwrap_or_else(|| panic!("no `{call}` in {calls:?}"))
}

#[tokio::test]
async fn a_deploys_automatic_rollback_migrates_the_database_down_first_with_the_new_code() {
    let (_engine, report, _warnings, calls) = a_failed_deploy_to("0003", true, false).await;
    // The version read alongside the rollout, the downgrade on release 2's code (the code that
    // knows migration 0003), and only then release 1 rolls out again.
    let read = position(&calls, &format!("run_task release 2 backend {CURRENT}"));
    let down = position(&calls, &format!("run_task release 2 backend {DOWN_TO_2}"));
    let restored = position(&calls, "roll_out 1");
    assert!(read < down && down < restored, "{calls:?}");
    let schema = report
        .schema
        .as_ref()
        .expect("the report says what the schema did");
    assert_eq!(
        (schema.from.as_str(), schema.to.as_str(), schema.downgrade),
        ("0003", "0002", DowngradeResult::Succeeded)
    );
    assert!(
        report.message.contains(
            "release 1 serves; the database was migrated down from schema version 0003 to 0002"
        ),
        "{}",
        report.message
    );
    let json = serde_json::to_value(&report).expect("report as JSON");
    assert_eq!(json["schema"]["downgrade"], "succeeded", "{json}");
    assert_eq!(json["schema"]["to"], "0002", "{json}");
}

#[tokio::test]
async fn without_a_downgrade_command_the_automatic_rollback_warns_naming_both_versions() {
    let (engine, report, warnings, calls) = a_failed_deploy_to("0003", false, false).await;
    assert!(
        !calls.iter().any(|c| c.contains("migrate down")),
        "{calls:?}"
    );
    let warned = warnings.all();
    assert!(
        warned
            .iter()
            .any(|w| w.contains("from schema version 0002 to 0003")
                && w.contains("stays at 0003")
                && w.contains("downgrade_command")),
        "{warned:?}"
    );
    let schema = report
        .schema
        .as_ref()
        .expect("the report carries the warning");
    assert_eq!(schema.downgrade, DowngradeResult::NotConfigured);
    assert!(
        schema.message.contains("downgrade_command"),
        "{}",
        schema.message
    );
    assert!(
        report
            .message
            .contains("the database stays at schema version 0003"),
        "{}",
        report.message
    );
    // The failed release's record says so too.
    let releases = engine.releases().await.expect("releases");
    let detail = releases[0].detail.clone().unwrap_or_default();
    assert!(detail.contains("stays at schema version 0003"), "{detail}");
}

#[tokio::test]
async fn a_failed_downgrade_still_rolls_back_and_says_the_database_stays_ahead() {
    let (_engine, report, warnings, calls) = a_failed_deploy_to("0003", true, true).await;
    let down = position(&calls, &format!("run_task release 2 backend {DOWN_TO_2}"));
    assert!(down < position(&calls, "roll_out 1"), "{calls:?}");
    let schema = report.schema.as_ref().expect("schema in the report");
    assert_eq!(schema.downgrade, DowngradeResult::Failed);
    let warned = warnings.all();
    assert!(
        warned.iter().any(|w| w.contains("exited with code 1")
            && w.contains("release 1 serves again")
            && w.contains("stays at 0003")),
        "{warned:?}"
    );
    // The warning names the command that retries the downgrade on the failed release's code.
    let retry = "`kaapi-deploy run local --service backend --release 2 -- migrate down 0002`";
    assert!(
        warned.iter().any(|w| w.contains(retry)) && schema.message.contains(retry),
        "{warned:?}"
    );
    assert!(
        report
            .message
            .contains("the downgrade to schema version 0002 failed, the database stays at 0003"),
        "{}",
        report.message
    );
    let migrate = report
        .phases
        .iter()
        .filter(|p| p.phase == kaapi_core::progress::Phase::Migrate)
        .map(|p| p.ok)
        .collect::<Vec<_>>();
    assert_eq!(
        migrate,
        vec![true, false],
        "the upgrade, then the failed downgrade"
    );
}

#[tokio::test]
async fn an_automatic_rollback_after_migrations_that_kept_the_version_does_not_downgrade() {
    let (_engine, report, warnings, calls) = a_failed_deploy_to("0002", true, false).await;
    assert!(
        !calls.iter().any(|c| c.contains("migrate down")),
        "{calls:?}"
    );
    assert_eq!(report.schema, None);
    assert!(
        !warnings.all().iter().any(|w| w.contains("schema version")),
        "{:?}",
        warnings.all()
    );
}
