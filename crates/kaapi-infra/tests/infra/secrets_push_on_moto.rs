//! `push_secrets` against moto: SSM SecureString and Secrets Manager (created, then updated),
//! undeclared and absent names reported, placeholders refused before anything is written.

use crate::support::account::{self, ENVIRONMENT};
use crate::support::moto::Moto;
use kaapi_infra::secrets_push::{push_secrets, PushError};

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write env file");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_to_ssm_and_refuses_placeholders() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let target = account::write_config(dir.path());
    let aws = moto.sdk_config().await;
    let ssm = aws_sdk_ssm::Client::new(&aws);

    // A placeholder anywhere: nothing is written, and the error names the variable only.
    let file = write(
        dir.path(),
        "bad.env",
        "SECRET_KEY=real-value-1\nFIRST_SUPERUSER_PASSWORD=changethis\n",
    );
    let error = push_secrets(&target, &file, &aws)
        .await
        .expect_err("placeholder refused");
    assert!(
        matches!(error, PushError::Placeholders { ref names, .. } if names == &["FIRST_SUPERUSER_PASSWORD"]),
        "{error}"
    );
    assert!(!error.to_string().contains("real-value-1"));
    let out = ssm
        .get_parameters()
        .names("/kaapi/staging/SECRET_KEY")
        .send()
        .await
        .expect("get parameters");
    assert!(
        out.parameters().is_empty(),
        "nothing written after a refusal"
    );

    let file = write(dir.path(), "good.env", "SECRET_KEY=real-value-1\nOTHER=x\n");
    let report = push_secrets(&target, &file, &aws).await.expect("push");
    assert_eq!(report.pushed, vec!["/kaapi/staging/SECRET_KEY"]);
    assert_eq!(report.undeclared, vec!["OTHER"]);
    assert_eq!(report.absent, vec!["FIRST_SUPERUSER_PASSWORD"]);
    // Overwrites.
    let file = write(dir.path(), "good2.env", "SECRET_KEY=real-value-2\n");
    push_secrets(&target, &file, &aws)
        .await
        .expect("push again");
    let parameter = ssm
        .get_parameter()
        .name("/kaapi/staging/SECRET_KEY")
        .with_decryption(true)
        .send()
        .await
        .expect("read back");
    let parameter = parameter.parameter().expect("parameter");
    assert_eq!(parameter.value(), Some("real-value-2"));
    assert_eq!(parameter.r#type().map(|t| t.as_str()), Some("SecureString"));

    let file = write(dir.path(), "none.env", "OTHER=x\n");
    let error = push_secrets(&target, &file, &aws)
        .await
        .expect_err("nothing to push");
    assert!(matches!(error, PushError::Nothing { .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_to_secrets_manager_creating_then_updating() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("deploy.toml");
    std::fs::write(
        &path,
        account::config_text().replace(
            "secrets_from = { ssm = \"/kaapi/staging/\" }",
            "secrets_from = { secrets_manager = \"kaapi/staging/\" }",
        ),
    )
    .expect("write config");
    let target = account::resolve(&path, ENVIRONMENT);
    let aws = moto.sdk_config().await;
    let client = aws_sdk_secretsmanager::Client::new(&aws);
    for value in ["first-value-1", "second-value-2"] {
        let file = write(
            dir.path(),
            "s.env",
            &format!("SECRET_KEY={value}\nFIRST_SUPERUSER_PASSWORD=pw-{value}\n"),
        );
        let report = push_secrets(&target, &file, &aws).await.expect("push");
        assert_eq!(
            report.pushed,
            vec![
                "kaapi/staging/SECRET_KEY",
                "kaapi/staging/FIRST_SUPERUSER_PASSWORD"
            ]
        );
        let secret = client
            .get_secret_value()
            .secret_id("kaapi/staging/SECRET_KEY")
            .send()
            .await
            .expect("read back");
        assert_eq!(secret.secret_string(), Some(value));
    }
    // The check finds them by name.
    let items = kaapi_infra::preflight::check_prerequisites(&target, &aws).await;
    let secrets: Vec<_> = items
        .iter()
        .filter(|i| i.name.starts_with("secret "))
        .collect();
    assert_eq!(secrets.len(), 2);
    assert!(
        secrets
            .iter()
            .all(|i| i.status == kaapi_infra::preflight::Status::Ok),
        "{secrets:?}"
    );
}
