//! `scale` on the real Docker Engine: replicas are added and removed under load without a
//! failed request and without touching the other services; the events are in the history; the
//! next deploy keeps the scaled count until deploy.toml changes it.

use std::collections::BTreeSet;

use std::time::Duration;

use crate::docker_support::{docker, eventually, Project, LABEL_APP, LABEL_ROLE};

/// IDs of the running replicas of `service`.
fn running(project: &Project, service: &str) -> BTreeSet<String> {
    docker(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label={LABEL_APP}={}", project.app),
        "--filter",
        &format!("label={LABEL_ROLE}=replica"),
        "--filter",
        &format!("label=dev.kaapi.service={service}"),
    ])
    .lines()
    .map(str::to_owned)
    .collect()
}

/// The running replicas of `service` once there are `count` of them: replaced or removed
/// replicas drain and stop after the command returns. Another count after 20 s fails the test.
fn running_settled(project: &Project, service: &str, count: usize) -> BTreeSet<String> {
    eventually(Duration::from_secs(20), || {
        running(project, service).len() == count
    });
    let now = running(project, service);
    assert_eq!(now.len(), count, "running replicas of {service}: {now:?}");
    now
}

/// Runs kaapi-deploy, asserting success; returns stdout and stderr together.
fn run(project: &Project, args: &[&str]) -> String {
    let output = project.cli().args(args).output().expect("run kaapi-deploy");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "kaapi-deploy {args:?} failed:\n{text}"
    );
    text
}

#[test]
fn scaling_adds_and_removes_replicas_under_load_and_deploys_keep_the_count() {
    let project = Project::new("scl");
    project.configure("scale-1", "");
    project.deploy();
    let worker = running(&project, "worker");
    let first = running(&project, "backend");
    assert_eq!((worker.len(), first.len()), (1, 2));

    let load = project.load();
    run(&project, &["scale", "local", "backend=3"]);
    let up = running_settled(&project, "backend", 3);
    run(&project, &["scale", "local", "backend=1"]);
    let down = running_settled(&project, "backend", 1);
    let result = load.finish();

    assert_eq!(up.len(), 3, "scaled up to 3");
    assert!(up.is_superset(&first), "the serving replicas were kept");
    assert_eq!(down.len(), 1, "scaled down to 1");
    assert!(down.is_subset(&up), "scaling down starts nothing");
    assert_eq!(
        running(&project, "worker"),
        worker,
        "the worker was untouched"
    );
    assert_eq!(result.failed, 0, "failed requests: {:?}", result.failures);
    assert!(result.ok > 20, "too little traffic: {}", result.ok);

    let releases = project.releases();
    assert_eq!(releases.len(), 1, "scaling makes no release");
    let events: Vec<(u64, u64)> = releases[0]["scaling_events"]
        .as_array()
        .expect("scaling events in releases --json")
        .iter()
        .filter(|e| e["service"] == "backend")
        .map(|e| {
            (
                e["from"].as_u64().unwrap_or(0),
                e["to"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(events, vec![(2, 3), (3, 1)]);

    // A new release keeps the scaled count while deploy.toml still says 2.
    project.configure("scale-2", "");
    project.deploy();
    running_settled(&project, "backend", 1);
    assert_eq!(project.serving_version().as_deref(), Some("scale-2"));

    // deploy.toml changes the count since the scale: the config wins, and the deploy says so.
    let text = std::fs::read_to_string(&project.config).expect("read deploy.toml");
    let changed = text.replacen("port = 8000\nreplicas = 2", "port = 8000\nreplicas = 3", 1);
    assert_ne!(text, changed, "the backend's replicas line moved");
    std::fs::write(&project.config, changed).expect("write deploy.toml");
    let output = run(&project, &["deploy", "local", "--force"]);
    assert!(output.contains("the config wins"), "{output}");
    running_settled(&project, "backend", 3);
}

#[test]
fn bad_scale_requests_are_refused_before_anything_changes() {
    let project = Project::new("scb");
    for (args, says) in [
        (vec!["scale", "local", "flower=2"], "backend, worker"),
        (vec!["scale", "local", "backend=many"], "not a number"),
        (vec!["scale", "local", "backend=0"], "web service"),
    ] {
        let output = project
            .cli()
            .args(&args)
            .output()
            .expect("run kaapi-deploy");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    // Nothing serves yet: the engine refuses, naming the first deploy.
    let output = project
        .cli()
        .args(["scale", "local", "worker=2"])
        .output()
        .expect("run kaapi-deploy");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("kaapi-deploy deploy local"), "{stderr}");
}

#[test]
fn deploying_one_service_leaves_the_others_running() {
    let project = Project::new("sds");
    project.configure("svc-1", "");
    let unknown = project
        .cli()
        .args(["deploy", "local", "--service", "flower"])
        .output()
        .expect("run kaapi-deploy");
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(unknown.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("services: backend, worker"), "{stderr}");
    let first = project
        .cli()
        .args(["deploy", "local", "--service", "backend"])
        .output()
        .expect("run kaapi-deploy");
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(!first.status.success(), "a first deploy with --service ran");
    assert!(stderr.contains("without --service"), "{stderr}");
    assert!(project.releases().is_empty(), "nothing was registered");

    project.deploy();
    let worker = running(&project, "worker");
    let backend = running(&project, "backend");
    project.configure("svc-2", "");
    run(&project, &["deploy", "local", "--service", "backend"]);

    assert_eq!(
        running(&project, "worker"),
        worker,
        "the worker was untouched"
    );
    let replaced = running_settled(&project, "backend", 2);
    assert!(replaced.is_disjoint(&backend), "the backend was replaced");
    assert_eq!(project.serving_version().as_deref(), Some("svc-2"));
    let releases = project.releases();
    let revision = |release: &serde_json::Value, service: &str| {
        release["revisions"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["service"] == service))
            .map(|r| r["revision"].clone())
            .expect("a revision per service")
    };
    assert_eq!(
        revision(&releases[0], "worker"),
        revision(&releases[1], "worker")
    );
    assert_ne!(
        revision(&releases[0], "backend"),
        revision(&releases[1], "backend")
    );
}
