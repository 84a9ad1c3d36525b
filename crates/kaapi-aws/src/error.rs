//! What went wrong with an AWS call, in one line that says what is missing and what to do.
//! The SDK's own rendering walks the whole chain (dispatch failure, every credential provider,
//! IMDS timeouts): useful in a debugger, noise for people.

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};

/// How to get credentials, for every message about missing ones.
const CREDENTIALS_HINT: &str = "set AWS_PROFILE or AWS_ACCESS_KEY_ID, or run in GitHub Actions with `permissions: id-token: write` and role_arn set";

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("{what}: no AWS credentials found ({reason}); {CREDENTIALS_HINT}")]
    NoCredentials { what: String, reason: String },
    #[error("{what}: cannot load the AWS credentials ({reason}); log in again (aws sso login) or check AWS_PROFILE and the environment's role_arn")]
    CredentialsFailed { what: String, reason: String },
    #[error("{what}: the AWS credentials were refused ({said}); log in again (aws sso login, or check AWS_PROFILE / the role)")]
    Refused { what: String, said: String },
    #[error("{what}: AWS could not be reached ({reason}); check the network, the region and AWS_ENDPOINT_URL")]
    Unreachable { what: String, reason: String },
    /// AWS answered with an error code (`AccessDenied`, `ClusterNotFoundException`, …).
    #[error("{what}: {code}: {message}")]
    Service {
        what: String,
        code: String,
        message: String,
    },
    /// Anything else: a malformed request or answer.
    #[error("{what}: {message}")]
    Other { what: String, message: String },
    #[error("cannot get GitHub's OIDC token from ACTIONS_ID_TOKEN_REQUEST_URL: {message}; does the workflow grant `permissions: id-token: write`?")]
    OidcToken { message: String },
    #[error("STS refused AssumeRoleWithWebIdentity for {role_arn}: {message}; check that the role trusts token.actions.githubusercontent.com for this repository (docs/ci.md)")]
    AssumeRole { role_arn: String, message: String },
}

/// Error codes meaning the credentials exist but AWS does not accept them.
const REFUSED_CODES: [&str; 5] = [
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredTokenException",
    "ExpiredToken",
    "InvalidSignatureException",
];

impl AwsError {
    /// Classifies a failed SDK call; `what` names it (`ecs:UpdateService on …`).
    pub fn from_sdk<E, R>(what: &str, error: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + StdError + 'static,
        R: std::fmt::Debug + 'static,
    {
        let what = what.to_owned();
        if let Some(credentials) = credentials_error(error) {
            return Self::from_credentials(what, credentials);
        }
        match error {
            SdkError::ServiceError(service) => {
                let code = service.err().code().unwrap_or("error").to_owned();
                let message = service.err().message().unwrap_or("no message").to_owned();
                if REFUSED_CODES.contains(&code.as_str()) {
                    Self::Refused {
                        what,
                        said: format!("{code}: {message}"),
                    }
                } else {
                    Self::Service {
                        what,
                        code,
                        message,
                    }
                }
            }
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => Self::Unreachable {
                what,
                reason: innermost(error),
            },
            _ => Self::Other {
                what,
                message: innermost(error),
            },
        }
    }

    /// A credential provider's failure: none configured, or one that failed to load.
    pub fn from_credentials(what: String, error: &CredentialsError) -> Self {
        match error {
            CredentialsError::CredentialsNotLoaded(_) => Self::NoCredentials {
                what,
                reason: "no provider of the standard chain had any".to_owned(),
            },
            CredentialsError::ProviderTimedOut(_) => Self::NoCredentials {
                what,
                reason: error.to_string(),
            },
            // The provider's own error (e.g. OIDC's) is the one worth a line.
            _ => Self::CredentialsFailed {
                what,
                reason: error
                    .source()
                    .map_or_else(|| error.to_string(), ToString::to_string),
            },
        }
    }

    /// The error code AWS answered with, if it answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    /// True when the problem is reaching AWS or being let in, not the request itself.
    pub fn is_access(&self) -> bool {
        matches!(
            self,
            Self::NoCredentials { .. }
                | Self::CredentialsFailed { .. }
                | Self::Refused { .. }
                | Self::Unreachable { .. }
                | Self::OidcToken { .. }
                | Self::AssumeRole { .. }
        )
    }
}

/// What AWS said about a failed call, on one line: `Code: message` when the service answered,
/// else the cause (`Connection refused (os error 111)`).
pub fn said<E, R>(error: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: std::fmt::Debug + 'static,
{
    match error {
        SdkError::ServiceError(service) => format!(
            "{}: {}",
            service.err().code().unwrap_or("error"),
            service.err().message().unwrap_or("no message")
        ),
        _ => innermost(error),
    }
}

/// The credential error a call failed on, if resolving credentials is what failed.
fn credentials_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a CredentialsError> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<CredentialsError>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// The last error of the chain (`Connection refused (os error 111)`): the cause, on one line.
fn innermost(error: &(dyn StdError + 'static)) -> String {
    let mut last = error;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_credentials_say_how_to_get_some() {
        let error = AwsError::from_credentials(
            "sts:GetCallerIdentity".to_owned(),
            &CredentialsError::not_loaded("no providers in chain provided credentials"),
        );
        let message = error.to_string();
        assert!(message.contains("no AWS credentials found"), "{message}");
        assert!(message.contains("AWS_PROFILE"), "{message}");
        assert!(message.contains("id-token: write"), "{message}");
        assert!(!message.contains('\n'), "{message}");
        assert!(error.is_access());
    }

    #[test]
    fn a_failing_provider_shows_its_own_reason() {
        let cause = AwsError::OidcToken {
            message: "the token endpoint answered 403".to_owned(),
        };
        let error = AwsError::from_credentials(
            "ecs:DescribeServices".to_owned(),
            &CredentialsError::provider_error(cause),
        );
        assert!(error.to_string().contains("answered 403"), "{error}");
    }
}
