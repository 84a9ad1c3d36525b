//! ECR registry logins: `GetAuthorizationToken` gives a base64 `AWS:<password>` pair and the
//! registry's endpoint, good for every repository of the account for 12 hours.

use aws_config::{Region, SdkConfig};
use base64::Engine as _;
use kaapi_core::engine::RegistryAuth;

#[derive(Debug, thiserror::Error)]
#[error("cannot log in to ECR in {region}: {message}")]
pub struct EcrError {
    pub region: String,
    pub message: String,
}

/// The region of an ECR host (`123456789012.dkr.ecr.eu-west-1.amazonaws.com` → `eu-west-1`).
pub fn region_of_host(host: &str) -> Option<&str> {
    let rest = host.split_once(".dkr.ecr.")?.1;
    let region = rest.split('.').next()?;
    (!region.is_empty() && rest.contains("amazonaws.com")).then_some(region)
}

/// The registry host and basic credentials of the account `sdk` is configured for, in
/// `region` (default: the config's region).
pub async fn login(
    sdk: &SdkConfig,
    region: Option<&str>,
) -> Result<(String, RegistryAuth), EcrError> {
    let sdk = match region {
        Some(r) => sdk.to_builder().region(Region::new(r.to_owned())).build(),
        None => sdk.clone(),
    };
    let region_name = sdk
        .region()
        .map(ToString::to_string)
        .unwrap_or_else(|| "the default region".to_owned());
    let fail = |message: String| EcrError {
        region: region_name.clone(),
        message,
    };
    let output = aws_sdk_ecr::Client::new(&sdk)
        .get_authorization_token()
        .send()
        .await
        .map_err(|e| fail(aws_sdk_ecr::error::DisplayErrorContext(e).to_string()))?;
    let data = output
        .authorization_data()
        .first()
        .ok_or_else(|| fail("the answer holds no authorization data".to_owned()))?;
    let token = data
        .authorization_token()
        .ok_or_else(|| fail("the answer holds no token".to_owned()))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|e| fail(format!("the token is not base64: {e}")))?;
    let decoded =
        String::from_utf8(decoded).map_err(|_| fail("the token is not text".to_owned()))?;
    let (username, password) = decoded
        .split_once(':')
        .ok_or_else(|| fail("the token is not USER:PASSWORD".to_owned()))?;
    let endpoint = data
        .proxy_endpoint()
        .ok_or_else(|| fail("the answer holds no registry endpoint".to_owned()))?;
    let host = endpoint
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    Ok((
        host,
        RegistryAuth {
            username: username.to_owned(),
            password: password.to_owned(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_region_of_an_ecr_host() {
        assert_eq!(
            region_of_host("123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
            Some("eu-west-1")
        );
        assert_eq!(region_of_host("127.0.0.1:5000"), None);
    }
}
