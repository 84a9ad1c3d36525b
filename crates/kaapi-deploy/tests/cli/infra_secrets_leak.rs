//! Known secret values in an env file: every infrastructure command (`secrets push`, `infra
//! template`, `infra policy`, and the preflight check) runs through the real binary or library,
//! and no value appears in stdout, stderr or any generated file. `secrets push` to moto's SSM
//! leaves SecureString parameters holding exactly the values.

use kaapi_testkit::moto;

use std::path::Path;

use assert_cmd::Command;
use moto::{Moto, ACCOUNT, REGION};

const CONFIG: &str = r#"app = "kaapi"
secrets = ["SECRET_KEY", "FIRST_SUPERUSER_PASSWORD"]

[image]
context = "."

[services.web]
port = 8000

[services.worker]
command = "celery -A app.worker worker"

[env]
POSTGRES_SERVER = "db.internal"
PROJECT_NAME = "Kaapi"

[environments.staging]
engine = "ecs"
region = "eu-west-1"
role_arn = "arn:aws:iam::123456789012:role/kaapi-staging-deploy"
secrets_from = { ssm = "/kaapi/staging/" }
"#;

/// Values no command may print: the two declared secrets and one undeclared variable.
fn secret_values() -> [String; 3] {
    let unique = std::process::id();
    [
        format!("sk-leak-canary-{unique}-Zq8hT3vR1mX0"),
        format!("pw-leak-canary-{unique}-Kd93LsP0aa"),
        format!("undeclared-leak-canary-{unique}-Yy7"),
    ]
}

fn kaapi(dir: &Path, moto: &Moto) -> Command {
    let mut command = Command::cargo_bin("kaapi-deploy").expect("the kaapi-deploy binary");
    command
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("GITHUB_REPOSITORY")
        .timeout(std::time::Duration::from_secs(60));
    for (key, value) in moto.env() {
        command.env(key, value);
    }
    command
}

fn assert_no_secret(what: &str, text: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{what} contains a secret value:\n{text}"
        );
    }
}

