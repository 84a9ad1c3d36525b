//! The main job on the real Docker Engine: deploy, redeploy under load, rollbacks, one-off
//! tasks, status and logs.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use crate::docker_support::{eventually, Project, LABEL_RELEASE, LABEL_ROLE};

fn outcome_of(releases: &[serde_json::Value], number: u64) -> String {
    releases
        .iter()
        .find(|r| r["number"] == number)
        .and_then(|r| r["outcome"].as_str())
        .unwrap_or("missing")
        .to_owned()
}

#[test]
fn deploy_redeploy_and_roll_back_without_dropping_a_request() {
    let project = Project::new("dep");

    // First deploy: the URL serves the new /version and the release is recorded.
    let stdout = project.deploy();
    assert!(
        stdout.contains(&format!("http://127.0.0.1:{}", project.port)),
        "{stdout}"
    );
    assert_eq!(project.serving_version().as_deref(), Some("1.0.0"));
    let releases = project.releases();
    assert_eq!(releases.len(), 1);
    assert_eq!(outcome_of(&releases, 1), "succeeded");
    // The version the build argument APP_VERSION ships.
    assert_eq!(releases[0]["meta"]["version"], "1.0.0", "{releases:?}");
    assert!(releases[0]["image"]["digest"]
        .as_str()
        .is_some_and(|d| d.starts_with("sha256:")));
    assert_eq!(
        project
            .containers(&[(LABEL_ROLE, "replica"), (LABEL_RELEASE, "1")])
            .len(),
        3
    );

    // A new version while a loopback client keeps asking: nothing fails, both versions seen.
    project.configure("2.0.0", "");
    let load = project.load();
    std::thread::sleep(Duration::from_millis(300));
    project.deploy();
    std::thread::sleep(Duration::from_millis(300));
    let result = load.finish();
    assert_eq!(
        result.failed, 0,
        "failed requests during the redeploy: {:?}",
        result.failures
    );
    assert!(
        result.ok > 20,
        "the client made too few requests: {result:?}"
    );
    assert_eq!(
        result.versions,
        vec!["1.0.0".to_owned(), "2.0.0".to_owned()]
    );
    assert_eq!(project.serving_version().as_deref(), Some("2.0.0"));
    // The old release's replicas are gone once the switch is done.
    assert!(eventually(Duration::from_secs(20), || project
        .containers(&[(LABEL_ROLE, "replica"), (LABEL_RELEASE, "1")])
        .is_empty()));

    // `rollback` goes back to release 1 (as a new release 3), under load, without a failure.
    let load = project.load();
    project.ok(&["rollback", "local"]);
    let result = load.finish();
    assert_eq!(
        result.failed, 0,
        "failed requests during the rollback: {:?}",
        result.failures
    );
    assert_eq!(project.serving_version().as_deref(), Some("1.0.0"));
    let releases = project.releases();
    assert_eq!(outcome_of(&releases, 3), "succeeded");
    assert_eq!(releases[0]["rollback_of"], 1);

    // `rollback --to 2` serves release 2's version again.
    let load = project.load();
    project.ok(&["rollback", "local", "--to", "2"]);
    let result = load.finish();
    assert_eq!(
        result.failed, 0,
        "failed requests during rollback --to: {:?}",
        result.failures
    );
    assert_eq!(project.serving_version().as_deref(), Some("2.0.0"));
    assert_eq!(project.releases()[0]["rollback_of"], 2);

    // A one-off task of the current release exits with its command's code.
    project
        .cli()
        .args(["run", "local", "--", "/app", "exit", "3"])
        .assert()
        .code(3);
    assert!(
        project.containers(&[(LABEL_ROLE, "task")]).is_empty(),
        "task container left"
    );

    // Logs merge the replicas, each line prefixed with service/replica.
    let logs = project.ok(&["logs", "local", "backend"]);
    assert!(
        logs.lines()
            .any(|l| l.contains("backend/") && l.contains("listening")),
        "{logs}"
    );
    assert!(!logs.contains("worker/"), "{logs}");
    let recent = project.ok(&["logs", "local", "--since", "1h"]);
    assert!(
        recent.contains("backend/") && recent.contains("worker/"),
        "{recent}"
    );

    // `--follow` keeps streaming new lines (the worker's heartbeats).
    let mut follow = project
        .std_cli(&["logs", "local", "worker", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn logs --follow");
    let stdout = follow.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.contains("worker/") && l.contains("heartbeat"))
            .take(3)
            .count()
    });
    let started = std::time::Instant::now();
    while !reader.is_finished() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    follow.kill().expect("stop logs --follow");
    follow.wait().expect("reap");
    assert_eq!(reader.join().expect("reader"), 3, "heartbeats followed");

    // Status shows every service with its replicas and the ingress URL.
    let status: serde_json::Value =
        serde_json::from_str(&project.ok(&["status", "local", "--json"])).expect("status JSON");
    assert_eq!(status["url"], format!("http://127.0.0.1:{}", project.port));
    let backend = &status["services"][0];
    assert_eq!(backend["service"], "backend");
    assert_eq!(backend["desired"], 2);
    assert_eq!(backend["healthy"], 2);
    assert_eq!(backend["current_release"], 4);
    assert!(
        backend["replicas"][0]["memory_bytes"]
            .as_u64()
            .is_some_and(|m| m > 0),
        "{backend}"
    );
}
