//! Which environment a git ref deploys to. `refs/heads/main` → staging, `refs/tags/v1.2.3` →
//! production, as configured by each environment's `trigger`.

use serde::Serialize;

use crate::config::Config;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Resolution {
    /// Deploy to `environment`; `version` is set for version tags.
    Deploy {
        environment: String,
        version: Option<String>,
    },
    /// Nothing to deploy for this ref (exit 0).
    Nothing { reason: String },
    /// The ref looks like a release but cannot be one (exit 2).
    Refused { reason: String },
}

/// Checks a trigger pattern: a ref name where `*` matches any run of characters.
pub fn validate_pattern(pattern: &str) -> Result<(), String> {
    if pattern.trim().is_empty() {
        return Err("the trigger pattern is empty".to_owned());
    }
    if pattern.starts_with("refs/") {
        return Err(format!(
            "`{pattern}` is a full ref; give the short name (e.g. \"main\" or \"v*\")"
        ));
    }
    let bad = pattern
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, '~' | '^' | ':' | '?' | '[' | '\\'));
    if let Some(c) = bad {
        return Err(format!(
            "`{pattern}` is not a valid trigger pattern: `{c}` cannot appear in a git ref name"
        ));
    }
    if pattern.contains("**") || pattern.contains("..") || pattern.ends_with('/') {
        return Err(format!("`{pattern}` is not a valid trigger pattern"));
    }
    Ok(())
}

/// `*` matches any (possibly empty) run of characters; everything else is literal.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// The semantic version a release tag carries: `v1.2.3`, `1.2.3`, or what follows a custom
/// pattern's literal prefix (`release-1.2.3` for `release-*`, `api/v1.2.3` for `api/v*`).
fn parse_version(tag: &str, pattern: &str) -> Option<semver::Version> {
    let prefix = pattern.split('*').next().unwrap_or_default();
    let after_prefix = tag.strip_prefix(prefix).filter(|_| pattern.contains('*'));
    let last_segment = tag.rsplit('/').next();
    [Some(tag), after_prefix, last_segment]
        .into_iter()
        .flatten()
        .find_map(|candidate| {
            let text = candidate.strip_prefix('v').unwrap_or(candidate);
            semver::Version::parse(text).ok()
        })
}

pub fn resolve(config: &Config, git_ref: &str) -> Resolution {
    if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
        for (name, env) in &config.environments {
            let Some(pattern) = env.trigger.as_ref().and_then(|t| t.branch.as_deref()) else {
                continue;
            };
            if pattern_matches(pattern, branch) {
                return Resolution::Deploy {
                    environment: name.clone(),
                    version: None,
                };
            }
        }
        return Resolution::Nothing {
            reason: format!("branch `{branch}` does not trigger any environment"),
        };
    }
    if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
        let target = config.environments.iter().find(|(_, env)| {
            env.trigger
                .as_ref()
                .and_then(|t| t.tags.as_deref())
                .is_some_and(|p| pattern_matches(p, tag))
        });
        let Some((name, env)) = target else {
            return Resolution::Refused {
                reason: format!(
                    "tag `{tag}` matches no environment's tag trigger; release tags look like v1.2.3"
                ),
            };
        };
        let pattern = env
            .trigger
            .as_ref()
            .and_then(|t| t.tags.as_deref())
            .unwrap_or_default();
        return match parse_version(tag, pattern) {
            Some(version) if !version.pre.is_empty() => Resolution::Nothing {
                reason: format!(
                    "tag `{tag}` is a pre-release; `{name}` deploys release versions (vX.Y.Z) only"
                ),
            },
            Some(_) => Resolution::Deploy {
                environment: name.clone(),
                version: Some(tag.to_owned()),
            },
            None => Resolution::Refused {
                reason: format!(
                    "tag `{tag}` is not a semantic version; tag releases as vMAJOR.MINOR.PATCH, e.g. v1.2.3"
                ),
            },
        };
    }
    Resolution::Nothing {
        reason: format!("`{git_ref}` is neither a branch nor a tag (pull requests do not deploy)"),
    }
}
