//! `kaapi-deploy agent …` and the client's on-demand start of a detached agent process
//! (needs the Docker Engine: the agent connects to it on start).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use assert_cmd::Command;
use kaapi_agent::AgentClient;

fn agent_cli(state_dir: &Path, action: &str) -> String {
    let output = Command::cargo_bin("kaapi-deploy")
        .expect("binary")
        .args(["agent", action])
        .env("KAAPI_STATE_DIR", state_dir)
        .timeout(Duration::from_secs(20))
        .output()
        .expect("run kaapi-deploy");
    assert!(
        output.status.success(),
        "agent {action} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_starts_on_demand_detached_and_stops_on_request() {
    let state = tempfile::tempdir().expect("temp dir");
    let dir = state.path().join("state");
    assert!(agent_cli(&dir, "status").contains("no agent runs"));

    let program = Path::new(env!("CARGO_BIN_EXE_kaapi-deploy"));
    let client = AgentClient::ensure_running(&dir, program)
        .await
        .expect("agent starts");
    let pid = client.endpoint().pid;
    assert_ne!(pid, std::process::id(), "the agent must be its own process");
    let mode = std::fs::metadata(dir.join("agent.json"))
        .expect("agent.json")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "agent.json holds the token");

    // A second caller finds the running agent instead of starting another.
    let again = AgentClient::ensure_running(&dir, program)
        .await
        .expect("agent found");
    assert_eq!(again.endpoint().pid, pid);
    assert!(agent_cli(&dir, "status").contains(&format!("agent runs: pid {pid}")));

    assert!(agent_cli(&dir, "stop").contains(&format!("agent stopped (pid {pid})")));
    assert!(AgentClient::connect(&dir).await.expect("read").is_none());
    assert!(!dir.join("agent.json").exists(), "agent.json left behind");
    let log = std::fs::read_to_string(dir.join("agent.log")).expect("agent.log");
    assert!(log.contains("agent: stopped"), "{log}");

    // A stale agent.json (its agent gone) does not prevent a new start.
    std::fs::write(
        dir.join("agent.json"),
        format!(r#"{{"pid":{pid},"port":1,"token":"x","version":"0"}}"#),
    )
    .expect("write stale agent.json");
    let fresh = AgentClient::ensure_running(&dir, program)
        .await
        .expect("agent restarts");
    let pid = fresh.endpoint().pid;
    assert_ne!(pid, again.endpoint().pid);

    // SIGTERM stops it cleanly too.
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let begun = std::time::Instant::now();
    while dir.join("agent.json").exists() && begun.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !dir.join("agent.json").exists(),
        "agent.json left after SIGTERM"
    );
    assert!(AgentClient::connect(&dir).await.expect("read").is_none());
    let log = std::fs::read_to_string(dir.join("agent.log")).expect("agent.log");
    assert!(log.contains("SIGTERM received"), "{log}");
}
