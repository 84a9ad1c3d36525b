//! Build once, promote: the image an environment ran is copied by digest into the next
//! environment's repository (no rebuild, the same digest) and deployed there as an existing
//! image.

use kaapi_aws::ecr::{self, EcrLogin};
use kaapi_aws::registry::{CopyReport, DigestReference, RegistryClient, RegistryError, Repository};
use kaapi_aws::{AwsError, SdkConfig};
use kaapi_core::config::{Config, EngineKind};
use kaapi_core::engine::{Engine, EngineError, ImageSource, RegistryAuth};
use kaapi_core::naming;
use kaapi_core::release::{Outcome, Release};

pub use crate::choice::{build_choice, promotion_source, ImageChoice};
use crate::github::Vars;

#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error("environment `{environment}` serves nothing yet, so there is nothing to promote; deploy it first")]
    NothingServes { environment: String },
    #[error("`{from}` has no successful release of commit {commit} to promote; deploy that commit to `{from}` first (push to its branch), or rebuild with `kaapi-deploy ci --rebuild`")]
    NoReleaseForCommit { from: String, commit: String },
    #[error("environment `{environment}` is an ECS environment and needs AWS access to find its registry: {message}")]
    NoAws {
        environment: String,
        message: String,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("copying the image failed: {0}")]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// Two commits name the same one when one is a prefix of the other (12-character short SHAs
/// against full ones). A dirty tree's build is never the commit's.
pub fn same_commit(a: &str, b: &str) -> bool {
    let clean = |c: &str| !c.is_empty() && !c.ends_with("-dirty") && c.len() >= 7;
    clean(a) && clean(b) && (a.starts_with(b) || b.starts_with(a))
}

/// The newest successful release of `commit` in an environment's history.
pub async fn release_for_commit(
    engine: &dyn Engine,
    commit: &str,
) -> Result<Option<Release>, EngineError> {
    Ok(engine
        .releases()
        .await?
        .into_iter()
        .filter(|r| r.outcome == Outcome::Succeeded && same_commit(&r.meta.commit, commit))
        .max_by_key(|r| r.number))
}

/// The repository an environment's images live in, with credentials: its `registry`
/// setting, else (ECS) the account's ECR registry; `None` for a docker environment without a
/// registry (images stay in the local Docker Engine).
pub async fn target_repository(
    config: &Config,
    environment: &str,
    aws: Option<&SdkConfig>,
) -> Result<Option<Repository>, PromoteError> {
    let Some(env) = config.environment(environment) else {
        return Err(PromoteError::Engine(EngineError::not_found(format!(
            "no environment `{environment}`"
        ))));
    };
    let name = naming::names(config, environment).repository;
    if let Some(host) = &env.registry {
        let auth = match (ecr::region_of_host(host), aws) {
            (Some(region), Some(sdk)) => {
                Some(ecr::login(&ecr::client(sdk, Some(region))).await?.auth)
            }
            _ => None,
        };
        return Ok(Some(Repository::new(host, &name, auth)));
    }
    match env.engine {
        EngineKind::Docker => Ok(None),
        EngineKind::Ecs => {
            let sdk = aws.ok_or_else(|| PromoteError::NoAws {
                environment: environment.to_owned(),
                message: "no AWS configuration was given".to_owned(),
            })?;
            let EcrLogin { host, auth } = ecr::login(&ecr::client(sdk, None)).await?;
            Ok(Some(Repository::new(&host, &name, Some(auth))))
        }
    }
}

/// Credentials for reading the source repository: the target's when both are on one registry,
/// an ECR login for an ECR host, else anonymous.
async fn source_auth(
    source: &DigestReference,
    target: &Repository,
    aws: Option<&SdkConfig>,
) -> Result<Option<RegistryAuth>, PromoteError> {
    if source.host == target.host {
        return Ok(target.auth.clone());
    }
    match (ecr::region_of_host(&source.host), aws) {
        (Some(region), Some(sdk)) => Ok(Some(
            ecr::login(&ecr::client(sdk, Some(region))).await?.auth,
        )),
        _ => Ok(None),
    }
}

/// What a promotion did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promoted {
    /// The reference to deploy in the target environment (`host/repo@digest`).
    pub reference: String,
    pub digest: String,
    /// `None` when nothing had to be copied (same repository, or local images).
    pub copy: Option<CopyReport>,
}

