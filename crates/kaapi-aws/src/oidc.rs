//! AWS credentials in CI without stored keys: GitHub's OIDC ID token (audience
//! `sts.amazonaws.com`) exchanged with STS `AssumeRoleWithWebIdentity` for the environment's
//! `role_arn`. Credentials already present (keys, a web-identity token file, a profile: e.g. from
//! `aws-actions/configure-aws-credentials`) win, through the SDK's standard chain.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials};
use aws_credential_types::Credentials;

use crate::config::Vars;
use crate::error::AwsError;

const AUDIENCE: &str = "sts.amazonaws.com";
pub(crate) const TOKEN_URL_VAR: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
pub(crate) const TOKEN_VAR: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";

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
) -> Result<String, AwsError> {
    #[derive(serde::Deserialize)]
    struct TokenResponse {
        value: String,
    }
    let token_error = |message: String| AwsError::OidcToken { message };
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
) -> Result<Credentials, AwsError> {
    let fail = |message: String| AwsError::AssumeRole {
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
        .map_err(|e| fail(crate::error::said(&e)))?;
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
pub(crate) struct GithubOidcProvider {
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
    async fn exchange(&self) -> Result<Credentials, AwsError> {
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

impl GithubOidcProvider {
    /// A provider for `role_arn` whose first exchange is done now, so a missing permission or
    /// trust fails before any work starts.
    pub(crate) async fn primed(
        role_arn: String,
        vars: &Vars,
        sts: aws_sdk_sts::Client,
    ) -> Result<Self, AwsError> {
        let var = |name: &str| vars.get(name).map_or("", String::as_str);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| AwsError::OidcToken {
                message: e.to_string(),
            })?;
        let provider = Self {
            http,
            request_url: var(TOKEN_URL_VAR).to_owned(),
            request_token: var(TOKEN_VAR).to_owned(),
            session_name: role_session_name(var("GITHUB_REPOSITORY"), var("GITHUB_RUN_ID")),
            role_arn,
            sts,
            primed: Mutex::new(None),
        };
        let first = provider.exchange().await?;
        if let Ok(mut primed) = provider.primed.lock() {
            *primed = Some(first);
        }
        Ok(provider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
