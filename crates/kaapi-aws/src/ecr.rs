//! ECR registry logins: `GetAuthorizationToken` gives a base64 `AWS:<password>` pair and the
//! registry's endpoint, good for every repository of the account for 12 hours.

use aws_config::{Region, SdkConfig};
use base64::Engine as _;
use kaapi_core::engine::RegistryAuth;

use crate::error::AwsError;

const CALL: &str = "ecr:GetAuthorizationToken";

/// Where to push and pull, and the basic credentials for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrLogin {
    /// `123456789012.dkr.ecr.eu-west-1.amazonaws.com` (no scheme).
    pub host: String,
    pub auth: RegistryAuth,
}

/// The region of an ECR host (`123456789012.dkr.ecr.eu-west-1.amazonaws.com` → `eu-west-1`).
pub fn region_of_host(host: &str) -> Option<&str> {
    let rest = host.split_once(".dkr.ecr.")?.1;
    let region = rest.split('.').next()?;
    (!region.is_empty() && rest.contains("amazonaws.com")).then_some(region)
}

/// An ECR client of the account `sdk` is configured for, in `region` (default: the config's).
pub fn client(sdk: &SdkConfig, region: Option<&str>) -> aws_sdk_ecr::Client {
    match region {
        Some(r) => {
            aws_sdk_ecr::Client::new(&sdk.to_builder().region(Region::new(r.to_owned())).build())
        }
        None => aws_sdk_ecr::Client::new(sdk),
    }
}

/// The registry host and basic credentials of the client's account and region.
pub async fn login(ecr: &aws_sdk_ecr::Client) -> Result<EcrLogin, AwsError> {
    let region = ecr
        .config()
        .region()
        .map_or_else(|| "the default region".to_owned(), ToString::to_string);
    let fail = |message: &str| AwsError::Other {
        what: format!("{CALL} in {region}"),
        message: message.to_owned(),
    };
    let output = ecr
        .get_authorization_token()
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(&format!("{CALL} in {region}"), &e))?;
    let data = output
        .authorization_data()
        .first()
        .ok_or_else(|| fail("the answer holds no authorization data"))?;
    let token = data
        .authorization_token()
        .ok_or_else(|| fail("the answer holds no token"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| fail("the token is not base64 text"))?;
    let (username, password) = decoded
        .split_once(':')
        .ok_or_else(|| fail("the token is not USER:PASSWORD"))?;
    let host = data
        .proxy_endpoint()
        .unwrap_or_default()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    if host.is_empty() {
        return Err(fail("the answer holds no registry endpoint"));
    }
    Ok(EcrLogin {
        host,
        auth: RegistryAuth {
            username: username.to_owned(),
            password: password.to_owned(),
        },
    })
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
