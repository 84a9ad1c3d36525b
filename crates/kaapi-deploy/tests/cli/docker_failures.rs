//! Broken releases on the real Docker Engine: failing health rolls back automatically with no
//! dropped request; a failing migration stops the deploy before any replica of it exists.

use crate::docker_support::{docker, Project, LABEL_APP, LABEL_RELEASE, LABEL_ROLE};

fn outcome_of(releases: &[serde_json::Value], number: u64) -> (String, String) {
    let release = releases
        .iter()
        .find(|r| r["number"] == number)
        .expect("release listed");
    (
        release["outcome"].as_str().unwrap_or_default().to_owned(),
        release["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn a_release_failing_its_health_check_is_rolled_back_and_the_old_one_serves_throughout() {
    let project = Project::new("hlth");
    project.deploy();
    assert_eq!(project.serving_version().as_deref(), Some("1.0.0"));

    project.configure("2.0.0", "health");
    let load = project.load();
    let output = project
        .cli()
        .args(["deploy", "local"])
        .output()
        .expect("run");
    let result = load.finish();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    // What failed, and what serves now.
    assert!(stderr.contains("deploy failed:"), "{stderr}");
    assert!(stderr.contains("health"), "{stderr}");
    assert!(stderr.contains("release 1 serves"), "{stderr}");
    assert_eq!(result.failed, 0, "failed requests: {:?}", result.failures);
    assert_eq!(
        result.versions,
        vec!["1.0.0".to_owned()],
        "only the old version answered"
    );
    assert_eq!(project.serving_version().as_deref(), Some("1.0.0"));
    // The agent kept release 1 running, so going back to it restarted nothing.
    assert!(stderr.contains("release 1 still serves"), "{stderr}");
    assert_eq!(
        project
            .containers(&[(LABEL_ROLE, "replica"), (LABEL_RELEASE, "1")])
            .len(),
        3
    );
    assert!(project
        .containers(&[(LABEL_ROLE, "replica"), (LABEL_RELEASE, "2")])
        .is_empty());
    let (outcome, detail) = outcome_of(&project.releases(), 2);
    assert_eq!(outcome, "rolled_back", "{detail}");
    assert!(detail.contains("release 1 serves"), "{detail}");
}

#[test]
fn a_failing_migration_aborts_before_any_replica_of_the_release_exists() {
    let project = Project::new("migr");
    project.deploy();
    let old_replicas = {
        let mut ids = project.containers(&[(LABEL_ROLE, "replica"), (LABEL_RELEASE, "1")]);
        ids.sort();
        ids
    };
    assert_eq!(old_replicas.len(), 3);
    let since = docker(&["system", "info", "--format", "{{.SystemTime}}"]);

    project.configure("2.0.0", "migration");
    let load = project.load();
    let output = project
        .cli()
        .args(["deploy", "local"])
        .output()
        .expect("run");
    let result = load.finish();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("migrations exited with code 1"), "{stderr}");
    assert!(stderr.contains("nothing serving was changed"), "{stderr}");
    assert_eq!(result.failed, 0, "failed requests: {:?}", result.failures);
    let (outcome, _) = outcome_of(&project.releases(), 2);
    assert_eq!(outcome, "failed_migration");

    // No replica of release 2 was ever created (Docker's own event log says so), and the old
    // replicas are the very same containers.
    let until = docker(&["system", "info", "--format", "{{.SystemTime}}"]);
    let created = docker(&[
        "events",
        "--since",
        since.trim(),
        "--until",
        until.trim(),
        "--filter",
        "event=create",
        "--filter",
        &format!("label={LABEL_APP}={}", project.app),
        "--filter",
        &format!("label={LABEL_RELEASE}=2"),
        "--format",
        "{{index .Actor.Attributes \"dev.kaapi.role\"}}",
    ]);
    let roles: Vec<&str> = created.lines().collect();
    assert_eq!(
        roles,
        vec!["task"],
        "only the migration task of release 2 was created"
    );
    let mut now = project.containers(&[(LABEL_ROLE, "replica")]);
    now.sort();
    assert_eq!(now, old_replicas);
    assert_eq!(project.serving_version().as_deref(), Some("1.0.0"));
}
