//! Turning SDK errors into engine errors that say which call failed and what to do.

use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};
use kaapi_aws::AwsError;
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
    R: std::fmt::Debug + 'static,
{
    engine_error(AwsError::from_sdk(what, &error))
}

/// An engine error for any AWS failure, with the hint that fits an ECS deploy.
pub fn engine_error(error: AwsError) -> EngineError {
    if error.is_access() {
        return EngineError::unavailable(error.to_string());
    }
    match &error {
        AwsError::Service {
            what,
            code,
            message,
        } if matches!(code.as_str(), "AccessDeniedException" | "AccessDenied") => {
            EngineError::failed(format!(
                "{what}: access denied ({code}: {message}); docs/ecs.md lists the IAM permissions the deploy role needs"
            ))
        }
        AwsError::Service { code, .. }
            if matches!(
                code.as_str(),
                "ClusterNotFoundException" | "ServiceNotFoundException" | "ServiceNotActiveException"
            ) =>
        {
            EngineError::not_found(format!(
                "{error}; create it (the infrastructure templates do, `kaapi-deploy check` lists what is missing) or set its name under [environments.ENV.names]"
            ))
        }
        _ => EngineError::failed(error.to_string()),
    }
}
