//! ECR logins for promotion, against moto's ECR: an ECS environment's target repository is
//! the account's ECR registry with the basic credentials GetAuthorizationToken hands out.

use std::path::Path;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use kaapi_ci::promote::target_repository;
use kaapi_core::config::parse;

#[tokio::test]
async fn an_ecs_environment_promotes_into_its_ecr_repository() {
    let moto = kaapi_testkit::moto();
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .endpoint_url(moto.url())
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .load()
        .await;
    let config = parse(
        Path::new("deploy.toml"),
        r#"
app = "kaapi"
[image]
context = "."
[services.backend]
port = 8000
[environments.production]
engine = "ecs"
region = "eu-west-1"
"#,
    )
    .expect("valid config")
    .0;

    let repository = target_repository(&config, "production", Some(&sdk))
        .await
        .expect("ECR login")
        .expect("an ECS environment always has a repository");

    assert_eq!(repository.name, "kaapi-repo");
    assert!(
        repository
            .host
            .ends_with(".dkr.ecr.eu-west-1.amazonaws.com")
            && !repository.host.contains("://"),
        "{}",
        repository.host
    );
    let auth = repository.auth.expect("basic credentials");
    assert_eq!(auth.username, "AWS");
    assert!(!auth.password.is_empty());
    assert!(
        !format!("{auth:?}").contains(&auth.password),
        "the password never shows in debug output"
    );
}

#[tokio::test]
async fn an_ecs_environment_without_aws_access_says_so() {
    let config = parse(
        Path::new("deploy.toml"),
        "app = \"kaapi\"\n[image]\ncontext = \".\"\n[services.backend]\nport = 8000\n[environments.production]\nengine = \"ecs\"\nregion = \"eu-west-1\"\n",
    )
    .expect("valid config")
    .0;
    let error = target_repository(&config, "production", None)
        .await
        .expect_err("no AWS configuration");
    assert!(error.to_string().contains("needs AWS access"), "{error}");
}
