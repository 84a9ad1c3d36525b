//! ECR logins against moto's ECR: the account's registry host and the basic credentials
//! GetAuthorizationToken hands out.

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use kaapi_aws::ecr;

#[tokio::test]
async fn a_login_names_the_accounts_registry_and_basic_credentials() {
    let moto = kaapi_testkit::moto();
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(moto.url())
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .load()
        .await;

    let login = ecr::login(&ecr::client(&sdk, Some("eu-west-1")))
        .await
        .expect("ECR login");

    assert!(
        login.host.ends_with(".dkr.ecr.eu-west-1.amazonaws.com") && !login.host.contains("://"),
        "{}",
        login.host
    );
    assert_eq!(login.auth.username, "AWS");
    assert!(!login.auth.password.is_empty());
    assert!(
        !format!("{:?}", login.auth).contains(&login.auth.password),
        "the password never shows in debug output"
    );
}
