//! AWS credentials in CI without stored keys: GitHub's OIDC ID token (audience
//! `sts.amazonaws.com`) exchanged with STS `AssumeRoleWithWebIdentity` for the environment's
//! `role_arn`. Credentials already present (keys, a web-identity token file, a profile: e.g. from
//! `aws-actions/configure-aws-credentials`) win, through the SDK's standard chain.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials};
use aws_credential_types::Credentials;
use kaapi_core::config::EnvironmentConfig;

use crate::github::Vars;

const AUDIENCE: &str = "sts.amazonaws.com";
const TOKEN_URL_VAR: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
const TOKEN_VAR: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("cannot get GitHub's OIDC token from {TOKEN_URL_VAR}: {message}; does the workflow grant `permissions: id-token: write`?")]
    Token { message: String },
    #[error("STS refused AssumeRoleWithWebIdentity for {role_arn}: {message}; check that the role trusts token.actions.githubusercontent.com for this repository (docs/ci.md)")]
    AssumeRole { role_arn: String, message: String },
}

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

fn set(vars: &Vars, name: &str) -> bool {
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
    .any(|name| set(vars, name));
    if present {
        return CredentialSource::Present;
    }
    match &env.role_arn {
        Some(role_arn) if set(vars, TOKEN_URL_VAR) && set(vars, TOKEN_VAR) => {
            CredentialSource::GithubOidc {
                role_arn: role_arn.clone(),
            }
        }
        _ => CredentialSource::DefaultChain,
    }
}

/// `kaapi-{owner}-{repo}-{run}`, limited to what STS accepts (`[\w+=,.@-]`, 2–64 characters).
pub fn role_session_name(repository: &str, run_id: &str) -> String {
    let raw = format!("kaapi-{}-{}", repository.replace('/', "-"), run_id);
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    // Keep the run id (the end) when the repository name is long.
    let skip = cleaned.chars().count().saturating_sub(64);
    cleaned.chars().skip(skip).collect()
}

/// The ID token request URL with the STS audience (the URL already has a query string).
fn token_url(request_url: &str) -> String {
    let separator = if request_url.contains('?') { '&' } else { '?' };
    format!("{request_url}{separator}audience={AUDIENCE}")
}

/// GETs GitHub's OIDC ID token for the STS audience.
pub async fn fetch_id_token(
    http: &reqwest::Client,
    request_url: &str,
    request_token: &str,
) -> Result<String, OidcError> {
    #[derive(serde::Deserialize)]
    struct TokenResponse {
        value: String,
    }
    let token_error = |message: String| OidcError::Token { message };
    let response = http
        .get(token_url(request_url))
        .header(
            reqwest::header::AUTHORIZATION,
            format!("bearer {request_token}"),
        )
        .header(reqwest::header::ACCEPT, "application/json; api-version=2.0")
        .send()
        .await
        .map_err(|e| token_error(e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(token_error(format!("the token endpoint answered {status}")));
    }
    let body: TokenResponse = response
        .json()
        .await
        .map_err(|e| token_error(format!("unexpected answer: {e}")))?;
    if body.value.is_empty() {
        return Err(token_error("the answer holds an empty token".to_owned()));
    }
    Ok(body.value)
}

/// Exchanges an ID token for the role's temporary credentials.
pub async fn assume_role(
    sts: &aws_sdk_sts::Client,
    role_arn: &str,
    session_name: &str,
    id_token: &str,
) -> Result<Credentials, OidcError> {
    let fail = |message: String| OidcError::AssumeRole {
        role_arn: role_arn.to_owned(),
        message,
    };
    let output = sts
        .assume_role_with_web_identity()
        .role_arn(role_arn)
        .role_session_name(session_name)
        .web_identity_token(id_token)
        .send()
        .await
        .map_err(|e| fail(aws_sdk_sts::error::DisplayErrorContext(e).to_string()))?;
    let creds = output
        .credentials()
        .ok_or_else(|| fail("the answer holds no credentials".to_owned()))?;
    let expiry = SystemTime::try_from(*creds.expiration()).ok();
    Ok(Credentials::new(
        creds.access_key_id(),
        creds.secret_access_key(),
        Some(creds.session_token().to_owned()),
        expiry,
        "GitHubOidc",
    ))
}

/// A credentials provider that repeats the token exchange whenever the SDK's cache needs fresh
/// credentials (they last an hour; a long deploy outlives them).
struct GithubOidcProvider {
    http: reqwest::Client,
    request_url: String,
    request_token: String,
    role_arn: String,
    session_name: String,
    sts: aws_sdk_sts::Client,
    /// Credentials from the exchange done up front (to fail early), used once.
    primed: Mutex<Option<Credentials>>,
}

impl std::fmt::Debug for GithubOidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubOidcProvider")
            .field("role_arn", &self.role_arn)
            .field("session_name", &self.session_name)
            .finish_non_exhaustive()
    }
}

