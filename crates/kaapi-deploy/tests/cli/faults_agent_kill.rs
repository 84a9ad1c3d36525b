//! Fault suite: the agent SIGKILLed or stopped, and the ingress process killed. The ingress runs
//! apart from the agent, so traffic never stops while the agent is down: the replicas keep
//! running, the ingress keeps serving its last table, and the next CLI command starts a new agent
//! that adopts both (no duplicate, no orphan, the same port, the history kept). A killed ingress
//! is noticed by the agent, which starts a new one on the same port.

use std::time::Duration;

use crate::docker_support::{
    agent_pid, eventually, ingress_pid, Project, LABEL_RELEASE, LABEL_ROLE,
};

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

fn kill(signal: &str, pid: u32) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid}");
    assert!(
        eventually(Duration::from_secs(10), || !alive(pid)),
        "{pid} survived kill {signal}"
    );
}

#[test]
fn agent_killed_under_load_loses_no_request_and_a_new_agent_adopts_everything() {
    let project = Project::new("fak");
    project.deploy();
    let replicas_before = sorted(project.containers(&[(LABEL_ROLE, "replica")]));
    assert_eq!(replicas_before.len(), 3, "{replicas_before:?}");
    let releases_before = project.releases();
    let pid = agent_pid(&project.state_dir).expect("agent.json names the agent's pid");
    let ingress = ingress_pid(&project.state_dir).expect("ingress.json names the ingress");
    assert_ne!(pid, ingress, "the ingress is a process of its own");
    let load = project.load();

    kill("-KILL", pid);
    // Without the agent the ingress keeps serving its last table.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(project.serving_version().as_deref(), Some("1.0.0"));
    assert!(alive(ingress), "the ingress died with its agent");
    assert_eq!(
        sorted(project.containers(&[(LABEL_ROLE, "replica")])),
        replicas_before
    );

    // `agent run` brings the agent back (so do a deploy, below, and `status`: next test).
    let mut agent = project
        .std_cli(&["agent", "run", "--state-dir"])
        .arg(&project.state_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start `agent run`");
    let back = eventually(Duration::from_secs(20), || {
        agent_pid(&project.state_dir) == Some(agent.id())
    });
    if !back {
        let _ = agent.kill();
        let _ = agent.wait();
        panic!("the new agent did not write agent.json");
    }
    // Adopted, not duplicated: the very same containers and ingress, and nothing else.
    std::thread::sleep(Duration::from_secs(3));
    let replicas_after = sorted(project.containers(&[(LABEL_ROLE, "replica")]));
    let releases_after = project.releases();
    let ingress_after = ingress_pid(&project.state_dir);
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(
        replicas_after, replicas_before,
        "the restarted agent created or removed replicas"
    );
    assert_eq!(releases_after, releases_before, "release history changed");
    assert_eq!(
        ingress_after,
        Some(ingress),
        "the new agent adopts the ingress"
    );

    // Killed again (SIGKILL above); the next deploy starts an agent itself and rolls over the
    // adopted replicas, still under the same load.
    project.configure("2.0.0", "");
    project.deploy();
    assert_eq!(project.serving_version().as_deref(), Some("2.0.0"));
    let result = load.finish();
    if result.failed > 0 {
        for log in ["agent.log", "ingress.log"] {
            eprintln!(
                "==== {log}\n{}",
                std::fs::read_to_string(project.state_dir.join(log)).unwrap_or_default()
            );
        }
    }
    assert!(result.ok > 0, "no request was answered");
    assert_eq!(
        result.failed,
        0,
        "requests failed across the agent's death and restarts: {:?}",
        result.failures.iter().take(5).collect::<Vec<_>>()
    );
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
fn status_after_an_agent_crash_or_stop_starts_it_again_and_no_request_fails() {
    let project = Project::new("fas");
    project.deploy();
    let replicas_before = sorted(project.containers(&[(LABEL_ROLE, "replica")]));
    let ingress = ingress_pid(&project.state_dir).expect("ingress.json names the ingress");
    let load = project.load();

    for stop in ["crash", "agent stop"] {
        let pid = agent_pid(&project.state_dir).expect("agent.json names the agent's pid");
        if stop == "crash" {
            kill("-KILL", pid);
        } else {
            let out = project.ok(&["agent", "stop"]);
            assert!(out.contains("the ingress keeps serving"), "{out}");
            assert!(!alive(pid), "agent {pid} still runs after `agent stop`");
            let status = project.ok(&["agent", "status"]);
            assert!(
                status.contains("no agent runs")
                    && status.contains(&format!("ingress runs: pid {ingress}")),
                "{status}"
            );
        }
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            project.serving_version().as_deref(),
            Some("1.0.0"),
            "after {stop}"
        );
        // A listener no environment has (as an unfinished rollout may leave): the next agent
        // closes it.
        let stray = open_stray_listener(&project.state_dir);
        assert!(std::net::TcpStream::connect(("127.0.0.1", stray)).is_ok());

        // Looking at the environment is enough to bring its agent back, like a control plane.
        let status = project.ok(&["status", "local", "--json"]);
        assert!(status.contains("\"environment\""), "{status}");
        assert!(
            eventually(Duration::from_secs(5), || std::net::TcpStream::connect((
                "127.0.0.1",
                stray
            ))
            .is_err()),
            "the stray listener on {stray} is still open after {stop}"
        );
        let new_pid = agent_pid(&project.state_dir).expect("agent.json names the new agent");
        assert_ne!(new_pid, pid, "a new agent runs after {stop}");
        assert!(alive(new_pid), "agent {new_pid} should run");
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            sorted(project.containers(&[(LABEL_ROLE, "replica")])),
            replicas_before,
            "the restarted agent adopts the replicas, no duplicates or orphans"
        );
        assert_eq!(
            ingress_pid(&project.state_dir),
            Some(ingress),
            "after {stop}"
        );
    }
    let result = load.finish();
    assert!(result.ok > 0, "no request was answered");
    assert_eq!(
        result.failed,
        0,
        "requests failed across the agent's crash and stop: {:?}",
        result.failures.iter().take(5).collect::<Vec<_>>()
    );
}

