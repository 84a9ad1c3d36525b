//! Fault suite: the Docker Engine restarted in the middle of a deploy. The deploy must end by
//! itself — completed, or failed cleanly with a message (exit 1), never hung or crashed — and
//! the next deploy must succeed with the environment converged.
//!
//! This restarts the machine's dockerd (stopped by the pid in its pid file, started again with
//! the same command line), which disturbs every other user of Docker: it is the only test of
//! this binary, so it never overlaps tests of its own crate run in the same binary. Run it on
//! its own: `cargo test -p kaapi-deploy --test faults_docker_restart`.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::docker_support::{eventually, Project, LABEL_RELEASE, LABEL_ROLE};

const PID_FILE: &str = "/var/run/docker.pid";
const DOCKERD_LOG: &str = "/tmp/dockerd.log";

fn docker_answers() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn dockerd_pid() -> Option<u32> {
    std::fs::read_to_string(PID_FILE).ok()?.trim().parse().ok()
}

/// The dockerd command line, to start it again the same way.
fn dockerd_cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn start_dockerd(cmdline: &[String]) {
    let (program, args) = match cmdline.split_first() {
        Some((p, a)) => (p.clone(), a.to_vec()),
        None => ("dockerd".to_owned(), Vec::new()),
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(DOCKERD_LOG)
        .expect("open the dockerd log");
    // `setsid --fork`: the daemon runs in its own session and outlives this test; setsid
    // itself exits at once, so it is waited for here.
    let status = Command::new("setsid")
        .arg("--fork")
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .status()
        .expect("start dockerd");
    assert!(status.success(), "setsid --fork dockerd: {status}");
}

fn wait_for_docker(limit: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if docker_answers() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    docker_answers()
}

/// Makes sure Docker runs again when the test ends, whatever happened in it.
struct DockerGuard {
    cmdline: Vec<String>,
}

impl Drop for DockerGuard {
    fn drop(&mut self) {
        if !docker_answers() && !wait_for_docker(Duration::from_secs(5)) {
            start_dockerd(&self.cmdline);
            wait_for_docker(Duration::from_secs(60));
        }
    }
}

/// Stops dockerd (SIGTERM to the pid in its pid file, as a service manager would), waits for
/// it to exit, starts it again and waits until it answers.
fn restart_dockerd(pid: u32, cmdline: &[String]) -> Duration {
    let started = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid}");
    let gone = eventually(Duration::from_secs(60), || {
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z"))
    });
    assert!(gone, "dockerd {pid} did not stop within 60 s");
    start_dockerd(cmdline);
    assert!(
        wait_for_docker(Duration::from_secs(90)),
        "dockerd did not answer within 90 s of its restart; see {DOCKERD_LOG}"
    );
    started.elapsed()
}

#[test]
fn docker_engine_restarted_mid_deploy_then_the_next_deploy_succeeds() {
    assert!(
        docker_answers(),
        "the Docker Engine must run before this test"
    );
    let pid = dockerd_pid().expect("dockerd writes its pid to /var/run/docker.pid");
    let cmdline = dockerd_cmdline(pid);
    assert!(!cmdline.is_empty(), "cannot read dockerd's command line");
    let _guard = DockerGuard {
        cmdline: cmdline.clone(),
    };

    let project = Project::with_engine_alone("fdr");
    project.deploy();
    project.configure("2.0.0", "");
    let mut child = project
        .std_cli(&["deploy", "local", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn deploy");
    let mut stdout = child.stdout.take().expect("stdout");
    let stdout_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let mut reader = BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = String::new();
    let mut line = String::new();
    while reader.read_line(&mut line).expect("read stderr") > 0 {
        seen.push_str(&line);
        let rollout = line.contains("==> rollout");
        line.clear();
        if rollout {
            break;
        }
    }
    assert!(
        seen.contains("==> rollout"),
        "deploy never reached the rollout:\n{seen}"
    );

    let took = restart_dockerd(pid, &cmdline);

    // The deploy must end by itself within a bound, with an exit code that is not a crash.
    let stderr_reader = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = reader.read_to_string(&mut rest);
        rest
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the deploy") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the deploy hung for 300 s after dockerd restarted ({took:?}):\n{seen}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    seen.push_str(&stderr_reader.join().unwrap_or_default());
    let report = stdout_reader.join().unwrap_or_default();
    let code = status.code();
    assert!(
        matches!(code, Some(0) | Some(1)),
        "the deploy crashed ({status}) after dockerd restarted:\n{seen}"
    );
    if code == Some(1) {
        // A clean failure says what went wrong.
        assert!(
            seen.lines()
                .any(|l| l.contains("error") || l.contains("failed")),
            "failed without saying why:\n{seen}"
        );
    } else {
        let report: serde_json::Value =
            serde_json::from_str(&report).expect("a completed deploy prints its JSON report");
        assert_eq!(report["outcome"], "succeeded", "{report:#}");
    }

    // The next deploy succeeds, and the environment converges on it.
    project.configure("3.0.0", "");
    let output = project
        .cli()
        .args(["deploy", "local", "--json"])
        .output()
        .expect("run the next deploy");
    assert!(
        output.status.success(),
        "the deploy after the restart failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("deploy --json report");
    let release = report["release"].as_u64().expect("release number");
    assert_eq!(project.serving_version().as_deref(), Some("3.0.0"));
    let label = release.to_string();
    assert!(
        eventually(Duration::from_secs(60), || {
            let all = project.containers(&[(LABEL_ROLE, "replica")]);
            let current = project.containers(&[(LABEL_ROLE, "replica"), (LABEL_RELEASE, &label)]);
            let running = all.iter().all(|id| {
                crate::docker_support::docker(&["inspect", "-f", "{{.State.Running}}", id]).trim()
                    == "true"
            });
            current.len() == 3 && running
        }),
        "replicas after the restart and the next deploy: {:?}",
        project.containers(&[(LABEL_ROLE, "replica")])
    );
    // No release is left claiming to be in progress.
    let releases = project.releases();
    assert!(
        releases.iter().all(|r| r["outcome"] != "in_progress"),
        "{releases:#?}"
    );
}
