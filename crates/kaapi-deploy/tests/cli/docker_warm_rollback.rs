//! `rollback` within `keep_warm` of the deploy it undoes: the old release's web containers,
//! kept warm out of rotation, serve again (no new web container) under load without a failed
//! request; its worker was stopped and starts anew.

use std::time::{Duration, Instant};

use crate::docker_support::{eventually, Project, LABEL_RELEASE};

const LABEL_SERVICE: &str = "dev.kaapi.service";

/// The project's containers of `service` labelled with `release`, sorted.
fn of(project: &Project, service: &str, release: &str) -> Vec<String> {
    let mut ids = project.containers(&[(LABEL_SERVICE, service), (LABEL_RELEASE, release)]);
    ids.sort();
    ids
}

#[test]
fn rollback_in_the_window_switches_back_to_the_old_web_containers() {
    let mut project = Project::new("warm");
    project.keep_warm = "1m".to_owned();
    project.configure("1.0.0", "");
    project.deploy();
    let v1_web = of(&project, "backend", "1");
    assert_eq!(v1_web.len(), 2);

    project.configure("2.0.0", "");
    project.deploy();
    assert_eq!(project.serving_version().as_deref(), Some("2.0.0"));
    // Release 1's web replicas stay, out of rotation; its worker does not.
    assert_eq!(of(&project, "backend", "1"), v1_web);
    // (it drains and stops once the deploy has switched)
    assert!(
        eventually(Duration::from_secs(20), || of(&project, "worker", "1")
            .is_empty()),
        "release 1's worker still runs"
    );
    let status = project.ok(&["status", "local"]);
    assert!(status.contains("warm"), "{status}");

    let load = project.load();
    std::thread::sleep(Duration::from_millis(300));
    let begun = Instant::now();
    let report = project.ok(&["rollback", "local", "--to", "1", "--json"]);
    let took = begun.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let result = load.finish();
    eprintln!("rollback took {took:?}: {report}");
    assert_eq!(result.failed, 0, "failed requests: {:?}", result.failures);
    assert_eq!(
        result.versions,
        vec!["2.0.0".to_owned(), "1.0.0".to_owned()]
    );
    assert_eq!(project.serving_version().as_deref(), Some("1.0.0"));
    // The same web containers serve release 3 (a copy of 1); no web container of release 3.
    assert_eq!(of(&project, "backend", "1"), v1_web);
    assert!(of(&project, "backend", "3").is_empty());
    assert_eq!(of(&project, "worker", "3").len(), 1);
    let report: serde_json::Value = serde_json::from_str(&report).expect("rollback --json");
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
}
