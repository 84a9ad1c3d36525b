//! The OIDC claims GitHub sends when a workflow's job asks for a token, as GitHub documents
//! them: `sub` is `repo:OWNER/REPO:environment:NAME` when the job names an environment, else
//! `repo:OWNER/REPO:ref:REF`; `aud` is `sts.amazonaws.com` with the official AWS action. The
//! trust check and the trust tests evaluate the deploy role's trust against these.

use std::path::{Path, PathBuf};

use kaapi_ci::workflows::{self, WorkflowOptions};
use kaapi_core::config::Config;
use serde_yaml::Value;

use crate::iam_eval::Request;
use crate::names::GITHUB_OIDC_HOST;
use crate::preflight::OIDC_AUDIENCE;

/// What one job of one workflow is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobClaims {
    /// `.github/workflows/cd-staging.yml#deploy`, for messages.
    pub job: String,
    pub sub: String,
    pub aud: String,
    /// An example ref the workflow's trigger accepts (`refs/tags/v1.0.0` for `v*`).
    pub git_ref: String,
    pub environment: Option<String>,
}

impl JobClaims {
    /// The `sts:AssumeRoleWithWebIdentity` request this token makes for `role_arn`.
    pub fn request(&self, role_arn: &str, provider_arn: &str) -> Request {
        Request::new("sts:AssumeRoleWithWebIdentity", role_arn)
            .principal("Federated", provider_arn)
            .with(&format!("{GITHUB_OIDC_HOST}:sub"), &[&self.sub])
            .with(&format!("{GITHUB_OIDC_HOST}:aud"), &[&self.aud])
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimsError {
    #[error("{workflow} is not a workflow GitHub can run: {reason}")]
    Workflow { workflow: String, reason: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Render(#[from] workflows::WorkflowError),
}

/// An example value a GitHub filter pattern accepts: `v*` → `v1.0.0`.
fn example_of(pattern: &str) -> String {
    pattern
        .replace("**", "*")
        .replace('*', "1.0.0")
        .replace('?', "1")
}

fn yaml_strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// The refs a `push` trigger runs on, one example per branch and tag filter.
fn pushed_refs(document: &Value) -> Vec<String> {
    let push = document.get("on").and_then(|on| on.get("push"));
    let mut refs: Vec<String> = yaml_strings(push.and_then(|p| p.get("branches")))
        .iter()
        .map(|b| format!("refs/heads/{}", example_of(b)))
        .collect();
    refs.extend(
        yaml_strings(push.and_then(|p| p.get("tags")))
            .iter()
            .map(|t| format!("refs/tags/{}", example_of(t))),
    );
    refs
}

/// The claims of every job of the workflow `text` (named `workflow` in messages) for each ref
/// it runs on, in `repository` (`OWNER/REPO`).
pub fn workflow_claims(
    workflow: &str,
    text: &str,
    repository: &str,
) -> Result<Vec<JobClaims>, ClaimsError> {
    let invalid = |reason: String| ClaimsError::Workflow {
        workflow: workflow.to_owned(),
        reason,
    };
    let document: Value = serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let refs = pushed_refs(&document);
    if refs.is_empty() {
        return Err(invalid(
            "it has no push trigger on a branch or tag".to_owned(),
        ));
    }
    let Some(Value::Mapping(jobs)) = document.get("jobs") else {
        return Err(invalid("it has no jobs".to_owned()));
    };
    let mut claims = Vec::new();
    for (name, job) in jobs {
        let name = name.as_str().unwrap_or_default();
        // `environment:` is a name, or a mapping with `name` and `url`.
        let environment = job.get("environment").and_then(|e| {
            e.as_str()
                .or_else(|| e.get("name").and_then(Value::as_str))
                .map(str::to_owned)
        });
        for git_ref in &refs {
            let sub = match &environment {
                Some(env) => format!("repo:{repository}:environment:{env}"),
                None => format!("repo:{repository}:ref:{git_ref}"),
            };
            claims.push(JobClaims {
                job: format!("{workflow}#{name}"),
                sub,
                aud: OIDC_AUDIENCE.to_owned(),
                git_ref: git_ref.clone(),
                environment: environment.clone(),
            });
        }
    }
    Ok(claims)
}

/// The claims of the workflow `init --github` writes for `environment` with `options`
/// (none when the environment has no trigger, so no workflow).
pub fn generated_claims(
    config: &Config,
    environment: &str,
    repository: &str,
    options: &WorkflowOptions,
) -> Result<Vec<JobClaims>, ClaimsError> {
    let path = workflow_path(environment);
    let mut claims = Vec::new();
    for workflow in workflows::render(config, options)? {
        if workflow.path == path {
            let label = workflow.path.to_string_lossy();
            claims.extend(workflow_claims(&label, &workflow.text, repository)?);
        }
    }
    Ok(claims)
}

/// Where `init --github` writes the workflow of `environment`, relative to the repository.
pub fn workflow_path(environment: &str) -> PathBuf {
    PathBuf::from(format!(".github/workflows/cd-{environment}.yml"))
}

/// The claims of the workflow of `environment` as committed under `repo_dir`, when it exists.
pub fn committed_claims(
    repo_dir: &Path,
    environment: &str,
    repository: &str,
) -> Result<Option<Vec<JobClaims>>, ClaimsError> {
    let path = repo_dir.join(workflow_path(environment));
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|source| ClaimsError::Read {
        path: path.clone(),
        source,
    })?;
    workflow_claims(&path.to_string_lossy(), &text, repository).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKFLOW: &str = "on:\n  push:\n    tags:\n      - \"v*\"\n    branches: [main]\njobs:\n  deploy:\n    environment: { name: prod gate, url: https://x }\n    runs-on: ubuntu-latest\n  notify:\n    runs-on: ubuntu-latest\n";

    #[test]
    fn jobs_with_an_environment_get_the_environment_subject() {
        let claims = workflow_claims("w.yml", WORKFLOW, "o/r").expect("valid workflow");
        let subs: Vec<(&str, &str)> = claims
            .iter()
            .map(|c| (c.job.as_str(), c.sub.as_str()))
            .collect();
        assert_eq!(
            subs,
            vec![
                ("w.yml#deploy", "repo:o/r:environment:prod gate"),
                ("w.yml#deploy", "repo:o/r:environment:prod gate"),
                ("w.yml#notify", "repo:o/r:ref:refs/heads/main"),
                ("w.yml#notify", "repo:o/r:ref:refs/tags/v1.0.0"),
            ]
        );
        assert!(claims.iter().all(|c| c.aud == "sts.amazonaws.com"));
    }

    #[test]
    fn a_workflow_without_push_trigger_is_refused() {
        let error = workflow_claims("w.yml", "on: workflow_dispatch\njobs: {}\n", "o/r")
            .expect_err("no push trigger");
        assert!(error.to_string().contains("no push trigger"), "{error}");
    }
}
