//! The generated CloudFormation passes `cfn-lint` and the generated IAM policies pass
//! `parliament`, both from $KAAPI_VENV, with no findings.

use std::process::Command;

use crate::support::account::{self, ENVIRONMENT, REPOSITORY};
use crate::support::moto::{ACCOUNT, REGION};
use kaapi_infra::policy::{self, Scope};
use kaapi_infra::template::{self, TemplateOptions};
use kaapi_testkit::venv_tool as venv_bin;

fn run(tool: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(venv_bin(tool))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {tool} from $KAAPI_VENV: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Configs covering the optional parts: everything on, and a bare one (no backing services,
/// Secrets Manager instead of SSM, a promotion source).
fn configs(dir: &std::path::Path) -> Vec<kaapi_core::config::ResolvedEnvironment> {
    let full = account::write_config(dir);
    let bare_dir = dir.join("bare");
    std::fs::create_dir_all(&bare_dir).expect("mkdir");
    let bare_text = account::config_text()
        .replace("POSTGRES_SERVER = \"db.internal\"\n", "")
        .replace("REDIS_URL = \"redis://cache.internal:6379/0\"\n", "")
        .replace("RABBITMQ_HOST = \"mq.internal\"\n", "")
        .replace(
            "secrets_from = { ssm = \"/kaapi/staging/\" }",
            "secrets_from = { secrets_manager = \"kaapi/staging/\" }\npromote_from = \"qa\"",
        )
        + "\n[environments.qa]\nengine = \"ecs\"\nregion = \"eu-west-1\"\nsecrets_from = { ssm = \"/kaapi/qa/\" }\n";
    let path = bare_dir.join("deploy.toml");
    std::fs::write(&path, bare_text).expect("write bare config");
    let bare = account::resolve(&path, ENVIRONMENT);
    vec![full, bare]
}

#[test]
fn generated_template_passes_cfn_lint_without_findings() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (index, target) in configs(dir.path()).iter().enumerate() {
        let options = TemplateOptions {
            repository: Some(REPOSITORY.to_owned()),
        };
        let yaml = template::render(target, &options).expect("render template");
        let file = dir.path().join(format!("template-{index}.yaml"));
        std::fs::write(&file, &yaml).expect("write template");
        let file = file.to_string_lossy().into_owned();
        let (ok, output) = run("cfn-lint", &["--regions", REGION, "--", &file]);
        assert!(
            ok && output.trim().is_empty(),
            "cfn-lint findings on template {index}:\n{output}\n{yaml}"
        );
    }
}

#[test]
fn cfn_lint_does_catch_a_broken_template() {
    // Guards the test above: a lint that reports nothing for anything would prove nothing.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("broken.yaml");
    std::fs::write(
        &file,
        "AWSTemplateFormatVersion: '2010-09-09'\nResources:\n  Cluster:\n    Type: AWS::ECS::Cluster\n    Properties:\n      ClusterNme: x\n",
    )
    .expect("write");
    let (ok, output) = run("cfn-lint", &["--", &file.to_string_lossy()]);
    assert!(!ok && output.contains("ClusterNme"), "{output}");
}

/// The muting config for trust policies (see the file for why).
fn trust_config() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/parliament-trust.yaml").to_owned()
}

