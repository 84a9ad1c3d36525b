//! Migration-aware rollback over a scripted engine: each release records the schema version
//! its migrations left, and a rollback compares the database's version (read on the release
//! that serves) with the target's before anything changes. A rollback never runs the
//! migrations (upgrade) command.

use chrono::Utc;
use kaapi_core::engine::{Engine, ImageSource, LockOwner};
use kaapi_core::pipeline::{self, DeployPlan, Migrations, RollbackPlan};
use kaapi_core::progress::{Event, Progress};
use kaapi_core::release::{Outcome, ReleaseMeta};
use kaapi_core::schema::SchemaCommands;
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

fn deploy_plan() -> DeployPlan {
    DeployPlan {
        image: ImageSource::Build,
        meta: meta(),
        owner: owner(),
        migrations: Some(Migrations {
            service: "backend".into(),
            command: vec!["migrate".into(), "up".into()],
            schema: Some(schema(false)),
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

/// Release 1 migrated to 0002, release 2 to 0003; release 2 serves.
async fn two_releases() -> FakeEngine {
    let engine = FakeEngine::new("local", Script::default());
    for version in ["0002", "0003"] {
        database_at(&engine, version);
        let report = pipeline::deploy(
            &engine,
            &deploy_plan(),
            &Warnings::default(),
            std::future::pending(),
        )
        .await
        .expect("deploy");
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
    let error = pipeline::rollback(
        &engine,
        &rollback_plan(false, false),
        &Warnings::default(),
        std::future::pending(),
    )
    .await
    .expect_err("refused");
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
    let report = pipeline::rollback(
        &engine,
        &rollback_plan(true, false),
        &Warnings::default(),
        std::future::pending(),
    )
    .await
    .expect("rollback");
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
    let error = pipeline::rollback(
        &engine,
        &rollback_plan(true, false),
        &Warnings::default(),
        std::future::pending(),
    )
    .await
    .expect_err("stopped");
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
    database_at(&engine, "0003");
    pipeline::deploy(
        &engine,
        &deploy_plan(),
        &Warnings::default(),
        std::future::pending(),
    )
    .await
    .expect("deploy");
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
    let report = pipeline::rollback(
        &engine,
        &rollback_plan(true, false),
        &Warnings::default(),
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
}
