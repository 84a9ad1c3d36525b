//! `check` against a complete account on moto, which lets every call through: each request it
//! sends is recorded on the wire, mapped to what IAM authorizes for it, checked against AWS's
//! IAM definitions and evaluated against the policy `infra policy` generates, as AWS would.

use kaapi_infra::conformance::authorizations::ApiCall;
use kaapi_infra::conformance::refusals;
use kaapi_infra::policy::{self, Scope};
use kaapi_infra::preflight::{self, CheckOptions, Status};
use kaapi_testkit::aws_record::Recorder;

use crate::support::account::{self, Account, REPOSITORY};
use crate::support::moto::{Moto, ACCOUNT, REGION};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_policy_allows_every_request_check_sends() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let target = account::write_config(dir.path());
    let aws = moto.sdk_config().await;
    Account {
        target: &target,
        aws: &aws,
    }
    .create(None)
    .await;

    let wire = Recorder::new();
    let options = CheckOptions {
        repository: Some(REPOSITORY.to_owned()),
    };
    let items =
        preflight::check_prerequisites_with(&target, &wire.sdk_config(&aws), &options).await;
    assert!(
        items.iter().all(|i| i.status != Status::Missing),
        "{}",
        preflight::render(&items)
    );
    let calls = wire.calls();
    for expected in [
        "iam:GetRole",
        "iam:GetRolePolicy",
        "ecs:DescribeServices",
        "ssm:GetParameters",
        "rds:DescribeDBInstances",
    ] {
        assert!(
            calls
                .iter()
                .any(|c| format!("{}:{}", c.service, c.operation) == expected),
            "no {expected} recorded: {calls:#?}"
        );
    }
    let api: Vec<ApiCall<'_>> = calls
        .iter()
        .map(|c| ApiCall {
            service: &c.service,
            operation: &c.operation,
            params: &c.params,
        })
        .collect();
    let scope = Scope::new(REGION, ACCOUNT);
    let problems = refusals(&api, &policy::deploy_policy(&target, &scope), &scope);
    assert!(
        problems.is_empty(),
        "{} recorded calls; on AWS:\n{}",
        calls.len(),
        problems.join("\n")
    );
}
