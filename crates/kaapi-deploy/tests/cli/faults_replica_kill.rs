//! Fault suite: a web replica killed from outside (`docker kill`) while steady load goes
//! through the ingress. The agent must replace it, the replica count must converge to exactly
//! the desired number, and no request may fail: the ingress retries an idempotent request on
//! another replica when the connection to the dead one fails.

use std::time::{Duration, Instant};

use crate::docker_support::{docker, eventually, Project, LABEL_ROLE};

const SERVICE: &str = "dev.kaapi.service";

#[test]
fn replica_killed_under_load_is_replaced_without_a_failed_request() {
    let project = Project::new("frk");
    project.deploy();
    let web = |p: &Project| p.containers(&[(LABEL_ROLE, "replica"), (SERVICE, "backend")]);
    let before = web(&project);
    assert_eq!(before.len(), 2, "{before:?}");
    let victim = before[0].clone();

    let load = project.load();
    // Steady traffic on both replicas before the fault.
    std::thread::sleep(Duration::from_secs(2));
    docker(&["kill", &victim]);
    let killed_at = Instant::now();

    // Replaced: two running web replicas again, the victim not among them.
    let running = |p: &Project| -> Vec<String> {
        let ids = web(p);
        ids.into_iter()
            .filter(|id| docker(&["inspect", "-f", "{{.State.Running}}", id]).trim() == "true")
            .collect()
    };
    let replaced = eventually(Duration::from_secs(45), || {
        let ids = running(&project);
        ids.len() == 2 && !ids.iter().any(|id| victim.starts_with(id.as_str()))
    });
    let replaced_after = killed_at.elapsed();
    // Keep the load on the new replica set for a while.
    std::thread::sleep(Duration::from_secs(3));
    let result = load.finish();

    assert!(
        replaced,
        "not replaced within 45 s: running {:?}",
        running(&project)
    );
    assert!(
        result.ok > 500,
        "too little traffic to prove anything: {} ok",
        result.ok
    );
    assert_eq!(
        result.failed, 0,
        "{} of {} requests failed while a replica was killed and replaced ({replaced_after:?}): {:?}",
        result.failed,
        result.ok + result.failed,
        &result.failures[..result.failures.len().min(10)]
    );
    // Converged to the desired count, no duplicate: 2 web + 1 worker replicas, all running.
    assert!(
        eventually(Duration::from_secs(20), || {
            let replicas = project.containers(&[(LABEL_ROLE, "replica")]);
            replicas.len() == 3
                && replicas
                    .iter()
                    .all(|id| docker(&["inspect", "-f", "{{.State.Running}}", id]).trim() == "true")
        }),
        "replicas: {:?}",
        project.containers(&[(LABEL_ROLE, "replica")])
    );
    assert_eq!(project.serving_version().as_deref(), Some("1.0.0"));
}
