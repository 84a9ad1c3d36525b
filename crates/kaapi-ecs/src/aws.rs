//! The AWS clients of one environment, from the standard credential chain (environment,
//! profile, SSO, web identity). `AWS_ENDPOINT_URL` is honoured by aws-config, which is how the
//! tests point every client at moto.

use aws_config::{BehaviorVersion, Region};

#[derive(Clone, Debug)]
pub struct AwsClients {
    pub region: String,
    pub ecs: aws_sdk_ecs::Client,
    pub ecr: aws_sdk_ecr::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub sts: aws_sdk_sts::Client,
}

impl AwsClients {
    /// Clients for `region` (the environment's), else the chain's region, else `us-east-1`.
    pub async fn from_environment(region: Option<&str>) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = region {
            loader = loader.region(Region::new(region.to_owned()));
        }
        let shared = loader.load().await;
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
            ssm: aws_sdk_ssm::Client::new(&shared),
            sts: aws_sdk_sts::Client::new(&shared),
        }
    }
}