/// Asks the running ingress, over its control socket, for a listener on a free port.
fn open_stray_listener(state_dir: &std::path::Path) -> u16 {
    use std::io::{BufRead, Write};
    let mut socket = std::os::unix::net::UnixStream::connect(state_dir.join("ingress.sock"))
        .expect("the ingress' control socket");
    socket
        .write_all(b"{\"op\":\"put\",\"port\":0,\"label\":\"gone/web\",\"backends\":[]}\n")
        .expect("send put");
    let mut answer = String::new();
    std::io::BufReader::new(socket)
        .read_line(&mut answer)
        .expect("read answer");
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("JSON answer");
    answer["port"]["port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| panic!("no port in {answer}"))
}

#[test]
fn a_killed_ingress_is_replaced_by_the_agent_and_serves_again() {
    let project = Project::new("fik");
    project.deploy();
    let ingress = ingress_pid(&project.state_dir).expect("ingress.json names the ingress");
    let agent = agent_pid(&project.state_dir).expect("agent.json names the agent");

    kill("-KILL", ingress);
    assert!(
        eventually(Duration::from_secs(15), || {
            ingress_pid(&project.state_dir).is_some_and(|pid| pid != ingress && alive(pid))
                && project.serving_version().as_deref() == Some("1.0.0")
        }),
        "no new ingress serves on 127.0.0.1:{} (ingress.json: {:?})",
        project.port,
        ingress_pid(&project.state_dir)
    );
    assert_eq!(
        agent_pid(&project.state_dir),
        Some(agent),
        "the agent kept running"
    );
    let new = ingress_pid(&project.state_dir).expect("the new ingress");
    let log = std::fs::read_to_string(project.state_dir.join("agent.log")).expect("agent.log");
    assert!(
        log.contains(&format!("agent: ingress runs (pid {new})")),
        "{log}"
    );

    // And it follows the next switch.
    project.configure("2.0.0", "");
    project.deploy();
    assert_eq!(project.serving_version().as_deref(), Some("2.0.0"));
}

/// Sends `signal` to `pid` without waiting for anything.
fn send(signal: &str, pid: u32) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid}");
}

/// A process this test stopped with SIGSTOP: resumed and killed at the end of the test, even
/// when it fails (unless the agent already ended it).
struct Stopped(u32);

impl Drop for Stopped {
    fn drop(&mut self) {
        if alive(self.0) {
            let _ = std::process::Command::new("kill")
                .args(["-CONT", &self.0.to_string()])
                .status();
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
}

#[test]
fn a_hung_ingress_is_killed_and_replaced_by_the_agent_under_load() {
    let project = Project::new("fih");
    // An image of its own: a parallel test's cleanup never removes it under this one's feet.
    project.configure("hang-1", "");
    project.deploy();
    let ingress = ingress_pid(&project.state_dir).expect("ingress.json names the ingress");
    let agent = agent_pid(&project.state_dir).expect("agent.json names the agent");
    let load = project.load();
    assert!(
        eventually(Duration::from_secs(5), || load
            .ok
            .load(std::sync::atomic::Ordering::SeqCst)
            > 20),
        "no steady load through 127.0.0.1:{}",
        project.port
    );

    // Alive but silent: it takes connections (the kernel queues them) and answers nothing.
    send("-STOP", ingress);
    let stopped = Stopped(ingress);
    let hung = std::time::Instant::now();
    let replaced = eventually(Duration::from_secs(20), || {
        ingress_pid(&project.state_dir).is_some_and(|pid| pid != ingress && alive(pid))
            && project.serving_version().as_deref() == Some("hang-1")
    });
    let took = hung.elapsed();
    assert!(
        replaced,
        "no new ingress serves on 127.0.0.1:{} within 20 s of the hang (ingress.json: {:?})",
        project.port,
        ingress_pid(&project.state_dir)
    );
    assert!(
        took < Duration::from_secs(10),
        "the hung ingress was replaced only after {took:?}"
    );
    assert!(!alive(ingress), "the hung ingress {ingress} still runs");
    let new = ingress_pid(&project.state_dir).expect("the new ingress");
    // The load goes on through the new ingress.
    let answered = load.ok.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(5), || load
            .ok
            .load(std::sync::atomic::Ordering::SeqCst)
            > answered + 20),
        "the load is not served again after the replacement"
    );
    let result = load.finish();
    eprintln!(
        "hung ingress replaced after {:.1} s; requests: {} answered, {} failed during the hang (first: {:?})",
        took.as_secs_f64(),
        result.ok,
        result.failed,
        result.failures.iter().take(3).collect::<Vec<_>>()
    );
    drop(stopped);
    assert_eq!(
        agent_pid(&project.state_dir),
        Some(agent),
        "the agent kept running"
    );
    let log = std::fs::read_to_string(project.state_dir.join("agent.log")).expect("agent.log");
    assert!(
        log.contains(&format!(
            "the ingress process (pid {ingress}) stopped answering"
        )) && log.contains(&format!("agent: ingress runs (pid {new})")),
        "{log}"
    );
    let status = project.ok(&["status", "local", "--json"]);
    assert!(
        status.contains(&format!(
            "the ingress process (pid {ingress}) stopped answering"
        )),
        "status shows the replacement: {status}"
    );
}
