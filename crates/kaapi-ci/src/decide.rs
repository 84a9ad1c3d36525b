//! What `kaapi-deploy ci` does for a git ref: deploy an environment, do nothing (exit 0) or
//! refuse (exit 2). The matching itself is the core's (`kaapi_core::trigger`).

use kaapi_core::config::Config;
use kaapi_core::trigger::{self, Resolution};

/// Exit code of a ref that looks like a release but cannot be one: a usage error.
pub const EXIT_REFUSED: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CiDecision {
    /// Run the pipeline for `environment`; `version` is the release tag (`v1.2.3`).
    Deploy {
        environment: String,
        version: Option<String>,
    },
    /// Nothing to deploy; the reason is printed and the job succeeds.
    Nothing { reason: String },
    /// The ref cannot be deployed as asked (e.g. `v1.2`); the job fails with exit 2.
    Refused { reason: String },
}

impl CiDecision {
    /// The exit code when no deploy runs (`None` for `Deploy`: the pipeline decides).
    pub fn exit_code(&self) -> Option<u8> {
        match self {
            CiDecision::Deploy { .. } => None,
            CiDecision::Nothing { .. } => Some(0),
            CiDecision::Refused { .. } => Some(EXIT_REFUSED),
        }
    }
}

/// The decision for `git_ref`. A tag that no environment's tag trigger matches (`latest`) is
/// nothing to deploy, like any other ref that triggers nothing; only a tag that looks like a
/// release to some environment but is not a release version (`v1.2`) is refused.
pub fn decide(config: &Config, git_ref: &str) -> CiDecision {
    if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
        let patterns: Vec<&str> = config
            .environments
            .values()
            .filter_map(|env| env.trigger.as_ref()?.tags.as_deref())
            .collect();
        if !patterns.iter().any(|p| trigger::pattern_matches(p, tag)) {
            let reason = if patterns.is_empty() {
                format!("tag `{tag}` does not trigger any environment (no environment has a tag trigger)")
            } else {
                format!(
                    "tag `{tag}` does not trigger any environment (tag triggers: {})",
                    patterns.join(", ")
                )
            };
            return CiDecision::Nothing { reason };
        }
    }
    match trigger::resolve(config, git_ref) {
        Resolution::Deploy {
            environment,
            version,
        } => CiDecision::Deploy {
            environment,
            version,
        },
        Resolution::Nothing { reason } => CiDecision::Nothing { reason },
        Resolution::Refused { reason } => CiDecision::Refused { reason },
    }
}
