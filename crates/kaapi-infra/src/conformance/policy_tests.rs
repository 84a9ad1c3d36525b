//! Rules of the generated deploy policy that the recorded requests (the conformance tests of
//! kaapi-ecs and of `check`) do not pin down: what it must keep denying.

use super::{configs, resolve, ACCOUNT, REGION};
use crate::iam_eval::{evaluate, Decision, Request};
use crate::policy::{deploy_policy, deploy_policy_with, Scope};
use crate::preflight::ECS_TASKS_SERVICE;

/// AWS's default execution role, which many accounts' live task definitions carry.
fn default_execution_role() -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/ecsTaskExecutionRole")
}

#[test]
fn recording_an_outcome_is_allowed_only_for_the_environments_families_and_outcome_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let scope = Scope::new(REGION, ACCOUNT);
    let (loaded, _) = configs(dir.path()).remove(0);
    let policy = deploy_policy(&resolve(&loaded, "staging"), &scope);
    let revision =
        |family: &str| format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:3");
    let outcome = |family: &str, keys: &[&str]| {
        evaluate(
            &policy,
            &Request::new("ecs:TagResource", &revision(family)).with("aws:TagKeys", keys),
        )
        .expect("evaluates")
    };
    assert_eq!(
        outcome("kaapi-staging-web", &["kaapi:outcome", "kaapi:detail"]),
        Decision::Allowed {
            statement: "EcsRecordOutcome".into()
        }
    );
    // Another environment's family, or rewriting a release's other tags, stays denied.
    assert!(!outcome("kaapi-production-web", &["kaapi:outcome"]).is_allowed());
    assert!(!outcome("kaapi-staging-web", &["kaapi:release"]).is_allowed());
}

#[test]
fn a_live_role_outside_the_config_is_passed_only_when_given_to_the_generator() {
    let dir = tempfile::tempdir().expect("temp dir");
    let scope = Scope::new(REGION, ACCOUNT);
    let (loaded, _) = configs(dir.path()).remove(0);
    let pass = Request::new("iam:PassRole", &default_execution_role())
        .with("iam:PassedToService", &[ECS_TASKS_SERVICE]);
    let staging = resolve(&loaded, "staging");
    let without = evaluate(&deploy_policy(&staging, &scope), &pass).expect("evaluates");
    assert_eq!(
        without,
        Decision::NotAllowed {
            closest: Some("PassTaskRoles".into())
        }
    );
    let with = deploy_policy_with(&staging, &scope, &[default_execution_role()]);
    assert!(evaluate(&with, &pass).expect("evaluates").is_allowed());
    // Passing it to another service stays denied.
    let to_lambda = pass.with("iam:PassedToService", &["lambda.amazonaws.com"]);
    assert!(!evaluate(&with, &to_lambda).expect("evaluates").is_allowed());
}

#[test]
fn recording_a_scaling_event_is_allowed_only_on_the_environments_services_and_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let scope = Scope::new(REGION, ACCOUNT);
    let (loaded, _) = configs(dir.path()).remove(0);
    let policy = deploy_policy(&resolve(&loaded, "staging"), &scope);
    let tag = |cluster: &str, service: &str, keys: &[&str]| {
        let arn = format!("arn:aws:ecs:{REGION}:{ACCOUNT}:service/{cluster}/{service}");
        evaluate(
            &policy,
            &Request::new("ecs:TagResource", &arn).with("aws:TagKeys", keys),
        )
        .expect("evaluates")
    };
    assert_eq!(
        tag(
            "kaapi-staging-cluster",
            "kaapi-staging-worker-service",
            &["kaapi:scaled"]
        ),
        Decision::Allowed {
            statement: "EcsRecordScaling".into()
        }
    );
    // Another environment's service, or a release's tags on a service, stay denied.
    assert!(!tag("kaapi-cluster", "kaapi-worker-service", &["kaapi:scaled"]).is_allowed());
    assert!(!tag(
        "kaapi-staging-cluster",
        "kaapi-staging-worker-service",
        &["kaapi:outcome"]
    )
    .is_allowed());
}
