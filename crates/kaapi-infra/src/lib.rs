//! Infrastructure for kaapi-deploy on AWS: the preflight check of every prerequisite, the
//! CloudFormation template that creates them, the deploy role's least-privilege IAM policies,
//! and pushing secret values to SSM Parameter Store or Secrets Manager.

pub mod ecs_exec;
pub mod github_claims;
pub mod iam_eval;
pub mod names;
pub mod policy;
pub mod preflight;
pub mod repository;
pub mod secrets_push;
pub mod task_size;
pub mod template;
pub mod trust;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
