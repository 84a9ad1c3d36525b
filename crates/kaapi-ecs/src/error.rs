//! Turning SDK errors into engine errors that say which call failed and what to do.

use aws_sdk_ecs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use kaapi_core::engine::EngineError;

/// The error code AWS returned, when the service answered with one.
pub fn error_code<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> Option<&str> {
    match error {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}

/// Error codes that mean "slow down" rather than "this failed".
pub fn is_throttling(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "Throttling"
                | "ThrottlingException"
                | "ThrottledException"
                | "TooManyRequestsException"
                | "RequestLimitExceeded"
                | "RequestThrottled"
                | "RequestThrottledException"
                | "ProvisionedThroughputExceededException"
        )
    )
}

/// An engine error for a failed AWS call: `what` names the call (`ecs:UpdateService on …`).
pub fn aws_error<E, R>(what: &str, error: SdkError<E, R>) -> EngineError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = error_code(&error).map(str::to_owned);
    match (&error, code.as_deref()) {
        (SdkError::DispatchFailure(_), _) | (SdkError::TimeoutError(_), _) => {
            EngineError::unavailable(format!(
                "{what}: AWS could not be reached ({}); check the network, the region and AWS_ENDPOINT_URL",
                DisplayErrorContext(&error)
            ))
        }
        (
            _,
            Some(
                "UnrecognizedClientException"
                | "InvalidClientTokenId"
                | "ExpiredTokenException"
                | "ExpiredToken"
                | "InvalidSignatureException",
            ),
        ) => EngineError::unavailable(format!(
            "{what}: the AWS credentials were refused ({}); log in again (aws sso login, or check AWS_PROFILE / the role)",
            DisplayErrorContext(&error)
        )),
        (_, Some("AccessDeniedException" | "AccessDenied")) => EngineError::failed(format!(
            "{what}: access denied ({}); docs/ecs.md lists the IAM permissions the deploy role needs",
            DisplayErrorContext(&error)
        )),
        _ => EngineError::failed(format!("{what}: {}", DisplayErrorContext(&error))),
    }
}
