//! The AWS SDK configuration of an environment, for every command: the SDK's standard chain
//! (keys, profile, SSO, web identity, container and instance roles), or in GitHub Actions
//! without credentials, GitHub's OIDC token exchanged for the environment's `role_arn`.
//! `AWS_ENDPOINT_URL` is honoured (tests point it at moto).

use aws_config::{BehaviorVersion, Region, SdkConfig};
use kaapi_core::config::EnvironmentConfig;
pub use kaapi_core::vars::{process_vars, Vars};

use crate::error::AwsError;
use crate::oidc::{self, TOKEN_URL_VAR, TOKEN_VAR};

/// Where the AWS credentials of a run come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// Keys, a web-identity token file or a profile are set: the SDK's standard chain.
    Present,
    /// GitHub's OIDC token exchanged for `role_arn`.
    GithubOidc { role_arn: String },
    /// Nothing set: the standard chain (instance or container roles, SSO), which may find none.
    DefaultChain,
}

fn is_set(vars: &Vars, name: &str) -> bool {
    vars.get(name).is_some_and(|v| !v.is_empty())
}

/// Decides where credentials come from, from the variables and the environment's config.
pub fn credential_source(env: &EnvironmentConfig, vars: &Vars) -> CredentialSource {
    let present = [
        "AWS_ACCESS_KEY_ID",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    ]
    .iter()
    .any(|name| is_set(vars, name));
    if present {
        return CredentialSource::Present;
    }
    match &env.role_arn {
        Some(role_arn) if is_set(vars, TOKEN_URL_VAR) && is_set(vars, TOKEN_VAR) => {
            CredentialSource::GithubOidc {
                role_arn: role_arn.clone(),
            }
        }
        _ => CredentialSource::DefaultChain,
    }
}

fn loader(region: Option<&str>, vars: &Vars) -> aws_config::ConfigLoader {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = region.filter(|r| !r.is_empty()) {
        loader = loader.region(Region::new(region.to_owned()));
    }
    // Read from the given variables too, so a caller (or a test) can point at an emulator.
    if let Some(url) = vars.get("AWS_ENDPOINT_URL").filter(|u| !u.is_empty()) {
        loader = loader.endpoint_url(url.clone());
    }
    loader
}

/// The AWS configuration for an environment's next calls, in `region` (default: the
/// environment's, else the chain's). With GitHub's OIDC variables and a `role_arn` (and no
/// credentials already present), the token is exchanged right away, so a missing permission or
/// trust fails here with a hint, not in the middle of a deploy.
pub async fn load(
    env: &EnvironmentConfig,
    region: Option<&str>,
    vars: &Vars,
) -> Result<SdkConfig, AwsError> {
    let region = region.or(env.region.as_deref());
    let CredentialSource::GithubOidc { role_arn } = credential_source(env, vars) else {
        return Ok(loader(region, vars).load().await);
    };
    let sts_config = loader(region, vars).no_credentials().load().await;
    let provider =
        oidc::GithubOidcProvider::primed(role_arn, vars, aws_sdk_sts::Client::new(&sts_config))
            .await?;
    Ok(loader(region, vars)
        .credentials_provider(provider)
        .load()
        .await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(role: Option<&str>) -> EnvironmentConfig {
        let text = match role {
            Some(r) => format!("engine = \"ecs\"\nregion = \"eu-west-1\"\nrole_arn = \"{r}\"\n"),
            None => "engine = \"ecs\"\nregion = \"eu-west-1\"\n".to_owned(),
        };
        toml::from_str(&text).expect("environment table")
    }

    fn vars(names: &[&str]) -> Vars {
        names
            .iter()
            .map(|n| (n.to_string(), "x".to_owned()))
            .collect()
    }

    #[test]
    fn oidc_needs_both_variables_and_a_role() {
        let role = "arn:aws:iam::123456789012:role/deploy";
        let both = vars(&[TOKEN_URL_VAR, TOKEN_VAR]);
        assert_eq!(
            credential_source(&env(Some(role)), &both),
            CredentialSource::GithubOidc {
                role_arn: role.to_owned()
            }
        );
        assert_eq!(
            credential_source(&env(None), &both),
            CredentialSource::DefaultChain
        );
        assert_eq!(
            credential_source(&env(Some(role)), &vars(&[TOKEN_URL_VAR])),
            CredentialSource::DefaultChain
        );
    }

    #[test]
    fn credentials_already_present_win_over_oidc() {
        let role = "arn:aws:iam::123456789012:role/deploy";
        for present in [
            "AWS_ACCESS_KEY_ID",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_PROFILE",
        ] {
            assert_eq!(
                credential_source(
                    &env(Some(role)),
                    &vars(&[TOKEN_URL_VAR, TOKEN_VAR, present])
                ),
                CredentialSource::Present,
                "{present}"
            );
        }
    }
}
