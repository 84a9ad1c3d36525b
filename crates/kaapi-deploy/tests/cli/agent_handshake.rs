//! The CLI proves it talks to its agent before sending anything: a stale agent.json whose port
//! is now held by another process gets a nonce, never the token, and a fresh agent is started.
//! The agent also stops cleanly on SIGINT.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kaapi_agent::AgentClient;

const STALE_TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// A listener that records every byte it receives and answers every request as a healthy agent
/// would have before the handshake (and with a made-up proof).
fn impostor() -> (u16, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind impostor");
    let port = listener.local_addr().expect("address").port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let _ = stream.set_read_timeout(Some(Duration::from_millis(300)));
            let mut buffer = [0u8; 4096];
            let mut request = Vec::new();
            while let Ok(n) = stream.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..n]);
            }
            record.lock().expect("record").extend_from_slice(&request);
            let body = format!(
                r#"{{"status":"ok","version":"{}","proof":"{}"}}"#,
                env!("CARGO_PKG_VERSION"),
                "ab".repeat(32)
            );
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_on_a_stale_agent_port_gets_no_secret_and_a_fresh_agent_starts() {
    let state = tempfile::tempdir().expect("temp dir");
    let dir = state.path().join("state");
    kaapi_agent::private::ensure_dir(&dir).expect("state dir");
    let (port, received) = impostor();
    // This test's own pid: alive, and not an agent, so it must not be signalled either.
    std::fs::write(
        dir.join("agent.json"),
        format!(
            r#"{{"pid":{},"port":{port},"token":"{STALE_TOKEN}","version":"{}"}}"#,
            std::process::id(),
            env!("CARGO_PKG_VERSION")
        ),
    )
    .expect("write stale agent.json");

    assert!(
        AgentClient::connect(&dir)
            .await
            .expect("read agent.json")
            .is_none(),
        "the impostor was taken for the agent"
    );
    let program = Path::new(env!("CARGO_BIN_EXE_kaapi-deploy"));
    let client = AgentClient::ensure_running(&dir, program)
        .await
        .expect("a fresh agent starts");
    let endpoint = client.endpoint().clone();
    assert_ne!(endpoint.port, port);
    assert_ne!(endpoint.pid, std::process::id());
    client.health().await.expect("the fresh agent answers");

    let seen = String::from_utf8_lossy(&received.lock().expect("record")).into_owned();
    assert!(
        seen.contains("POST /v1/handshake"),
        "the impostor was never challenged: {seen}"
    );
    assert!(
        !seen.contains(STALE_TOKEN),
        "the stale token was sent: {seen}"
    );
    assert!(
        !seen.contains(&endpoint.token),
        "the fresh token was sent: {seen}"
    );
    assert!(
        !seen.to_ascii_lowercase().contains("authorization"),
        "{seen}"
    );

    // Ctrl-C (SIGINT) stops it as cleanly as SIGTERM.
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &endpoint.pid.to_string()])
        .status()
        .expect("run kill");
    assert!(interrupted.success());
    let begun = Instant::now();
    while dir.join("agent.json").exists() && begun.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !dir.join("agent.json").exists(),
        "agent.json left after SIGINT"
    );
    let log = std::fs::read_to_string(dir.join("agent.log")).expect("agent.log");
    assert!(log.contains("SIGINT received"), "{log}");
}

/// `agent status`'s line for the running agent.
fn agent_status(project: &crate::docker_support::Project) -> String {
    project.ok(&["agent", "status"])
}

#[test]
fn a_deploy_restarts_an_agent_of_another_version_and_succeeds() {
    use crate::docker_support::{agent_pid, ingress_pid, Project, LABEL_ROLE};

    let project = Project::new("aver");
    let first = format!("1.0.0-{}", project.app);
    project.configure(&first, "");
    // The agent this deploy starts inherits the variable and reports the other version.
    let output = project
        .cli()
        .env("KAAPI_AGENT_TEST_VERSION", "0.0.1-old")
        .args(["deploy", "local"])
        .output()
        .expect("run deploy");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        agent_status(&project).contains("version 0.0.1-old"),
        "{}",
        agent_status(&project)
    );
    let old_pid = agent_pid(&project.state_dir).expect("the old agent's pid");
    let old_ingress = ingress_pid(&project.state_dir).expect("the ingress' pid");
    let old_replicas = project.containers(&[(LABEL_ROLE, "replica")]);
    assert_eq!(old_replicas.len(), 3, "{old_replicas:?}");

    let second = format!("2.0.0-{}", project.app);
    project.configure(&second, "");
    let load = project.load();
    let output = project
        .cli()
        .env_remove("KAAPI_AGENT_TEST_VERSION")
        .args(["deploy", "local"])
        .output()
        .expect("run deploy");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let result = load.finish();
    assert!(
        stderr.contains(&format!(
            "restarting the agent: it runs version 0.0.1-old, this is {}",
            env!("CARGO_PKG_VERSION")
        )),
        "{stderr}"
    );
    let new_pid = agent_pid(&project.state_dir).expect("the new agent's pid");
    assert_ne!(new_pid, old_pid);
    // Gone, once its parent (init, after the CLI that started it exited) has reaped it.
    assert!(
        crate::docker_support::eventually(Duration::from_secs(5), || !Path::new(&format!(
            "/proc/{old_pid}"
        ))
        .exists()),
        "the old agent still runs"
    );
    assert!(
        agent_status(&project).contains(&format!("version {}", env!("CARGO_PKG_VERSION"))),
        "{}",
        agent_status(&project)
    );
    assert_eq!(project.serving_version(), Some(second));
    // The ingress runs apart from the agent (and speaks its own protocol version, unchanged
    // here): it keeps serving through the agent's restart, and the new agent adopts it and the
    // replicas until the rollout replaces them.
    eprintln!(
        "through the agent restart and rollout: {} requests answered, {} failed",
        result.ok, result.failed
    );
    assert!(result.ok > 0, "no request was answered");
    assert_eq!(
        result.failed,
        0,
        "requests failed across the agent restart: {:?}",
        result.failures.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(
        ingress_pid(&project.state_dir),
        Some(old_ingress),
        "the new agent adopts the running ingress"
    );
    // The replaced replicas drain and stop after the deploy has switched.
    let replaced = crate::docker_support::eventually(Duration::from_secs(20), || {
        project.containers(&[(LABEL_ROLE, "replica")]).len() == 3
    });
    let replicas = project.containers(&[(LABEL_ROLE, "replica")]);
    assert!(replaced, "{replicas:?}");
    assert!(
        replicas.iter().all(|id| !old_replicas.contains(id)),
        "the rollout replaced every replica"
    );
}
