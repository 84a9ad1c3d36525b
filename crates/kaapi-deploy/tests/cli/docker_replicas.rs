//! The agent keeps the desired replicas: one killed from outside is replaced, and `status`
//! shows the event.

use std::time::Duration;

use crate::docker_support::{docker, eventually, Project, LABEL_ROLE};

#[test]
fn a_replica_killed_from_outside_is_replaced_and_status_shows_it() {
    let project = Project::new("rep");
    project.deploy();
    let victim = project
        .containers(&[(LABEL_ROLE, "replica"), ("dev.kaapi.service", "backend")])
        .into_iter()
        .next()
        .expect("a backend replica");
    let load = project.load();
    docker(&["kill", &victim]);

    let status = || -> serde_json::Value {
        serde_json::from_str(&project.ok(&["status", "local", "--json"])).expect("status JSON")
    };
    let replaced = eventually(Duration::from_secs(30), || {
        let status = status();
        let backend = &status["services"][0];
        let ids: Vec<String> = backend["replicas"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|x| x["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        backend["healthy"] == 2 && !ids.iter().any(|id| id.ends_with(&victim[..12]))
    });
    let result = load.finish();
    let status = status();
    assert!(replaced, "the killed replica was not replaced: {status:#}");
    let events: Vec<String> = status["services"][0]["events"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|x| x["message"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        events.iter().any(|e| e.contains("replaced by")),
        "status shows the replacement: {events:?}"
    );
    // The other replica kept serving while this one was replaced.
    assert!(result.ok > 0);
    assert_eq!(project.serving_version().as_deref(), Some("1.0.0"));
}
