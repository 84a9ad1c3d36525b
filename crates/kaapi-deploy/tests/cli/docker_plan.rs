//! `plan` and `deploy --dry-run` show what a deploy would change without changing anything; a
//! deploy of what already runs changes nothing (and `--force` deploys anyway).

use std::time::Instant;

use crate::docker_support::{Project, LABEL_ROLE};

/// Runs kaapi-deploy, returning (exit code, stdout, stderr).
fn run(project: &Project, args: &[&str]) -> (i32, String, String) {
    let output = project.cli().args(args).output().expect("run kaapi-deploy");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn replicas(project: &Project) -> Vec<String> {
    let mut ids = project.containers(&[(LABEL_ROLE, "replica")]);
    ids.sort();
    ids
}

#[test]
fn plan_shows_changes_and_an_unchanged_deploy_does_nothing() {
    let project = Project::new("plan");

    let (code, stdout, stderr) = run(&project, &["plan", "local"]);
    assert_eq!(
        code, 3,
        "a first deploy changes everything:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("nothing serves yet"), "{stdout}");
    assert!(stdout.contains("+ backend: service"), "{stdout}");
    assert!(stdout.contains("+ worker: service"), "{stdout}");
    assert!(
        stdout.contains("`/app migrate` runs before the rollout"),
        "{stdout}"
    );
    assert!(project.releases().is_empty(), "plan registers nothing");

    project.deploy();
    let before = replicas(&project);
    assert_eq!(before.len(), 3, "two backend replicas and one worker");

    let (code, stdout, stderr) = run(&project, &["plan", "local"]);
    assert_eq!(code, 0, "nothing to change:\n{stdout}\n{stderr}");
    assert!(stdout.contains("no changes:"), "{stdout}");

    // The same tree again: the cached build, then nothing registered, migrated or restarted.
    let started = Instant::now();
    let (code, stdout, stderr) = run(&project, &["deploy", "local", "--json"]);
    let elapsed = started.elapsed();
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("report JSON");
    assert_eq!(report["unchanged"], true, "{report:#}");
    assert_eq!(report["release"], 1, "{report:#}");
    assert!(
        report["migration"].is_null(),
        "no migrations ran: {report:#}"
    );
    let build: f64 = report["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .filter(|p| p["phase"] == "build")
        .filter_map(|p| p["seconds"].as_f64())
        .sum();
    let total = report["total_seconds"].as_f64().expect("total");
    assert!(
        total - build < 1.0,
        "the comparison after the build took {:.2}s (whole command {elapsed:?})",
        total - build
    );
    assert!(!stderr.contains("==> migrate"), "{stderr}");
    assert_eq!(project.releases().len(), 1, "no release registered");
    assert_eq!(replicas(&project), before, "no replica restarted");

    // --force deploys the same thing anyway: a new release with new replicas.
    let (code, stdout, stderr) = run(&project, &["deploy", "local", "--force"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("deployed:"), "{stdout}");
    assert_eq!(project.releases().len(), 2);
    assert_ne!(replicas(&project), before, "replicas were replaced");

    // A changed config and secret: named, never valued.
    let text = std::fs::read_to_string(&project.config).expect("read deploy.toml");
    let text = text
        .replace(
            "WORKER_INTERVAL_SECS = \"1\"\n",
            "WORKER_INTERVAL_SECS = \"1\"\nFEATURE_FLAG = \"plain-value-never-shown\"\n",
        )
        .replacen("replicas = 2", "replicas = 3", 1);
    std::fs::write(&project.config, text).expect("write deploy.toml");
    std::fs::write(
        project.dir.path().join("local.env"),
        "SECRET_KEY=rotated-secret-value-never-shown\n",
    )
    .expect("write local.env");

    let (code, stdout, stderr) = run(&project, &["plan", "local"]);
    assert_eq!(code, 3, "{stdout}\n{stderr}");
    for line in [
        "release 2 serves now",
        "+ backend: variable FEATURE_FLAG",
        "+ worker: variable FEATURE_FLAG",
        "~ backend: secret SECRET_KEY",
        "~ backend: replicas: 2 -> 3",
    ] {
        assert!(stdout.contains(line), "missing `{line}` in:\n{stdout}");
    }
    assert!(
        !stdout.contains("~ backend: image"),
        "the same tree builds the same image: {stdout}"
    );
    for secret in ["never-shown", "test-secret-value"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{stdout}\n{stderr}"
        );
    }

    let (code, stdout, stderr) = run(&project, &["deploy", "local", "--dry-run", "--json"]);
    assert_eq!(code, 3, "{stdout}\n{stderr}");
    let preview: serde_json::Value = serde_json::from_str(&stdout).expect("plan JSON");
    let fields: Vec<&str> = preview["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    assert!(fields.contains(&"secret SECRET_KEY"), "{preview:#}");
    assert!(!stdout.contains("never-shown"), "{stdout}");
    assert_eq!(project.releases().len(), 2, "--dry-run registers nothing");
}

/// `ci --plan` as GitHub runs it for `ref`: (exit code, stdout, step summary).
fn ci_plan(project: &Project, git_ref: &str) -> (i32, String, String) {
    let summary = project.dir.path().join("step-summary.md");
    let _ = std::fs::remove_file(&summary);
    let output = project
        .cli()
        .args(["ci", "--plan"])
        .env("GITHUB_REF", git_ref)
        .env("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567")
        .env("GITHUB_ACTOR", "ci-tester")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env_remove("GITHUB_OUTPUT")
        .output()
        .expect("run kaapi-deploy ci --plan");
    let stdout = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = std::fs::read_to_string(&summary).unwrap_or_default();
    (output.status.code().unwrap_or(-1), stdout, summary)
}

#[test]
fn ci_plan_writes_what_the_ref_would_deploy_to_the_step_summary() {
    let mut project = Project::new("ciplan");
    project.environment_extra = "trigger = { branch = \"main\" }".to_owned();
    let first = format!("1.0.0-{}", project.app);
    project.configure(&first, "");
    project.deploy();

    let (code, out, summary) = ci_plan(&project, "refs/heads/main");
    assert_eq!(code, 0, "the same tree changes nothing:\n{out}");
    assert!(
        summary.contains("`local`: the deploy changes nothing"),
        "{summary}"
    );

    project.configure(&format!("2.0.0-{}", project.app), "");
    let (code, out, summary) = ci_plan(&project, "refs/heads/main");
    assert_eq!(code, 3, "a new version changes the image:\n{out}");
    assert!(
        summary.contains("`local`: what the deploy will change")
            && summary.contains("~ backend: image: sha256:")
            && summary.contains("`/app migrate` runs before the rollout"),
        "{summary}"
    );
    assert_eq!(project.releases().len(), 1, "a plan deploys nothing");
    assert_eq!(project.serving_version(), Some(first));

    let (code, out, _) = ci_plan(&project, "refs/heads/feature");
    assert_eq!(
        code, 0,
        "a ref that deploys nothing is not a failure:\n{out}"
    );
}
