//! The deploy lock and interrupted deploys on the real Docker Engine.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::docker_support::{eventually, Project, LABEL_RELEASE, LABEL_ROLE};

#[test]
fn of_two_concurrent_deploys_exactly_one_proceeds_and_the_other_names_the_holder() {
    let project = Project::new("lck");
    let spawn = || {
        project
            .std_cli(&["deploy", "local"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn deploy")
    };
    let (first, second) = (spawn(), spawn());
    let started = Instant::now();
    let outputs = [first, second].map(|child| {
        let output = child.wait_with_output().expect("wait");
        (output, started.elapsed())
    });
    let winners: Vec<_> = outputs.iter().filter(|(o, _)| o.status.success()).collect();
    let losers: Vec<_> = outputs
        .iter()
        .filter(|(o, _)| !o.status.success())
        .collect();
    assert_eq!(winners.len(), 1, "exactly one deploy succeeds: {outputs:?}");
    assert_eq!(losers.len(), 1);
    let (loser, _) = losers[0];
    let stderr = String::from_utf8_lossy(&loser.stderr);
    assert_eq!(loser.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is locked by"), "{stderr}");
    assert!(stderr.contains("(pid "), "the holder is named: {stderr}");
    assert!(stderr.contains("since"), "{stderr}");
    // One release only: the loser never got as far as registering one.
    assert_eq!(project.releases().len(), 1);
    assert_eq!(project.serving_version().as_deref(), Some("1.0.0"));
}

#[test]
fn a_deploy_killed_mid_rollout_leaves_nothing_that_stops_the_next_one() {
    let project = Project::new("kil");
    project.deploy();

    project.configure("2.0.0", "");
    let mut child = project
        .std_cli(&["deploy", "local"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn deploy");
    let stderr = child.stderr.take().expect("stderr");
    let mut seen = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("line");
        // The agent's own progress: its rollout of release 2 has started replicas.
        let mid_rollout = line.contains("backend: started");
        seen.push(line);
        if mid_rollout {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("backend: started")),
        "{seen:?}"
    );
    // SIGKILL: no handler runs, the lock row and the release stay behind.
    child.kill().expect("SIGKILL the deploy");
    child.wait().expect("reap");

    project.configure("3.0.0", "");
    let output = project
        .cli()
        .args(["deploy", "local"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("taking over the deploy lock"), "{stderr}");
    assert_eq!(project.serving_version().as_deref(), Some("3.0.0"));
    let releases = project.releases();
    let outcome = |n: u64| {
        releases
            .iter()
            .find(|r| r["number"] == n)
            .and_then(|r| r["outcome"].as_str())
            .unwrap_or("missing")
            .to_owned()
    };
    // The agent may have finished release 2's rollout after its deploy was killed: the history
    // then says it succeeded (it served), else that it was interrupted.
    let detail_2 = releases
        .iter()
        .find(|r| r["number"] == 2)
        .and_then(|r| r["detail"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(
        outcome(2) == "interrupted"
            || (outcome(2) == "succeeded" && detail_2.contains("the agent finished the rollout")),
        "release 2: {} ({detail_2})",
        outcome(2)
    );
    assert_eq!(outcome(3), "succeeded");
    // No orphans: only release 3's replicas remain, as many as desired.
    assert!(
        eventually(Duration::from_secs(30), || {
            let all = project.containers(&[(LABEL_ROLE, "replica")]);
            let current = project.containers(&[(LABEL_ROLE, "replica"), (LABEL_RELEASE, "3")]);
            all.len() == 3 && current.len() == 3
        }),
        "replicas left: {:?}",
        project.containers(&[(LABEL_ROLE, "replica")])
    );
    assert!(project.containers(&[(LABEL_ROLE, "task")]).is_empty());
}