#[test]
fn generated_policies_pass_parliament_without_findings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let scope = Scope::new(REGION, ACCOUNT);
    for (index, target) in configs(dir.path()).iter().enumerate() {
        let deploy = policy::deploy_policy(target, &scope);
        let trust = policy::trust_policy(target, REPOSITORY, &scope).expect("trust policy");

        let deploy_file = dir.path().join(format!("{index}-deploy-policy.json"));
        std::fs::write(
            &deploy_file,
            serde_json::to_string_pretty(&deploy).expect("json"),
        )
        .expect("write policy");
        let (ok, output) = run("parliament", &["--files", &deploy_file.to_string_lossy()]);
        assert!(
            ok && output.trim().is_empty(),
            "parliament findings on deploy policy {index}:\n{output}\n{deploy:#}"
        );

        let trust_file = dir.path().join(format!("{index}-deploy-trust.json"));
        std::fs::write(
            &trust_file,
            serde_json::to_string_pretty(&trust).expect("json"),
        )
        .expect("write trust");
        let trust_path = trust_file.to_string_lossy().into_owned();
        let (ok, output) = run(
            "parliament",
            &["--config", &trust_config(), "--files", &trust_path],
        );
        assert!(
            ok && output.trim().is_empty(),
            "parliament findings on trust policy {index}:\n{output}\n{trust:#}"
        );
        // Unmuted, the only findings are the two that every OIDC trust policy gets.
        let (_, raw) = run("parliament", &["--json", "--files", &trust_path]);
        let mut issues: Vec<(String, String)> = raw
            .lines()
            .map(|line| {
                let finding: serde_json::Value =
                    serde_json::from_str(line).expect("parliament --json line");
                (
                    finding["issue"].as_str().unwrap_or_default().to_owned(),
                    finding["detail"].to_string(),
                )
            })
            .collect();
        issues.sort();
        assert_eq!(issues.len(), 2, "{raw}");
        assert_eq!(issues[0].0, "MALFORMED", "{raw}");
        assert!(
            issues[0].1.contains("neither Resource nor NotResource"),
            "{raw}"
        );
        assert_eq!(issues[1].0, "UNKNOWN_FEDERATION_SOURCE", "{raw}");
        assert!(
            issues[1]
                .1
                .contains("oidc-provider/token.actions.githubusercontent.com"),
            "{raw}"
        );
    }
}

#[test]
fn parliament_does_catch_a_bad_policy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.json");
    std::fs::write(
        &file,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecs:UpdateServce","Resource":"*"}]}"#,
    )
    .expect("write");
    let (_, output) = run("parliament", &["--files", &file.to_string_lossy()]);
    assert!(
        output.contains("Unknown action ecs:UpdateServce"),
        "{output}"
    );
}

#[test]
fn deploy_policy_is_scoped_to_the_environment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = account::write_config(dir.path());
    let deploy = policy::deploy_policy(&target, &Scope::new(REGION, ACCOUNT));
    let statements = deploy["Statement"].as_array().expect("statements");
    let by_sid = |sid: &str| {
        statements
            .iter()
            .find(|s| s["Sid"] == sid)
            .unwrap_or_else(|| panic!("statement {sid}"))
    };
    assert_eq!(
        by_sid("EcrPushPull")["Resource"][0],
        format!("arn:aws:ecr:{REGION}:{ACCOUNT}:repository/kaapi-staging-repo")
    );
    let pass = by_sid("PassTaskRoles");
    assert_eq!(
        pass["Resource"],
        serde_json::json!([
            format!("arn:aws:iam::{ACCOUNT}:role/kaapi-staging-execution-role"),
            format!("arn:aws:iam::{ACCOUNT}:role/kaapi-staging-task-role"),
        ])
    );
    assert_eq!(
        pass["Condition"]["StringEquals"]["iam:PassedToService"],
        "ecs-tasks.amazonaws.com"
    );
    assert_eq!(
        by_sid("DeployLock")["Resource"][0],
        format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/kaapi-staging-deploy-lock")
    );
    assert_eq!(
        by_sid("EcsOneOffTasks")["Condition"]["ArnEquals"]["ecs:cluster"],
        format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/kaapi-staging-cluster")
    );
    // Only actions that cannot be scoped use "*".
    for statement in statements {
        if statement["Resource"] == serde_json::json!(["*"]) {
            assert!(
                ["EcrLogin", "EcsReadTaskDefinitions", "ReadOnlyListings"]
                    .contains(&statement["Sid"].as_str().unwrap_or_default()),
                "{statement}"
            );
        }
    }
    let trust =
        policy::trust_policy(&target, REPOSITORY, &Scope::new(REGION, ACCOUNT)).expect("trust");
    let condition = &trust["Statement"][0]["Condition"];
    assert_eq!(
        condition["StringEquals"]["token.actions.githubusercontent.com:aud"],
        "sts.amazonaws.com"
    );
    // The generated workflow's job runs in the GitHub environment; other jobs deploy from main.
    assert_eq!(
        condition["StringEquals"]["token.actions.githubusercontent.com:sub"],
        serde_json::json!([
            "repo:kaapi-org/kaapi-backend:environment:AWS_ENV_VARS",
            "repo:kaapi-org/kaapi-backend:ref:refs/heads/main"
        ])
    );
}
