//! Migration-aware rollback on ECS over scripted AWS responses: each release's schema version
//! (what `version_command` printed, read from the task's CloudWatch log) is a tag on its
//! task-definition revision, and a rollback to a release whose code predates the database is
//! refused before anything is registered or rolled out.

use kaapi_core::engine::{Engine, ImageSource};
use kaapi_core::pipeline::{self, DeployPlan, Migrations, RollbackPlan};
use kaapi_core::release::Outcome;
use kaapi_core::schema::SchemaCommands;
use kaapi_ecs::release_tags;

use crate::scenarios::{fast_tuning, setup};
use crate::support::{lock_owner, release_meta, Recorder};

fn schema() -> SchemaCommands {
    SchemaCommands {
        service: "backend".to_owned(),
        version: vec!["alembic".into(), "current".into()],
        downgrade: None,
    }
}

fn deploy_plan(commit: &str) -> DeployPlan {
    DeployPlan {
        image: ImageSource::Build,
        meta: release_meta(commit),
        owner: lock_owner(),
        migrations: Some(Migrations {
            service: "backend".to_owned(),
            command: vec!["alembic".into(), "upgrade".into(), "head".into()],
            schema: Some(schema()),
        }),
        force: true,
        services: Vec::new(),
    }
}

#[tokio::test]
async fn releases_are_tagged_with_their_schema_version_and_an_older_target_is_refused() {
    let s = setup(fast_tuning(), "");
    for (commit, version) in [("aaa1111", "0002"), ("bbb2222", "0003")] {
        // alembic logs before the version, and decorates it.
        s.fake.state().task_log = Some(format!("{version} (head)"));
        let report = pipeline::deploy(
            &s.engine,
            &deploy_plan(commit),
            &Recorder::default(),
            std::future::pending(),
        )
        .await
        .expect("the deploy runs to an outcome");
        assert_eq!(report.outcome, Outcome::Succeeded, "{}", report.message);
    }
    let releases = s.engine.releases().await.expect("releases");
    let versions: Vec<_> = releases
        .iter()
        .map(|r| r.schema_version.as_deref())
        .collect();
    assert_eq!(versions, vec![Some("0003"), Some("0002")]);
    // On the web service's revision of release 1, where the history reads it from.
    let revision = &releases[1]
        .revision_of("backend")
        .expect("backend revision")
        .revision;
    assert_eq!(
        s.fake
            .tag(revision, release_tags::SCHEMA_VERSION)
            .as_deref(),
        Some("0002")
    );
    assert_eq!(
        s.fake.state().task_commands,
        vec![
            "alembic upgrade head",
            "alembic current",
            "alembic upgrade head",
            "alembic current"
        ],
        "the version is read after each release's migrations"
    );

    s.fake.clear_calls();
    s.fake.state().task_commands.clear();
    let rollback = RollbackPlan {
        to: Some(1),
        meta: release_meta("ccc3333"),
        owner: lock_owner(),
        schema: Some(schema()),
        force: false,
    };
    let error = pipeline::rollback(
        &s.engine,
        &rollback,
        &Recorder::default(),
        std::future::pending(),
    )
    .await
    .expect_err("refused");
    let message = error.to_string();
    assert!(
        message.contains("schema version 0003") && message.contains("ran on 0002"),
        "{message}"
    );
    // Only the version was read (on the serving release); nothing was registered or rolled out.
    assert_eq!(s.fake.state().task_commands, vec!["alembic current"]);
    let calls = s.fake.calls();
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("ecs:RegisterTaskDefinition")
                || c.starts_with("ecs:UpdateService")),
        "{calls:?}"
    );
    assert_eq!(s.engine.releases().await.expect("releases").len(), 2);
    assert!(!s.fake.lock_held(), "the lock is released");
}