impl GithubOidcProvider {
    async fn exchange(&self) -> Result<Credentials, OidcError> {
        let token = fetch_id_token(&self.http, &self.request_url, &self.request_token).await?;
        assume_role(&self.sts, &self.role_arn, &self.session_name, &token).await
    }

    async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        let primed = self.primed.lock().ok().and_then(|mut p| p.take());
        match primed {
            Some(credentials) => Ok(credentials),
            None => self
                .exchange()
                .await
                .map_err(CredentialsError::provider_error),
        }
    }
}

impl ProvideCredentials for GithubOidcProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.credentials())
    }
}

fn loader(region: &str, vars: &Vars) -> aws_config::ConfigLoader {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region.to_owned()));
    // Read from the given variables too, so a caller (or a test) can point at an emulator.
    if let Some(url) = vars.get("AWS_ENDPOINT_URL").filter(|u| !u.is_empty()) {
        loader = loader.endpoint_url(url.clone());
    }
    loader
}

/// The AWS configuration for an environment's next calls. With GitHub's OIDC variables and a
/// `role_arn` (and no credentials already present), the token is exchanged right away, so a
/// missing permission or trust fails here with a hint, not in the middle of a deploy.
pub async fn aws_config_for(
    env: &EnvironmentConfig,
    region: &str,
    vars: &Vars,
) -> Result<SdkConfig, OidcError> {
    let CredentialSource::GithubOidc { role_arn } = credential_source(env, vars) else {
        return Ok(loader(region, vars).load().await);
    };
    let sts_config = loader(region, vars).no_credentials().load().await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| OidcError::Token {
            message: e.to_string(),
        })?;
    let provider = GithubOidcProvider {
        http,
        request_url: vars.get(TOKEN_URL_VAR).cloned().unwrap_or_default(),
        request_token: vars.get(TOKEN_VAR).cloned().unwrap_or_default(),
        session_name: role_session_name(
            vars.get("GITHUB_REPOSITORY").map_or("", String::as_str),
            vars.get("GITHUB_RUN_ID").map_or("", String::as_str),
        ),
        role_arn,
        sts: aws_sdk_sts::Client::new(&sts_config),
        primed: Mutex::new(None),
    };
    let first = provider.exchange().await?;
    if let Ok(mut primed) = provider.primed.lock() {
        *primed = Some(first);
    }
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

    #[test]
    fn session_names_are_valid_for_sts() {
        assert_eq!(role_session_name("acme/kaapi", "77"), "kaapi-acme-kaapi-77");
        let long = role_session_name(&format!("acme/{}", "x".repeat(100)), "123456");
        assert_eq!(long.len(), 64);
        assert!(long.ends_with("-123456"), "{long}");
        assert_eq!(role_session_name("a b/c", "1"), "kaapi-a-b-c-1");
    }

    #[test]
    fn the_audience_is_appended_to_the_request_url() {
        assert_eq!(
            token_url("https://t.example/token?api-version=2.0"),
            "https://t.example/token?api-version=2.0&audience=sts.amazonaws.com"
        );
        assert_eq!(
            token_url("http://127.0.0.1:9/token"),
            "http://127.0.0.1:9/token?audience=sts.amazonaws.com"
        );
    }
}
