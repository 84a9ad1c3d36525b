//! Fault suite: the CLI SIGKILLed in each pipeline phase (build, migrate, rollout, verify).
//! No handler runs, so the lock row and an unfinished release stay behind. The next deploy
//! must take the stale lock over and succeed, the history must say what happened to the
//! killed release (never `succeeded` unless the kill came after it was recorded), and the
//! environment must converge: only the new release's replicas, no one-off task left.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::Duration;

use crate::docker_support::{eventually, Project, LABEL_RELEASE, LABEL_ROLE};

/// What the killed CLI printed, and the release it had registered (if it got that far).
struct Killed {
    stderr: String,
}

/// Starts `deploy local`, SIGKILLs it as soon as it prints `==> {phase}`, reaps it.
fn deploy_killed_in(project: &Project, phase: &str) -> Killed {
    let mut child = project
        .std_cli(&["deploy", "local"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn deploy");
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut reader = BufReader::new(stderr);
    let mut seen = String::new();
    let marker = format!("==> {phase}");
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .expect("read the deploy's stderr");
        if n == 0 {
            let status = child.wait().expect("reap");
            panic!("deploy ended ({status}) before reaching `{marker}`:\n{seen}");
        }
        seen.push_str(&line);
        if line.contains(&marker) {
            break;
        }
    }
    // SIGKILL: the process gets no chance to release the lock or record anything.
    child.kill().expect("SIGKILL the deploy");
    // Reaped, so its pid is really gone when the next deploy checks the lock's owner.
    child.wait().expect("reap the killed deploy");
    // Whatever it wrote before dying tells how far it got.
    let mut rest = String::new();
    let _ = reader.read_to_string(&mut rest);
    seen.push_str(&rest);
    Killed { stderr: seen }
}

fn outcome(releases: &[serde_json::Value], number: u64) -> Option<String> {
    releases
        .iter()
        .find(|r| r["number"] == number)
        .and_then(|r| r["outcome"].as_str())
        .map(str::to_owned)
}

fn killed_in(phase: &str) {
    let project = Project::new(&format!("k{}", &phase[..3]));
    project.deploy();
    let before = project.releases();
    assert_eq!(before.len(), 1, "{before:?}");

    project.configure("2.0.0", "");
    let killed = deploy_killed_in(&project, phase);

    // The old release still serves: nothing switched before the kill, or the switch was
    // complete (ingress switches only to healthy replicas).
    let serving = project.serving_version();
    assert!(
        matches!(serving.as_deref(), Some("1.0.0") | Some("2.0.0")),
        "after the kill nothing serves properly: {serving:?}"
    );

    project.configure("3.0.0", "");
    let output = project
        .cli()
        .args(["deploy", "local"])
        .output()
        .expect("run the next deploy");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the deploy after a kill in {phase} failed:\n{stderr}\nkilled deploy printed:\n{}",
        killed.stderr
    );
    assert!(
        stderr.contains("taking over the deploy lock"),
        "the stale lock was not reported as taken over:\n{stderr}"
    );
    assert_eq!(project.serving_version().as_deref(), Some("3.0.0"));

    let releases = project.releases();
    let newest = releases
        .iter()
        .filter_map(|r| r["number"].as_u64())
        .max()
        .expect("a release");
    assert_eq!(outcome(&releases, newest).as_deref(), Some("succeeded"));
    assert_eq!(outcome(&releases, 1).as_deref(), Some("succeeded"));
    // The killed deploy registers its release after the build: a kill during the build
    // leaves none, a later kill leaves one that must not claim success.
    if phase == "build" {
        assert_eq!(releases.len(), 2, "{releases:#?}");
    } else {
        assert_eq!(releases.len(), 3, "{releases:#?}");
        let killed_outcome = outcome(&releases, 2).expect("release 2 exists");
        // Only a kill that landed after verification finished may leave `succeeded` (the
        // pipeline records right after); its stderr shows whether it got that far.
        let verified = killed.stderr.contains("verify ok");
        if verified {
            assert!(
                matches!(killed_outcome.as_str(), "succeeded" | "interrupted"),
                "{killed_outcome}"
            );
        } else {
            // Success only when the agent finished its rollout after the kill (it served).
            let detail = releases
                .iter()
                .find(|r| r["number"] == 2)
                .and_then(|r| r["detail"].as_str())
                .unwrap_or_default();
            assert!(
                killed_outcome == "interrupted"
                    || (killed_outcome == "succeeded"
                        && detail.contains("the agent finished the rollout")),
                "the killed release is recorded as {killed_outcome} ({detail}); killed deploy printed:\n{}",
                killed.stderr
            );
        }
    }

    // Converged: exactly the desired replicas (2 web + 1 worker), all of the new release,
    // and no one-off task container left behind by the killed deploy.
    let newest_label = newest.to_string();
    assert!(
        eventually(Duration::from_secs(30), || {
            let all = project.containers(&[(LABEL_ROLE, "replica")]);
            let current =
                project.containers(&[(LABEL_ROLE, "replica"), (LABEL_RELEASE, &newest_label)]);
            all.len() == 3 && current.len() == 3
        }),
        "replicas after the next deploy: {:?}",
        project.containers(&[(LABEL_ROLE, "replica")])
    );
    assert!(
        eventually(Duration::from_secs(30), || project
            .containers(&[(LABEL_ROLE, "task")])
            .is_empty()),
        "one-off task containers left: {:?}",
        project.containers(&[(LABEL_ROLE, "task")])
    );
}

#[test]
fn cli_killed_during_build_leaves_a_recoverable_lock_and_no_release() {
    killed_in("build");
}

#[test]
fn cli_killed_during_migrate_leaves_an_interrupted_release_and_no_task() {
    killed_in("migrate");
}

#[test]
fn cli_killed_during_rollout_leaves_an_interrupted_release_and_no_orphans() {
    killed_in("rollout");
}

#[test]
fn cli_killed_during_verify_leaves_a_truthful_history() {
    killed_in("verify");
}
