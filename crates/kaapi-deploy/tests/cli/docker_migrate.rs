//! `migrate`, missing secrets and an unreachable Docker Engine, against the real Docker Engine.

use crate::docker_support::{docker, Project, LABEL_ROLE};
use predicates::prelude::*;

#[test]
fn migrate_runs_the_migrations_once_in_a_one_off_container_and_records_nothing() {
    let project = Project::new("mig");
    let output = project
        .cli()
        .args(["migrate", "local"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("pre-build ran"),
        "pre-build output streamed: {stderr}"
    );
    assert!(
        stderr.contains("database is at version 2"),
        "task output streamed: {stderr}"
    );
    assert!(
        !stderr.contains("test-secret-value-not-printed"),
        "a secret was printed"
    );
    // The one-off container is gone, no replica was started, and nothing was recorded.
    assert!(project.containers(&[(LABEL_ROLE, "task")]).is_empty());
    assert!(project.containers(&[(LABEL_ROLE, "replica")]).is_empty());
    assert!(project.releases().is_empty());
    // The migrations ran against the environment's volume.
    let volume = format!("{}-local-data", project.app);
    assert!(
        docker(&["volume", "ls", "-q"]).lines().any(|v| v == volume),
        "volume {volume}"
    );
    // A second run finds the schema current.
    let again = project
        .cli()
        .args(["migrate", "local"])
        .output()
        .expect("run");
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("database is at version 2"));
}

#[test]
fn a_failing_migration_exits_1_with_its_output() {
    let project = Project::new("migf");
    project.configure("1.0.0", "migration");
    project
        .cli()
        .args(["migrate", "local"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("migrations failed")
                .and(predicate::str::contains("exited with code 1")),
        );
    assert!(project.containers(&[(LABEL_ROLE, "task")]).is_empty());
}

#[test]
fn a_missing_secret_names_the_file_and_the_variable_and_records_nothing() {
    let project = Project::new("sec");
    std::fs::write(project.dir.path().join("local.env"), "OTHER=1\n").expect("write");
    project
        .cli()
        .args(["deploy", "local"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("local.env").and(predicate::str::contains("SECRET_KEY")));
    assert!(project.releases().is_empty());
}

#[test]
fn an_unreachable_docker_engine_says_how_to_start_it() {
    let project = Project::new("nod");
    let socket = project.dir.path().join("no-docker.sock");
    project
        .cli()
        .args(["deploy", "local"])
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("cannot reach the Docker Engine")
                .and(predicate::str::contains("sudo dockerd"))
                .and(predicate::str::contains("DOCKER_HOST")),
        );
}

#[test]
fn a_web_service_without_an_ingress_port_is_refused_before_anything_runs() {
    let project = Project::new("noport");
    let text = std::fs::read_to_string(&project.config).expect("read deploy.toml");
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("ingress_port"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&project.config, without).expect("write deploy.toml");
    project
        .cli()
        .args(["deploy", "local"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "environments.local.ingress_port is not set",
        ))
        .stderr(predicate::str::contains("running `/app migrate`").not());
    assert!(project.releases().is_empty());
}
