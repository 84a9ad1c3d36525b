//! Fault suite: the agent (which keeps replicas alive and serves the ingress) SIGKILLed. The
//! replicas keep running without it; the next CLI command starts a new agent, which must
//! adopt them (no duplicate, no orphan), serve the ingress on the same port again, and keep
//! the release history; a deploy afterwards must work as before.

use std::time::Duration;

use crate::docker_support::{agent_pid, eventually, http_get, Project, LABEL_RELEASE, LABEL_ROLE};

fn alive(pid: u32) -> bool {
    // A zombie (state Z) is dead for our purposes.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_owned))
        })
        .is_some_and(|state| state != "Z" && state != "X")
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[test]
fn agent_killed_and_restarted_adopts_replicas_and_serves_on_the_same_port() {
    let project = Project::new("fak");
    project.deploy();
    let replicas_before = sorted(project.containers(&[(LABEL_ROLE, "replica")]));
    assert_eq!(replicas_before.len(), 3, "{replicas_before:?}");
    let releases_before = project.releases();
    let pid = agent_pid(&project.state_dir).expect("agent.json names the agent's pid");
    assert!(alive(pid), "agent {pid} should run");

    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -KILL {pid}");
    assert!(
        eventually(Duration::from_secs(10), || !alive(pid)),
        "agent {pid} survived SIGKILL"
    );
    // Without the agent nothing listens on the ingress port (it lived in the agent).
    assert!(
        eventually(Duration::from_secs(5), || http_get(
            project.port,
            "/version"
        )
        .is_err()),
        "the ingress still answers with its agent dead"
    );
    // The replicas themselves are untouched.
    assert_eq!(
        sorted(project.containers(&[(LABEL_ROLE, "replica")])),
        replicas_before
    );

    // `agent run` brings it back (so do a deploy, below, and `status`: see the next test).
    let mut agent = project
        .std_cli(&["agent", "run", "--state-dir"])
        .arg(&project.state_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start `agent run`");
    let back = eventually(Duration::from_secs(20), || {
        project.serving_version().as_deref() == Some("1.0.0")
    });
    let new_pid = agent_pid(&project.state_dir);
    if !back {
        let _ = agent.kill();
        let _ = agent.wait();
        panic!(
            "the ingress did not come back on 127.0.0.1:{} (agent.json pid {new_pid:?})",
            project.port
        );
    }
    assert_eq!(new_pid, Some(agent.id()), "agent.json names the new agent");
    // Adopted, not duplicated: the very same containers, and nothing else.
    std::thread::sleep(Duration::from_secs(3));
    let replicas_after = sorted(project.containers(&[(LABEL_ROLE, "replica")]));
    let releases_after = project.releases();
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(
        replicas_after, replicas_before,
        "the restarted agent created or removed replicas"
    );
    assert_eq!(releases_after, releases_before, "release history changed");

    // Killed again (SIGKILL above); the next deploy starts an agent itself and rolls over the
    // adopted replicas.
    project.configure("2.0.0", "");
    project.deploy();
    assert_eq!(project.serving_version().as_deref(), Some("2.0.0"));
    assert!(
        eventually(Duration::from_secs(30), || {
            let all = project.containers(&[(LABEL_ROLE, "replica")]);
            let current = project.containers(&[(LABEL_ROLE, "replica"), (LABEL_RELEASE, "2")]);
            all.len() == 3 && current.len() == 3
        }),
        "replicas after the deploy: {:?}",
        project.containers(&[(LABEL_ROLE, "replica")])
    );
}

#[test]
fn status_after_an_agent_crash_starts_it_again_and_the_ingress_comes_back() {
    let project = Project::new("fas");
    project.deploy();
    let replicas_before = sorted(project.containers(&[(LABEL_ROLE, "replica")]));
    let pid = agent_pid(&project.state_dir).expect("agent.json names the agent's pid");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success(), "kill -KILL {pid}");
    assert!(
        eventually(Duration::from_secs(10), || !alive(pid)),
        "agent {pid} still alive"
    );
    assert!(
        eventually(Duration::from_secs(10), || project
            .serving_version()
            .is_none()),
        "the ingress still answers with its agent dead"
    );

    // Looking at the environment is enough to bring its agent back, like a control plane.
    let status = project.ok(&["status", "local", "--json"]);
    assert!(status.contains("\"environment\""), "{status}");
    assert!(
        eventually(Duration::from_secs(20), || {
            project.serving_version().as_deref() == Some("1.0.0")
        }),
        "the ingress did not come back on 127.0.0.1:{}",
        project.port
    );
    let new_pid = agent_pid(&project.state_dir).expect("agent.json names the new agent");
    assert_ne!(new_pid, pid, "a new agent runs");
    assert!(alive(new_pid), "agent {new_pid} should run");
    assert_eq!(
        sorted(project.containers(&[(LABEL_ROLE, "replica")])),
        replicas_before,
        "the restarted agent adopts the replicas, no duplicates or orphans"
    );
}
