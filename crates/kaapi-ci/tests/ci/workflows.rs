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
        // Production (a tag trigger) plans before it deploys: see the plan step's own test.
        let expected = if env == "production" { 3 } else { 2 };
        assert_eq!(runs.len(), expected, "install, (plan,) deploy: {runs:?}");
        assert!(
            runs[0].contains("sha256sum --check --strict") && !runs[0].contains("cargo"),
            "the release binary is downloaded and verified, not compiled: {}",
            runs[0]
        );
        assert_eq!(runs[expected - 1], "kaapi-deploy ci");
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

/// The production workflow's plan step as GitHub runs it (`bash -e`), with a stand-in
/// kaapi-deploy that records its arguments and exits `code`; whether the step succeeded.
fn run_plan_step(script: &str, code: i32) -> (bool, String) {
    let bin = tempfile::tempdir().expect("bin dir");
    let args_file = bin.path().join("args");
    let stub = bin.path().join("kaapi-deploy");
    std::fs::write(
        &stub,
        format!(
            "#!/bin/sh\necho \"$@\" > {}\nexit {code}\n",
            args_file.display()
        ),
    )
    .expect("write stub");
    std::fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod stub");
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
        .env("PATH", path)
        .output()
        .expect("run bash");
    let args = std::fs::read_to_string(&args_file).unwrap_or_else(|_| {
        format!(
            "(the stub did not run: {})",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.success(), args.trim().to_owned())
}

#[test]
fn the_production_workflow_plans_before_it_deploys_and_fails_only_on_errors() {
    let repo = tempfile::tempdir().expect("repo dir");
    let options = WorkflowOptions {
        config_path: Some("deploy/deploy.toml".to_owned()),
        ..WorkflowOptions::default()
    };
    workflows::write(repo.path(), &config(), &options, false).expect("write");
    let dir = repo.path().join(".github/workflows");
    let steps_of = |env: &str| {
        yaml(&dir.join(format!("cd-{env}.yml")))["jobs"]["deploy"]["steps"]
            .as_sequence()
            .expect("steps")
            .clone()
    };
    let production = steps_of("production");
    // Unnamed steps (checkout) count too: positions index `production`.
    let names: Vec<&str> = production
        .iter()
        .map(|s| s["name"].as_str().unwrap_or(""))
        .collect();
    let plan_at = names
        .iter()
        .position(|n| *n == "Plan")
        .expect("a plan step");
    let deploy_at = names
        .iter()
        .position(|n| *n == "Deploy")
        .expect("a deploy step");
    assert!(plan_at < deploy_at, "{names:?}");
    assert!(
        !steps_of("staging")
            .iter()
            .any(|s| s["name"].as_str() == Some("Plan")),
        "staging deploys on every push to main without a plan step"
    );
    let script = production[plan_at]["run"].as_str().expect("plan script");

    // The same `ci` entry as the deploy (so the same promoted digest), in plan mode.
    let (ok, args) = run_plan_step(script, 0);
    assert_eq!(args, "--config deploy/deploy.toml ci --plan");
    assert!(ok, "no changes");
    assert!(
        run_plan_step(script, 3).0,
        "exit 3 (changes pending) is not a failure"
    );
    for code in [1, 2, 4] {
        assert!(!run_plan_step(script, code).0, "exit {code} fails the step");
    }
}
