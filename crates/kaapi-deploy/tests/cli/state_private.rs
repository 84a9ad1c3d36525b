//! The state directory is private from the first byte when the CLI creates it (0700, its files
//! 0600, even under a permissive umask), and one owned by another user is refused.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::docker_support::Project;
use kaapi_agent::AgentClient;

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// kaapi-deploy ARGS under umask 000, so that nothing private comes from the umask.
fn run_with_open_umask(project: &Project, args: &[&str]) -> std::process::Output {
    let program = assert_cmd::cargo::cargo_bin("kaapi-deploy");
    Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$@\"")
        .arg("sh")
        .arg(program)
        .arg("--config")
        .arg(&project.config)
        .args(args)
        .env("KAAPI_STATE_DIR", &project.state_dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run kaapi-deploy")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_directory_the_cli_creates_is_private_from_the_start() {
    let project = Project::new("priv");
    assert!(!project.state_dir.exists());
    let output = run_with_open_umask(&project, &["releases", "local"]);
    assert!(
        output.status.success(),
        "releases failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(mode(&project.state_dir), 0o700);
    assert_eq!(mode(&project.state_dir.join("releases.db")), 0o600);

    let program = Path::new(env!("CARGO_BIN_EXE_kaapi-deploy"));
    let client = AgentClient::ensure_running(&project.state_dir, program)
        .await
        .expect("agent starts");
    for file in ["agent.json", "agent.log", "agent.lock"] {
        assert_eq!(mode(&project.state_dir.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&project.state_dir), 0o700);
    client.shutdown().await.expect("agent stops");
}

#[test]
fn a_state_directory_owned_by_another_user_is_refused() {
    let project = Project::new("foreign");
    std::fs::create_dir(&project.state_dir).expect("mkdir state");
    // The tests run as root, which may give the directory to `nobody`.
    std::os::unix::fs::chown(&project.state_dir, Some(65534), Some(65534))
        .expect("chown (the tests run as root)");
    let output = run_with_open_umask(&project, &["releases", "local"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "accepted: {stderr}");
    assert!(
        stderr.contains(&project.state_dir.display().to_string())
            && stderr.contains("uid 65534")
            && stderr.contains("KAAPI_STATE_DIR"),
        "{stderr}"
    );
    assert!(
        std::fs::read_dir(&project.state_dir)
            .expect("list state dir")
            .next()
            .is_none(),
        "something was written into another user's directory"
    );
    // Give it back so that the temporary directory can be cleaned up as usual.
    std::os::unix::fs::chown(&project.state_dir, Some(0), Some(0)).expect("chown back");
}
