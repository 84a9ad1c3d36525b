//! How the generated workflows install kaapi-deploy: the pinned release download (run for real
//! against a release directory served over `file://`, with a good and a tampered binary), the
//! `cargo install` option, and the release workflow that publishes what they download.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kaapi_ci::workflows::{self, Install, WorkflowError, WorkflowOptions};

use super::workflows::{config, lint, yaml};

fn lint_both(files: &[PathBuf]) {
    lint(
        "check-jsonschema",
        &["--builtin-schema", "vendor.github-workflows"],
        files,
    );
    lint("actionlint", &["-no-color"], files);
}

/// The staging workflow's steps for `install`, after both linters passed on every file.
fn staging_steps(repo: &Path, install: Install) -> Vec<serde_yaml::Value> {
    let options = WorkflowOptions {
        install,
        ..WorkflowOptions::default()
    };
    let written = workflows::write(repo, &config(), &options, false).expect("write workflows");
    lint_both(&written);
    let w = yaml(&repo.join(".github/workflows/cd-staging.yml"));
    w["jobs"]["deploy"]["steps"]
        .as_sequence()
        .expect("steps")
        .clone()
}

fn install_step(steps: &[serde_yaml::Value]) -> &serde_yaml::Value {
    steps
        .iter()
        .find(|s| {
            s["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("Install kaapi-deploy"))
        })
        .expect("an install step")
}

#[test]
fn the_release_workflow_passes_the_linters() {
    let release = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.github/workflows/release.yml");
    lint_both(std::slice::from_ref(&release));
    let w = yaml(&release);
    assert_eq!(w["on"]["push"]["tags"][0].as_str(), Some("v*"));
    let text = std::fs::read_to_string(&release).expect("read release.yml");
    for asset in [
        "kaapi-deploy-x86_64-linux",
        "kaapi-deploy-aarch64-linux",
        "SHA256SUMS",
        "FROM scratch",
    ] {
        assert!(text.contains(asset), "release.yml publishes {asset}");
    }
}

#[test]
fn cargo_install_stays_an_option() {
    let repo = tempfile::tempdir().expect("repo dir");
    let steps = staging_steps(repo.path(), Install::this_version_from_source());
    let run = install_step(&steps)["run"].as_str().expect("run");
    assert_eq!(
        run,
        format!(
            "cargo install --locked kaapi-deploy --version {}",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert!(
        steps
            .iter()
            .any(|s| s["uses"].as_str() == Some("actions/cache@v5")),
        "the compiled binary is cached"
    );
}

#[test]
fn a_pinned_checksum_is_written_into_the_step_and_a_malformed_one_is_refused() {
    let sum = "ab".repeat(32);
    let repo = tempfile::tempdir().expect("repo dir");
    let steps = staging_steps(
        repo.path(),
        Install::Release {
            repository: "acme/kaapi-deploy".to_owned(),
            version: "1.2.3".to_owned(),
            sha256: Some(sum.clone()),
        },
    );
    let step = install_step(&steps);
    assert!(step["run"].as_str().expect("run").contains(&format!(
        "echo \"{sum}  $asset\" | sha256sum --check --strict"
    )));
    assert_eq!(
        step["env"]["KAAPI_DEPLOY_URL"].as_str(),
        Some("https://github.com/acme/kaapi-deploy/releases/download/v1.2.3")
    );

    let options = WorkflowOptions {
        install: Install::Release {
            repository: "acme/kaapi-deploy".to_owned(),
            version: "1.2.3".to_owned(),
            sha256: Some("abc; rm -rf /".to_owned()),
        },
        ..WorkflowOptions::default()
    };
    let error = workflows::render(&config(), &options).expect_err("not a checksum");
    assert!(
        matches!(error, WorkflowError::BadChecksum { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("abc; rm -rf /"), "{error}");
}

/// Runs the install step's script as the runner would, against `release` (a directory laid out
/// like a GitHub release) instead of github.com.
fn run_install(script: &str, release: &Path, runner: &Path) -> Output {
    let temp = runner.join("temp");
    let home = runner.join("home");
    std::fs::create_dir_all(&temp).expect("runner temp");
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("KAAPI_DEPLOY_URL", format!("file://{}", release.display()))
        .env("RUNNER_TEMP", &temp)
        .env("HOME", &home)
        .env("GITHUB_PATH", runner.join("github_path"))
        .output()
        .expect("run bash")
}

fn sha256sums(release: &Path, asset: &str) {
    let output = Command::new("sha256sum")
        .arg(asset)
        .current_dir(release)
        .output()
        .expect("sha256sum");
    assert!(output.status.success());
    std::fs::write(release.join("SHA256SUMS"), output.stdout).expect("write SHA256SUMS");
}

#[test]
fn the_download_step_installs_a_verified_binary_and_refuses_a_tampered_one() {
    let repo = tempfile::tempdir().expect("repo dir");
    let steps = staging_steps(repo.path(), Install::this_version());
    let script = install_step(&steps)["run"]
        .as_str()
        .expect("run")
        .to_owned();

    let arch = String::from_utf8(
        Command::new("uname")
            .arg("-m")
            .output()
            .expect("uname")
            .stdout,
    )
    .expect("utf-8");
    let asset = format!("kaapi-deploy-{}-linux", arch.trim());
    let release = tempfile::tempdir().expect("release dir");
    std::fs::write(
        release.path().join(&asset),
        "#!/bin/sh\necho kaapi-deploy from the release\n",
    )
    .expect("write asset");
    sha256sums(release.path(), &asset);

    let runner = tempfile::tempdir().expect("runner");
    let output = run_install(&script, release.path(), runner.path());
    assert!(
        output.status.success(),
        "install failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bin_dir = runner.path().join("home/.local/bin");
    let installed = Command::new(bin_dir.join("kaapi-deploy"))
        .output()
        .expect("the installed binary runs");
    assert_eq!(
        String::from_utf8_lossy(&installed.stdout),
        "kaapi-deploy from the release\n"
    );
    assert_eq!(
        std::fs::read_to_string(runner.path().join("github_path")).expect("GITHUB_PATH"),
        format!("{}\n", bin_dir.display()),
        "later steps find kaapi-deploy on PATH"
    );

    // Same checksums, different bytes: the step fails and installs nothing.
    std::fs::write(release.path().join(&asset), "#!/bin/sh\necho tampered\n").expect("tamper");
    let runner = tempfile::tempdir().expect("runner");
    let output = run_install(&script, release.path(), runner.path());
    assert!(
        !output.status.success(),
        "a tampered binary must be refused"
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("FAILED"),
        "sha256sum says why: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(!runner.path().join("home/.local/bin/kaapi-deploy").exists());
}
