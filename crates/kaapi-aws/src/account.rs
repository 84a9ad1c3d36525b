//! The AWS account the credentials belong to.

use crate::error::AwsError;

const CALL: &str = "sts:GetCallerIdentity";

/// The account ID (STS GetCallerIdentity, which needs no permission).
pub async fn account_id(sts: &aws_sdk_sts::Client) -> Result<String, AwsError> {
    let out = sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(CALL, &e))?;
    out.account()
        .map(str::to_owned)
        .ok_or_else(|| AwsError::Other {
            what: CALL.to_owned(),
            message: "the answer names no account".to_owned(),
        })
}
