//! The workflows `init --github` writes, checked by independent linters (GitHub's workflow
//! JSON schema through check-jsonschema, and actionlint) and by reading them back as YAML.

use std::path::Path;
use std::process::Command;

use kaapi_ci::workflows::{self, Install, WorkflowError, WorkflowOptions};
use kaapi_core::config::{parse, Config};
use kaapi_testkit::venv_tool;

const CONFIG: &str = r#"
app = "kaapi"

[image]
context = "backend"

[services.backend]
port = 8000

[services.worker]
command = "celery -A app worker"

[environments.local]
engine = "docker"

[environments.staging]
engine = "ecs"
region = "eu-west-1"
trigger = { branch = "main" }
role_arn = "arn:aws:iam::123456789012:role/kaapi-deploy"

[environments.production]
engine = "ecs"
region = "eu-west-1"
trigger = { tags = "v*" }
promote_from = "staging"
role_arn = "arn:aws:iam::123456789012:role/kaapi-deploy"
"#;

pub fn config() -> Config {
    parse(Path::new("deploy.toml"), CONFIG)
        .expect("valid config")
        .0
}

pub fn lint(tool: &str, args: &[&str], files: &[std::path::PathBuf]) {
    let output = Command::new(venv_tool(tool))
        .args(args)
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
    assert!(
        output.status.success(),
        "{tool} found problems:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn generated_workflows_pass_the_schema_and_actionlint() {
    let repo = tempfile::tempdir().expect("repo dir");
    let written = workflows::write(repo.path(), &config(), &WorkflowOptions::default(), false)
        .expect("write workflows");
    let names: Vec<String> = written
        .iter()
        .map(|p| {
            p.strip_prefix(repo.path())
                .expect("inside")
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            ".github/workflows/cd-staging.yml",
            ".github/workflows/cd-production.yml"
        ]
    );
    lint(
        "check-jsonschema",
        &["--builtin-schema", "vendor.github-workflows"],
        &written,
    );
    lint("actionlint", &["-no-color"], &written);
}

#[test]
fn workflows_with_a_git_install_and_a_nested_config_pass_the_linters_too() {
    let repo = tempfile::tempdir().expect("repo dir");
    let options = WorkflowOptions {
        github_environment: "Production gate".to_owned(),
        install: Install::Git {
            url: "https://github.com/acme/kaapi-deploy".to_owned(),
            rev: "0123456789abcdef0123456789abcdef01234567".to_owned(),
        },
        config_path: Some("deploy/deploy.toml".to_owned()),
    };
    let written = workflows::write(repo.path(), &config(), &options, false).expect("write");
    lint(
        "check-jsonschema",
        &["--builtin-schema", "vendor.github-workflows"],
        &written,
    );
    lint("actionlint", &["-no-color"], &written);
    let w = yaml(&written[0]);
    let runs: Vec<&str> = w["jobs"]["deploy"]["steps"]
        .as_sequence()
        .expect("steps")
        .iter()
        .filter_map(|s| s["run"].as_str())
        .collect();
    assert_eq!(
        runs,
        [
            "cargo install --locked --git https://github.com/acme/kaapi-deploy --rev 0123456789abcdef0123456789abcdef01234567 kaapi-deploy",
            "kaapi-deploy --config \"deploy/deploy.toml\" ci"
        ]
    );
    assert_eq!(
        w["jobs"]["deploy"]["environment"].as_str(),
        Some("Production gate")
    );
}

pub fn yaml(path: &Path) -> serde_yaml::Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).expect("read")).expect("valid YAML")
}

#[test]
fn workflows_trigger_per_environment_with_oidc_permissions_and_a_serial_group() {
    let repo = tempfile::tempdir().expect("repo dir");
    let options = WorkflowOptions {
        github_environment: "prod-gate".to_owned(),
        ..WorkflowOptions::default()
    };
    workflows::write(repo.path(), &config(), &options, false).expect("write");
    let dir = repo.path().join(".github/workflows");
    for (env, filter, pattern) in [
        ("staging", "branches", "main"),
        ("production", "tags", "v*"),
    ] {
        let w = yaml(&dir.join(format!("cd-{env}.yml")));
        assert_eq!(w["on"]["push"][filter][0].as_str(), Some(pattern), "{env}");
        assert_eq!(w["permissions"]["id-token"].as_str(), Some("write"));
        assert_eq!(w["permissions"]["contents"].as_str(), Some("read"));
        let deploy_group = format!("deploy-{env}");
        assert_eq!(
            w["concurrency"]["group"].as_str(),
            Some(deploy_group.as_str())
        );
        assert_eq!(
            w["concurrency"]["cancel-in-progress"].as_bool(),
            Some(false)
        );
        let job = &w["jobs"]["deploy"];
        assert_eq!(job["environment"].as_str(), Some("prod-gate"));
        assert_eq!(
            job["env"]["AWS_RESOURCE_PREFIX"].as_str(),
            Some("${{ vars.AWS_RESOURCE_PREFIX }}")
        );
        let steps = job["steps"].as_sequence().expect("steps");
        let runs: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
        assert_eq!(runs.len(), 2, "install, then deploy: {runs:?}");
        assert!(
            runs[0].contains("sha256sum --check --strict") && !runs[0].contains("cargo"),
            "the release binary is downloaded and verified, not compiled: {}",
            runs[0]
        );
        assert_eq!(runs[1], "kaapi-deploy ci");
        let release = format!(
            "https://github.com/{}/releases/download/v{}",
            workflows::RELEASE_REPOSITORY,
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(
            steps[1]["env"]["KAAPI_DEPLOY_URL"].as_str(),
            Some(release.as_str())
        );
    }
    assert!(
        !dir.join("cd-local.yml").exists(),
        "no trigger, no workflow"
    );
}

#[test]
fn existing_workflows_are_kept_unless_forced() {
    let repo = tempfile::tempdir().expect("repo dir");
    let dir = repo.path().join(".github/workflows");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let production = dir.join("cd-production.yml");
    std::fs::write(&production, "# mine\n").expect("write");

    let error = workflows::write(repo.path(), &config(), &WorkflowOptions::default(), false)
        .expect_err("must not overwrite");
    assert!(matches!(error, WorkflowError::Exists { ref path } if path == &production));
    assert!(error.to_string().contains("--force"), "{error}");
    assert_eq!(
        std::fs::read_to_string(&production).expect("read"),
        "# mine\n"
    );
    assert!(
        !dir.join("cd-staging.yml").exists(),
        "nothing is written when any file exists"
    );

    workflows::write(repo.path(), &config(), &WorkflowOptions::default(), true)
        .expect("--force overwrites");
    assert!(std::fs::read_to_string(&production)
        .expect("read")
        .contains("kaapi-deploy ci"));
}

#[test]
fn a_bad_github_environment_name_is_refused() {
    let options = WorkflowOptions {
        github_environment: "a: b".to_owned(),
        ..WorkflowOptions::default()
    };
    let error = workflows::render(&config(), &options).expect_err("`:` is not allowed");
    assert!(error.to_string().contains("`a: b`"), "{error}");
}
