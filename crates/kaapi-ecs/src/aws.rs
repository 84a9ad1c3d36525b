//! The AWS clients of one environment, over the SDK config kaapi-aws loads for it (the
//! standard chain, or GitHub's OIDC role in CI).

use aws_config::Region;

#[derive(Clone, Debug)]
pub struct AwsClients {
    pub region: String,
    pub ecs: aws_sdk_ecs::Client,
    pub ecr: aws_sdk_ecr::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sts: aws_sdk_sts::Client,
}

impl AwsClients {
    /// Clients over an already loaded SDK config (e.g. credentials from GitHub's OIDC token).
    pub fn from_sdk_config(shared: aws_config::SdkConfig) -> Self {
        let region = shared
            .region()
            .map(|r| r.as_ref().to_owned())
            .unwrap_or_else(|| "us-east-1".to_owned());
        let shared = if shared.region().is_none() {
            shared
                .into_builder()
                .region(Region::new(region.clone()))
                .build()
        } else {
            shared
        };
        Self {
            region,
            ecs: aws_sdk_ecs::Client::new(&shared),
            ecr: aws_sdk_ecr::Client::new(&shared),
            logs: aws_sdk_cloudwatchlogs::Client::new(&shared),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&shared),
            dynamodb: aws_sdk_dynamodb::Client::new(&shared),
            sts: aws_sdk_sts::Client::new(&shared),
        }
    }
}
