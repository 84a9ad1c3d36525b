//! A call without credentials fails with one line saying what to set, not the SDK's chain of
//! provider and dispatch failures.

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials};
use kaapi_aws::AwsError;

/// A provider that never has credentials, like an empty standard chain (without its IMDS wait).
#[derive(Debug)]
struct NoCredentials;

impl ProvideCredentials for NoCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
            "no providers in chain provided credentials",
        )))
    }
}

#[tokio::test]
async fn a_call_without_credentials_says_how_to_get_some() {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        // Never reached: resolving credentials fails first.
        .endpoint_url("http://127.0.0.1:9")
        .credentials_provider(NoCredentials)
        .load()
        .await;

    let error = kaapi_aws::account::account_id(&aws_sdk_sts::Client::new(&sdk))
        .await
        .expect_err("no credentials");

    assert!(matches!(error, AwsError::NoCredentials { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with("sts:GetCallerIdentity: no AWS credentials found"),
        "{message}"
    );
    assert!(message.contains("AWS_PROFILE"), "{message}");
    assert!(!message.contains("dispatch failure"), "{message}");
    assert!(!message.contains('\n'), "{message}");
}