#[test]
fn no_command_reveals_a_secret_value_and_push_stores_them_encrypted() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("deploy.toml"), CONFIG).expect("write config");
    let secrets = secret_values();
    std::fs::write(
        dir.path().join(".env.staging"),
        format!(
            "SECRET_KEY={}\nFIRST_SUPERUSER_PASSWORD=\"{}\"\nUNDECLARED_TOKEN={}\n",
            secrets[0], secrets[1], secrets[2]
        ),
    )
    .expect("write env file");
    let out_dir = dir.path().join("generated");
    std::fs::create_dir_all(&out_dir).expect("mkdir");

    let mut outputs = Vec::new();
    let mut run = |args: &[&str], expect_success: bool| {
        let output = kaapi(dir.path(), &moto)
            .args(args)
            .output()
            .expect("run kaapi-deploy");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(
            output.status.success(),
            expect_success,
            "kaapi-deploy {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        outputs.push((format!("{args:?}"), stdout.clone(), stderr.clone()));
        (stdout, stderr)
    };

    let (stdout, stderr) = run(
        &["secrets", "push", "staging", "--from", ".env.staging"],
        true,
    );
    assert!(
        stdout.contains("pushed /kaapi/staging/SECRET_KEY"),
        "{stdout}"
    );
    assert!(
        stdout.contains("pushed /kaapi/staging/FIRST_SUPERUSER_PASSWORD"),
        "{stdout}"
    );
    assert!(
        stderr.contains("UNDECLARED_TOKEN is not declared"),
        "{stderr}"
    );

    let template = out_dir.join("staging.yaml");
    run(
        &[
            "infra",
            "template",
            "staging",
            "--repository",
            "o/r",
            "-o",
            &template.to_string_lossy(),
        ],
        true,
    );
    run(
        &["infra", "template", "staging", "--repository", "o/r"],
        true,
    );
    run(
        &[
            "infra",
            "policy",
            "staging",
            "--repository",
            "o/r",
            "--out",
            &out_dir.to_string_lossy(),
        ],
        true,
    );
    let (stdout, _) = run(&["infra", "policy", "staging", "--repository", "o/r"], true);
    // Without --account the account comes from STS (moto's).
    assert!(
        stdout.contains(&format!(
            "arn:aws:ecr:{REGION}:{ACCOUNT}:repository/kaapi-staging-repo"
        )),
        "{stdout}"
    );

    // The live task definitions' roles and the workflows' GitHub environment, when given.
    let live_role = format!("arn:aws:iam::{ACCOUNT}:role/ecsTaskExecutionRole");
    let (stdout, _) = run(
        &[
            "infra",
            "policy",
            "staging",
            "--repository",
            "o/r",
            "--pass-role",
            &live_role,
            "--github-environment",
            "prod-gate",
        ],
        true,
    );
    let both: serde_json::Value = serde_json::from_str(&stdout).expect("policy JSON");
    let pass_role = both["deploy_policy"]["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .find(|s| s["Action"].to_string().contains("iam:PassRole"))
        .expect("a PassRole statement");
    assert!(
        pass_role["Resource"].to_string().contains(&live_role),
        "{pass_role}"
    );
    assert!(
        both["trust_policy"]
            .to_string()
            .contains("repo:o/r:environment:prod-gate"),
        "{stdout}"
    );
    let output = kaapi(dir.path(), &moto)
        .args(["infra", "policy", "staging", "--repository", "o/r"])
        .args(["--pass-role", "ecsTaskExecutionRole"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2), "a role name is not an ARN");

    // A placeholder is refused before anything is written.
    std::fs::write(
        dir.path().join(".env.placeholder"),
        "SECRET_KEY=changethis\n",
    )
    .expect("write");
    let output = kaapi(dir.path(), &moto)
        .args(["secrets", "push", "staging", "--from", ".env.placeholder"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("SECRET_KEY"));

    for (what, stdout, stderr) in &outputs {
        assert_no_secret(&format!("stdout of {what}"), stdout, &secrets);
        assert_no_secret(&format!("stderr of {what}"), stderr, &secrets);
    }
    let generated: Vec<_> = std::fs::read_dir(&out_dir).expect("read dir").collect();
    assert_eq!(generated.len(), 3, "template, policy, trust");
    for entry in generated {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read generated file");
        assert_no_secret(&path.display().to_string(), &text, &secrets);
    }

    // The preflight check reads names only: its rendering and JSON hold no value either.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let loaded = kaapi_core::config::load(&dir.path().join("deploy.toml")).expect("config");
        let staging =
            kaapi_core::config::ResolvedEnvironment::resolve(loaded, "staging").expect("staging");
        let aws = moto.sdk_config().await;
        let items = kaapi_infra::preflight::check_prerequisites(&staging, &aws).await;
        let secret_items: Vec<_> = items
            .iter()
            .filter(|i| i.name.starts_with("secret "))
            .collect();
        assert_eq!(secret_items.len(), 2);
        assert!(
            secret_items
                .iter()
                .all(|i| i.status == kaapi_infra::preflight::Status::Ok),
            "{items:?}"
        );
        assert_no_secret(
            "check output",
            &kaapi_infra::preflight::render(&items),
            &secrets,
        );
        assert_no_secret(
            "check JSON",
            &serde_json::to_string(&items).expect("json"),
            &secrets,
        );

        let ssm = aws_sdk_ssm::Client::new(&aws);
        for (name, value) in [
            ("SECRET_KEY", &secrets[0]),
            ("FIRST_SUPERUSER_PASSWORD", &secrets[1]),
        ] {
            let parameter = ssm
                .get_parameter()
                .name(format!("/kaapi/staging/{name}"))
                .with_decryption(true)
                .send()
                .await
                .expect("read back the parameter");
            let parameter = parameter.parameter().expect("parameter");
            assert_eq!(parameter.r#type().map(|t| t.as_str()), Some("SecureString"));
            assert_eq!(parameter.value(), Some(value.as_str()));
        }
        let undeclared = ssm
            .get_parameters()
            .names("/kaapi/staging/UNDECLARED_TOKEN")
            .send()
            .await
            .expect("get parameters");
        assert!(
            undeclared.parameters().is_empty(),
            "undeclared variables are not pushed"
        );
    });
}
