//! Migration-aware rollback against the real Docker Engine, with the example backend's
//! versioned migrations: release 1 runs on schema 0002, release 2 adds migration 0003; a
//! rollback to 1 is refused (nothing changes), downgrades first when `downgrade_command` is
//! configured, or goes ahead with `--force`. A rollback never runs the upgrade on old code.
//! A deploy whose release 2 migrates to 0003 and then fails its health check migrates the
//! database back down before its automatic rollback.

use crate::docker_support::Project;

const MIGRATION_0003: &str = "ALTER TABLE items ADD COLUMN priority INTEGER;
-- down
ALTER TABLE items DROP COLUMN priority;
";

/// The project's image reads its migrations from files it ships, so release 2 can add one
/// without rebuilding the binary.
fn ship_migrations(project: &Project) {
    let backend = project.dir.path().join("backend");
    let migrations = backend.join("migrations");
    std::fs::create_dir_all(&migrations).expect("mkdir migrations");
    let examples =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/backend/migrations");
    for file in ["0001_create_items.sql", "0002_add_description.sql"] {
        std::fs::copy(examples.join(file), migrations.join(file)).expect("copy migration");
    }
    let dockerfile = std::fs::read_to_string(backend.join("Dockerfile")).expect("Dockerfile");
    let dockerfile = dockerfile.replace(
        "COPY dist/kaapi-example-backend /app",
        "COPY dist/kaapi-example-backend /app\nCOPY migrations /migrations\nENV MIGRATIONS_DIR=/migrations",
    );
    std::fs::write(backend.join("Dockerfile"), dockerfile).expect("write Dockerfile");
    let ignore = backend.join(".dockerignore");
    let mut rules = std::fs::read_to_string(&ignore).expect(".dockerignore");
    rules.push_str("!migrations\n");
    std::fs::write(ignore, rules).expect("write .dockerignore");
}

/// deploy.toml for `version` (built with `BREAK=brk`), with the schema commands (and the
/// downgrade when asked).
fn configure(project: &Project, version: &str, brk: &str, downgrade: bool) {
    project.configure(version, brk);
    let mut schema = "[migrations]\nversion_command = \"/app migrate current\"\n".to_owned();
    if downgrade {
        schema.push_str("downgrade_command = \"/app migrate down {version}\"\n");
    }
    let text = std::fs::read_to_string(&project.config).expect("read deploy.toml");
    assert!(text.contains("[migrations]\n"), "{text}");
    std::fs::write(&project.config, text.replace("[migrations]\n", &schema))
        .expect("write deploy.toml");
}

/// Release 1 (schema 0002) serves; the next build ships migration 0003. Returns the versions
/// (`APP_VERSION`) of release 1 and of the next release.
fn release_1_then_migration_0003(project: &Project, downgrade: bool) -> (String, String) {
    let (v1, v2) = (format!("s1-{}", project.app), format!("s2-{}", project.app));
    ship_migrations(project);
    configure(project, &v1, "", downgrade);
    project.deploy();
    std::fs::write(
        project
            .dir
            .path()
            .join("backend/migrations/0003_add_priority.sql"),
        MIGRATION_0003,
    )
    .expect("write 0003");
    (v1, v2)
}

/// Release 1 (schema 0002), then release 2 with migration 0003; returns both versions.
fn two_releases(project: &Project, downgrade: bool) -> (String, String) {
    let (v1, v2) = release_1_then_migration_0003(project, downgrade);
    configure(project, &v2, "", downgrade);
    project.deploy();
    assert_eq!(project.serving_version().as_deref(), Some(v2.as_str()));
    let releases = project.releases();
    assert_eq!(releases[0]["schema_version"], "0003", "{releases:?}");
    assert_eq!(releases[1]["schema_version"], "0002", "{releases:?}");
    (v1, v2)
}

/// The database's schema version, read by a one-off container of the serving release.
fn database_version(project: &Project) -> String {
    let (code, text) = run(project, &["--", "/app", "migrate", "current"]);
    assert_eq!(code, Some(0), "{text}");
    ["0001", "0002", "0003"]
        .into_iter()
        .rfind(|v| text.lines().any(|l| l.trim_end().ends_with(v)))
        .unwrap_or_else(|| panic!("no version in: {text}"))
        .to_owned()
}

/// `/app migrate` (the upgrade) announces itself with `migrating`; no rollback may print it.
fn assert_no_upgrade(stderr: &str) {
    assert!(
        !stderr.contains("migrating /data") && !stderr.contains("applying"),
        "a rollback ran the upgrade: {stderr}"
    );
}

#[test]
fn a_rollback_to_code_older_than_the_database_is_refused_then_forced() {
    let project = Project::new("schref");
    let (v1, v2) = two_releases(&project, false);

    let refused = project
        .cli()
        .args(["rollback", "local"])
        .output()
        .expect("rollback");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    for expected in ["0003", "0002", "--force", "downgrade_command"] {
        assert!(stderr.contains(expected), "{expected} in: {stderr}");
    }
    assert_no_upgrade(&stderr);
    // Nothing changed: release 2 serves, no release was recorded, the database is at 0003.
    assert_eq!(project.serving_version().as_deref(), Some(v2.as_str()));
    assert_eq!(project.releases().len(), 2);
    assert_eq!(database_version(&project), "0003");

    let forced = project
        .cli()
        .args(["rollback", "local", "--force"])
        .output()
        .expect("rollback --force");
    let stderr = String::from_utf8_lossy(&forced.stderr);
    assert!(forced.status.success(), "{stderr}");
    assert!(stderr.contains("--force"), "the warning: {stderr}");
    assert!(!stderr.contains("reverting"), "no downgrade: {stderr}");
    assert_no_upgrade(&stderr);
    assert_eq!(project.serving_version().as_deref(), Some(v1.as_str()));
    // Release 1's code runs on the newer schema, left as it was.
    assert_eq!(database_version(&project), "0003");
    let releases = project.releases();
    assert_eq!(releases.len(), 3);
    assert_eq!(releases[0]["rollback_of"], 1);
    assert_eq!(releases[0]["schema_version"], "0002");
}

