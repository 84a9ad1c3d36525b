//! The AWS SDK configuration of an environment: the default credential chain, the
//! environment's region, and `AWS_ENDPOINT_URL` when set (tests point it at moto).

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sts::error::ProvideErrorMetadata;

pub async fn load(region: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    loader.load().await
}

/// The account the credentials belong to (STS GetCallerIdentity, which needs no permission).
pub async fn account_id(config: &SdkConfig) -> Result<String, String> {
    let out = aws_sdk_sts::Client::new(config)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| match (e.code(), e.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            _ => aws_sdk_sts::error::DisplayErrorContext(&e).to_string(),
        })?;
    out.account()
        .map(str::to_owned)
        .ok_or_else(|| "STS did not name the account".to_owned())
}
