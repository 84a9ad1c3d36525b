//! A failed deploy says why on the spot, against the real Docker Engine: for each cause (a
//! crash on start, a failing health check, a memory limit exceeded, a missing variable) the
//! failed replica's diagnosis, with its last lines and a hint, in the text output and in
//! `--json`; no secret value is ever printed.

use crate::docker_support::Project;

const SECRET: &str = "test-secret-value-not-printed";

/// The example backend's image with busybox beside it, for worker commands that need a shell.
fn with_busybox(project: &Project) {
    let backend = project.dir.path().join("backend");
    std::fs::copy("/bin/busybox", backend.join("dist/busybox"))
        .expect("copy /bin/busybox (Debian's busybox-static)");
    std::fs::write(
        backend.join(".dockerignore"),
        "*\n!dist/kaapi-example-backend\n!dist/busybox\n",
    )
    .expect("write .dockerignore");
    let dockerfile = std::fs::read_to_string(backend.join("Dockerfile")).expect("Dockerfile");
    let dockerfile = dockerfile.replace(
        "COPY dist/kaapi-example-backend /app",
        "COPY dist/kaapi-example-backend /app\nCOPY dist/busybox /bin/busybox",
    );
    std::fs::write(backend.join("Dockerfile"), dockerfile).expect("write Dockerfile");
}

/// Rewrites deploy.toml for `version` with the worker running `command` (a busybox shell
/// script) under `memory` MiB.
fn worker_runs(project: &Project, version: &str, script: &str, memory: Option<u32>) {
    project.configure(version, "");
    let text = std::fs::read_to_string(&project.config).expect("deploy.toml");
    let memory = memory
        .map(|m| format!("memory = {m}\n"))
        .unwrap_or_default();
    let command = format!(
        "command = [\"/bin/busybox\", \"sh\", \"-c\", {}]\n{memory}",
        toml_string(script)
    );
    let text = text.replacen("command = \"/app worker\"\n", &command, 1);
    std::fs::write(&project.config, text).expect("write deploy.toml");
}

fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Deploys, expecting a failure; returns the JSON report's diagnoses and the text output.
fn failing_deploy(project: &Project) -> (Vec<serde_json::Value>, String) {
    let output = project
        .cli()
        .args(["deploy", "local", "--json"])
        .output()
        .expect("run kaapi-deploy");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains(SECRET) && !stderr.contains(SECRET),
        "a secret value was printed:\n{stdout}\n{stderr}"
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("a JSON report");
    assert_eq!(report["outcome"], "rolled_back", "{report}");
    let diagnoses = report["diagnosis"].as_array().cloned().unwrap_or_default();
    assert!(!diagnoses.is_empty(), "no diagnosis in {report}\n{stderr}");
    (diagnoses, stderr)
}

fn text(value: &serde_json::Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

fn logs(diagnosis: &serde_json::Value) -> String {
    diagnosis["logs"]
        .as_array()
        .map(|lines| lines.iter().map(text).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

#[test]
fn every_failure_cause_is_diagnosed_with_its_last_lines_and_a_hint() {
    let project = Project::new("diag");
    with_busybox(&project);
    project.deploy();

    // A crash on start: the exit code and the line it wrote before exiting.
    project.configure("2.0.0", "crash");
    let (diagnoses, _) = failing_deploy(&project);
    let crash = &diagnoses[0];
    assert_eq!(crash["service"], "backend", "{crash}");
    assert_eq!(crash["cause"], "exited", "{crash}");
    assert_eq!(crash["exit_code"], 1, "{crash}");
    assert!(
        logs(crash).contains("deliberately broken release (BREAK=crash)"),
        "{crash}"
    );
    assert!(!text(&crash["hint"]).is_empty(), "{crash}");

    // A failing health check: the probe's answer, and the text output on one screen.
    project.configure("3.0.0", "health");
    let output = project
        .cli()
        .args(["deploy", "local"])
        .output()
        .expect("run kaapi-deploy");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        !stderr.contains(SECRET),
        "a secret value was printed:\n{stderr}"
    );
    let why = stderr.split("why it failed:").nth(1).unwrap_or_default();
    assert!(why.contains("failed health check"), "{stderr}");
    assert!(why.contains("last health check:"), "{stderr}");
    assert!(why.contains("hint:"), "{stderr}");
    assert!(
        why.contains("last ") && why.contains("log line(s):"),
        "{stderr}"
    );

    // A memory limit exceeded: Docker's OOM kill, and the hint to raise `memory`.
    worker_runs(
        &project,
        "4.0.0",
        "echo allocating; x=0123456789; while true; do x=$x$x; done",
        Some(8),
    );
    let (diagnoses, _) = failing_deploy(&project);
    let oom = diagnoses
        .iter()
        .find(|d| d["service"] == "worker")
        .expect("the worker is diagnosed");
    assert_eq!(oom["cause"], "out_of_memory", "{oom}");
    assert_eq!(oom["exit_code"], 137, "{oom}");
    assert!(text(&oom["hint"]).contains("`memory`"), "{oom}");
    assert!(logs(oom).contains("allocating"), "{oom}");

    // A missing variable: the shell says which, and so does the hint.
    worker_runs(
        &project,
        "5.0.0",
        "echo starting; : \"${DATABASE_URL:?is not set}\"; sleep 60",
        None,
    );
    let (diagnoses, _) = failing_deploy(&project);
    let missing = diagnoses
        .iter()
        .find(|d| d["service"] == "worker")
        .expect("the worker is diagnosed");
    assert_eq!(missing["cause"], "exited", "{missing}");
    assert!(logs(missing).contains("DATABASE_URL"), "{missing}");
    assert!(
        text(&missing["hint"]).contains("`DATABASE_URL`"),
        "{missing}"
    );
    assert_eq!(project.serving_version().as_deref(), Some("1.0.0"));
}

#[test]
fn a_failed_migration_shows_its_diagnosis() {
    let project = Project::new("dmig");
    project.deploy();
    project.configure("2.0.0", "migration");
    let output = project
        .cli()
        .args(["deploy", "local", "--json"])
        .output()
        .expect("run kaapi-deploy");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("a JSON report");
    assert_eq!(report["outcome"], "failed_migration");
    let diagnosis = &report["diagnosis"][0];
    assert_eq!(diagnosis["cause"], "exited", "{report}");
    assert_eq!(diagnosis["exit_code"], 1, "{report}");
    assert!(!logs(diagnosis).is_empty(), "{report}");
    assert_eq!(report["migration"]["diagnosis"], *diagnosis);
    assert!(!stdout.contains(SECRET));
}