#[test]
fn a_configured_downgrade_migrates_the_database_down_before_the_rollback() {
    let project = Project::new("schdown");
    let (v1, _) = two_releases(&project, true);

    let rollback = project
        .cli()
        .args(["rollback", "local"])
        .output()
        .expect("rollback");
    let stderr = String::from_utf8_lossy(&rollback.stderr);
    assert!(rollback.status.success(), "{stderr}");
    assert!(stderr.contains("reverting 0003_add_priority"), "{stderr}");
    assert_no_upgrade(&stderr);
    assert_eq!(project.serving_version().as_deref(), Some(v1.as_str()));
    assert_eq!(database_version(&project), "0002");
    let releases = project.releases();
    assert_eq!(releases[0]["outcome"], "succeeded");
    assert_eq!(releases[0]["rollback_of"], 1);
    assert_eq!(releases[0]["schema_version"], "0002");

    // The text history shows each release's schema version.
    let table = project.ok(&["releases", "local"]);
    assert!(table.contains("SCHEMA"), "{table}");
    assert!(table.contains("0003"), "{table}");
}

#[test]
fn a_deploy_failing_its_health_check_after_migrating_migrates_the_database_down_and_rolls_back() {
    let project = Project::new("schauto");
    let (v1, v2) = release_1_then_migration_0003(&project, true);
    configure(&project, &v2, "health", true);

    let output = project
        .cli()
        .args(["deploy", "local", "--json"])
        .output()
        .expect("deploy");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    // Release 2's code (the one that knows migration 0003) undid it before release 1 rolled
    // out again.
    for expected in [
        "migrating the database down from schema version 0003 to 0002 on release 2",
        "reverting 0003_add_priority",
        "rolling back to release 1",
    ] {
        assert!(stderr.contains(expected), "{expected} in: {stderr}");
    }
    let reverted = stderr.find("reverting 0003_add_priority");
    assert!(
        reverted < stderr.find("rolling back to release 1"),
        "{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("deploy --json is JSON");
    assert_eq!(report["outcome"], "rolled_back", "{report}");
    assert_eq!(report["serving"], 1, "{report}");
    assert_eq!(report["schema"]["from"], "0003", "{report}");
    assert_eq!(report["schema"]["to"], "0002", "{report}");
    assert_eq!(report["schema"]["downgrade"], "succeeded", "{report}");
    assert!(
        report["message"]
            .as_str()
            .is_some_and(|m| m.contains("migrated down from schema version 0003 to 0002")),
        "{report}"
    );

    // Release 1's code serves on the schema it ran on.
    assert_eq!(project.serving_version().as_deref(), Some(v1.as_str()));
    assert_eq!(database_version(&project), "0002");
    let releases = project.releases();
    assert_eq!(releases[0]["outcome"], "rolled_back", "{releases:?}");
    assert_eq!(releases[0]["schema_version"], "0003", "{releases:?}");
}

/// `kaapi-deploy run local ARGS…`: its exit code and its whole output (the task's lines are
/// progress, on stderr).
fn run(project: &Project, args: &[&str]) -> (Option<i32>, String) {
    let output = project
        .cli()
        .args(["run", "local"])
        .args(args)
        .output()
        .expect("run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

#[test]
fn run_on_an_earlier_release_uses_that_releases_image() {
    let project = Project::new("schrun");
    let (v1, v2) = two_releases(&project, false);
    // Release 1's code serves again on the database release 2 migrated to 0003.
    let forced = project
        .cli()
        .args(["rollback", "local", "--force"])
        .output()
        .expect("rollback --force");
    assert!(forced.status.success(), "{forced:?}");

    // The serving code predates migration 0003 and cannot undo it; release 2's code can.
    let (code, text) = run(&project, &["--", "/app", "migrate", "down", "0002"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("newer than this release knows"), "{text}");
    let (code, text) = run(
        &project,
        &["--release", "2", "--", "/app", "migrate", "down", "0002"],
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("database migrated down from version 0003 to 0002"),
        "{text}"
    );
    assert!(text.contains("(release 2)"), "{text}");
    assert_eq!(database_version(&project), "0002");

    // Each release's own image runs: its APP_VERSION says which.
    let (code, text) = run(&project, &["--release", "1", "--", "/app", "migrate"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!("kaapi-example-backend {v1} migrating")),
        "{text}"
    );
    assert!(text.contains("database is at version 2"), "{text}");
    let (code, text) = run(&project, &["--release", "2", "--", "/app", "migrate"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!("kaapi-example-backend {v2} migrating")),
        "{text}"
    );
    assert!(text.contains("database is at version 3"), "{text}");

    // An unknown release is a usage error that says where to look.
    let (code, text) = run(
        &project,
        &["--release", "9", "--", "/app", "migrate", "current"],
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("`local` has no release 9; `kaapi-deploy releases local` lists them"),
        "{text}"
    );

    // Once pruned, release 2's image is gone: the error names the release and what to do.
    project.ok(&["prune", "local", "--keep", "0"]);
    let (code, text) = run(
        &project,
        &["--release", "2", "--", "/app", "migrate", "current"],
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("cannot run on release 2: the image of release 2")
            && text.contains("is no longer in the local Docker Engine"),
        "{text}"
    );
}
