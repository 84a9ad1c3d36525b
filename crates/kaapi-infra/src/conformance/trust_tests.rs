//! The generated trust policy against the tokens GitHub sends every workflow `init --github`
//! writes, with and without `--github-environment`.

use kaapi_ci::workflows::{self, WorkflowOptions};

use super::definitions::Definitions;
use super::{configs, ACCOUNT, REGION, REPOSITORY};
use crate::github_claims::{workflow_claims, JobClaims};
use crate::iam_eval::{evaluate, Decision};
use crate::policy::{trust_policy_for, Scope};

const ROLE: &str = "arn:aws:iam::123456789012:role/kaapi-deploy";

/// The claims of every job of every workflow rendered with `options`.
fn claims(
    config: &kaapi_core::config::Config,
    options: &WorkflowOptions,
    repository: &str,
) -> Vec<JobClaims> {
    let rendered = workflows::render(config, options).expect("the config has triggers");
    rendered
        .iter()
        .flat_map(|w| {
            workflow_claims(&w.path.to_string_lossy(), &w.text, repository).expect("valid workflow")
        })
        .collect()
}

fn decide(trust: &serde_json::Value, claim: &JobClaims, definitions: &Definitions) -> Decision {
    let scope = Scope::new(REGION, ACCOUNT);
    let request = claim.request(ROLE, &scope.oidc_provider_arn());
    assert_eq!(definitions.problem(&request), None, "{request}");
    evaluate(trust, &request).expect("evaluates")
}

#[test]
fn the_trust_accepts_every_generated_workflow_and_refuses_other_repositories() {
    let definitions = Definitions::load();
    let dir = tempfile::tempdir().expect("temp dir");
    let scope = Scope::new(REGION, ACCOUNT);
    for (loaded, environments) in configs(dir.path()) {
        for github_environment in [workflows::DEFAULT_GITHUB_ENVIRONMENT, "prod-gate"] {
            let options = WorkflowOptions {
                github_environment: github_environment.to_owned(),
                ..WorkflowOptions::default()
            };
            for env in &environments {
                let trust = trust_policy_for(
                    &super::resolve(&loaded, env),
                    REPOSITORY,
                    &[github_environment],
                    &scope,
                )
                .expect("trust policy");
                let ours = claims(&loaded.config, &options, REPOSITORY);
                assert!(!ours.is_empty(), "no workflow to check");
                for claim in &ours {
                    assert!(claim.sub.contains(":environment:"), "{claim:?}");
                    let decision = decide(&trust, claim, &definitions);
                    assert!(
                        decision.is_allowed(),
                        "{env}: {claim:?} → {decision:?}\n{trust:#}"
                    );
                }
                for claim in claims(&loaded.config, &options, "someone/else") {
                    let decision = decide(&trust, &claim, &definitions);
                    assert!(!decision.is_allowed(), "{env}: {claim:?} → {decision:?}");
                }
            }
        }
    }
}

#[test]
fn jobs_without_an_environment_are_trusted_by_their_trigger_ref_only() {
    let definitions = Definitions::load();
    let dir = tempfile::tempdir().expect("temp dir");
    let scope = Scope::new(REGION, ACCOUNT);
    let (loaded, _) = configs(dir.path()).remove(0);
    let trust = trust_policy_for(
        &super::resolve(&loaded, "staging"),
        REPOSITORY,
        &["AWS_ENV_VARS"],
        &scope,
    )
    .expect("trust policy");
    for workflow in workflows::render(&loaded.config, &WorkflowOptions::default()).expect("render")
    {
        // The same workflow with its `environment:` line removed: GitHub then sends the ref.
        let text: String = workflow
            .text
            .lines()
            .filter(|l| !l.trim_start().starts_with("environment:"))
            .map(|l| format!("{l}\n"))
            .collect();
        for claim in workflow_claims("w.yml", &text, REPOSITORY).expect("valid workflow") {
            assert!(claim.sub.contains(":ref:refs/"), "{claim:?}");
            assert!(
                decide(&trust, &claim, &definitions).is_allowed(),
                "{claim:?}\n{trust:#}"
            );
        }
    }
    // A branch no environment deploys from is refused.
    let mut stray = workflow_claims(
        "w.yml",
        "on:\n  push:\n    branches: [feature]\njobs:\n  deploy:\n    runs-on: x\n",
        REPOSITORY,
    )
    .expect("valid workflow");
    let claim = stray.remove(0);
    assert!(
        !decide(&trust, &claim, &definitions).is_allowed(),
        "{claim:?}"
    );
}

#[test]
fn a_wrong_audience_is_refused() {
    let definitions = Definitions::load();
    let dir = tempfile::tempdir().expect("temp dir");
    let scope = Scope::new(REGION, ACCOUNT);
    let (loaded, _) = configs(dir.path()).remove(0);
    let trust = trust_policy_for(
        &super::resolve(&loaded, "staging"),
        REPOSITORY,
        &["AWS_ENV_VARS"],
        &scope,
    )
    .expect("trust policy");
    let mut claim = claims(&loaded.config, &WorkflowOptions::default(), REPOSITORY).remove(0);
    assert!(decide(&trust, &claim, &definitions).is_allowed());
    claim.aud = "https://github.com/kaapi-org".to_owned();
    assert!(!decide(&trust, &claim, &definitions).is_allowed());
}