/// Copies `release`'s image into `target` (tagged with the release's commit and version) and
/// returns what to deploy. Without a target repository, or when the image is not in a
/// registry, the same reference is deployed as is.
pub async fn promote_image(
    client: &RegistryClient,
    release: &Release,
    target: Option<&Repository>,
    aws: Option<&SdkConfig>,
) -> Result<Promoted, PromoteError> {
    let image = &release.image;
    let source = DigestReference::parse(&image.reference);
    let (Some(source), Some(target)) = (source, target) else {
        return Ok(Promoted {
            reference: image.reference.clone(),
            digest: image.digest.clone(),
            copy: None,
        });
    };
    if source.host == target.host && source.name == target.name {
        return Ok(Promoted {
            reference: target.reference(&source.digest),
            digest: source.digest,
            copy: None,
        });
    }
    let from = Repository::new(
        &source.host,
        &source.name,
        source_auth(&source, target, aws).await?,
    );
    let tags: Vec<String> = std::iter::once(release.meta.commit.clone())
        .chain(release.meta.version.clone())
        .filter(|t| is_valid_tag(t))
        .collect();
    let copy = client
        .copy_image(&from, target, &source.digest, &tags)
        .await?;
    Ok(Promoted {
        reference: target.reference(&source.digest),
        digest: source.digest,
        copy: Some(copy),
    })
}

/// The AWS configuration a promotion into (or out of) `environment` needs: for an ECS
/// environment, or a registry on ECR; `None` otherwise.
pub async fn aws_for(
    config: &Config,
    environment: &str,
    vars: &Vars,
) -> Result<Option<SdkConfig>, PromoteError> {
    let Some(env) = config.environment(environment) else {
        return Ok(None);
    };
    let ecr_registry = env.registry.as_deref().and_then(ecr::region_of_host);
    let region = match (env.engine, ecr_registry) {
        (_, Some(region)) => region.to_owned(),
        (EngineKind::Ecs, None) => env.region.clone().unwrap_or_default(),
        (EngineKind::Docker, None) => return Ok(None),
    };
    let sdk = kaapi_aws::load(env, Some(&region), vars)
        .await
        .map_err(|e| PromoteError::NoAws {
            environment: environment.to_owned(),
            message: e.to_string(),
        })?;
    Ok(Some(sdk))
}

/// Promotes `release` (from another environment) into `environment`: finds its repository and
/// credentials, copies the image by digest, and returns what to deploy there.
pub async fn promote_release_to(
    config: &Config,
    environment: &str,
    release: &Release,
    vars: &Vars,
) -> Result<Promoted, PromoteError> {
    let aws = aws_for(config, environment, vars).await?;
    let target = target_repository(config, environment, aws.as_ref()).await?;
    let client = RegistryClient::new()?;
    promote_image(&client, release, target.as_ref(), aws.as_ref()).await
}

/// Finds `from`'s successful release of `commit`, copies its image into `environment`'s
/// repository by digest, and returns it as an existing image to deploy.
pub async fn promoted_choice(
    config: &Config,
    environment: &str,
    from: &str,
    from_engine: &dyn Engine,
    commit: &str,
    vars: &Vars,
) -> Result<(ImageChoice, Promoted), PromoteError> {
    let release = release_for_commit(from_engine, commit)
        .await?
        .ok_or_else(|| PromoteError::NoReleaseForCommit {
            from: from.to_owned(),
            commit: commit.chars().take(12).collect(),
        })?;
    let promoted = promote_release_to(config, environment, &release, vars).await?;
    let choice = ImageChoice {
        source: ImageSource::Existing(promoted.reference.clone()),
        origin: format!(
            "promoted from `{from}` release {} (same commit, same digest)",
            release.number
        ),
    };
    Ok((choice, promoted))
}

/// Docker tag grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_full_shas_name_the_same_commit() {
        assert!(same_commit("0123456789ab", "0123456789abcdef0123"));
        assert!(same_commit("0123456789abcdef0123", "0123456789ab"));
        assert!(!same_commit("0123456789ab", "0123456789ac"));
        assert!(!same_commit("0123456789ab-dirty", "0123456789abcdef"));
        assert!(!same_commit("", "0123456789ab"));
    }

    #[test]
    fn tags_follow_docker_grammar() {
        assert!(is_valid_tag("v1.2.3"));
        assert!(is_valid_tag("0123456789ab"));
        assert!(!is_valid_tag("0123456789ab-dirty/x"));
        assert!(!is_valid_tag(".hidden"));
    }
}
