//! The image of a deploy: build once through the shared [`ImageBuilder`], push to ECR (or the
//! environment's `registry` override) with the commit and version tags, and from then on refer
//! to it by digest. An image that the repository does not hold is refused.

use std::sync::Arc;

use aws_sdk_ecr::types::ImageIdentifier;
use kaapi_aws::ecr;
use kaapi_aws::registry::{is_loopback, RegistryClient, RegistryError, Repository};
use kaapi_core::engine::{EngineError, EngineResult, ImageBuilder, ImageSource, RegistryAuth};
use kaapi_core::progress::Progress;
use kaapi_core::release::{ImageRef, ReleaseMeta};

use crate::aws::AwsClients;
use crate::error::{aws_error, engine_error, error_code};
use crate::target::Target;

/// Where images go: host (no scheme) and whether to talk plain HTTP to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    pub host: String,
    pub plain_http: bool,
    /// True when the environment's `registry` replaces ECR's host.
    pub overridden: bool,
}

impl Registry {
    /// The environment's override: `127.0.0.1:5000`, `http://…` or `https://…`. Loopback hosts
    /// without a scheme are plain HTTP, like Docker treats them.
    pub fn from_override(value: &str) -> Self {
        let (host, plain_http) = if let Some(rest) = value.strip_prefix("http://") {
            (rest, true)
        } else if let Some(rest) = value.strip_prefix("https://") {
            (rest, false)
        } else {
            (value, is_loopback(value.trim_end_matches('/')))
        };
        Self {
            host: host.trim_end_matches('/').to_owned(),
            plain_http,
            overridden: true,
        }
    }
}

/// ECR login: credentials for `docker push` and the registry host they are for.
pub async fn ecr_login(clients: &AwsClients) -> EngineResult<(Registry, RegistryAuth)> {
    let login = ecr::login(&clients.ecr).await.map_err(engine_error)?;
    let registry = Registry {
        host: login.host,
        plain_http: false,
        overridden: false,
    };
    Ok((registry, login.auth))
}

/// A reference given with `--image`: a digest, a tag, or a full `repo:tag` / `repo@digest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageQuery {
    Digest(String),
    Tag(String),
}

pub fn parse_image_reference(reference: &str) -> ImageQuery {
    if let Some((_, digest)) = reference.rsplit_once('@') {
        return ImageQuery::Digest(digest.to_owned());
    }
    if reference.starts_with("sha256:") {
        return ImageQuery::Digest(reference.to_owned());
    }
    let last_segment = reference.rsplit('/').next().unwrap_or(reference);
    match last_segment.rsplit_once(':') {
        Some((_, tag)) => ImageQuery::Tag(tag.to_owned()),
        None if reference.contains('/') => ImageQuery::Tag("latest".to_owned()),
        None => ImageQuery::Tag(reference.to_owned()),
    }
}

/// Tags a deploy pushes: the commit, and the version for `v*` tags.
pub fn push_tags(meta: &ReleaseMeta) -> Vec<String> {
    let mut tags = vec![meta.commit.clone()];
    if let Some(version) = &meta.version {
        tags.push(version.clone());
    }
    tags
}

pub async fn prepare(
    clients: &AwsClients,
    target: &Target,
    builder: Option<&Arc<dyn ImageBuilder>>,
    source: &ImageSource,
    meta: &ReleaseMeta,
    progress: &dyn Progress,
) -> EngineResult<ImageRef> {
    let repository_name = target.names().repository.clone();
    let (registry, auth) = match &target.env().registry {
        Some(value) => (Registry::from_override(value), None),
        None => {
            let (registry, auth) = ecr_login(clients).await?;
            (registry, Some(auth))
        }
    };
    let repository = format!("{}/{repository_name}", registry.host);
    match source {
        ImageSource::Build => {
            let builder = builder.ok_or_else(|| {
                EngineError::unavailable(
                    "this kaapi-deploy binary has no image builder for the ecs engine; deploy an image already in the repository with `--image REF`",
                )
            })?;
            let tags = push_tags(meta);
            if let Some(image) =
                already_pushed(clients, &registry, &repository_name, &tags, progress).await?
            {
                return Ok(image);
            }
            let built = builder.build(&meta.commit, progress).await?;
            progress.info(format!("pushing {repository} ({})", tags.join(", ")));
            let digest = builder
                .push(&built.id, &repository, &tags, auth.as_ref(), progress)
                .await?;
            let found = lookup_digest(
                clients,
                &registry,
                &repository_name,
                &ImageQuery::Digest(digest.clone()),
            )
            .await?;
            let digest = found.ok_or_else(|| {
                EngineError::failed(format!(
                    "the push reported {digest}, but {repository} does not hold it; check the registry"
                ))
            })?;
            Ok(ImageRef {
                reference: format!("{repository}@{digest}"),
                digest,
                tags,
            })
        }
        ImageSource::Existing(reference) => {
            let query = parse_image_reference(reference);
            let digest = lookup_digest(clients, &registry, &repository_name, &query)
                .await?
                .ok_or_else(|| {
                    EngineError::not_found(format!(
                        "image `{reference}` is not in repository {repository}; push it first, or deploy without --image to build it"
                    ))
                })?;
            progress.info(format!("deploying {repository}@{digest}"));
            let tags = match query {
                ImageQuery::Tag(tag) => vec![tag],
                ImageQuery::Digest(_) => Vec::new(),
            };
            Ok(ImageRef {
                reference: format!("{repository}@{digest}"),
                digest,
                tags,
            })
        }
    }
}

/// The image an earlier run of this commit pushed to ECR, when there is one. ECR repositories
/// are IMMUTABLE (the template and `check` require it), so a rebuild on a fresh runner, which
/// gives a new digest, could not push the commit tag again: the re-run deploys the digest the
/// tag already names, and builds nothing. Not for a registry override (tags there may move).
async fn already_pushed(
    clients: &AwsClients,
    registry: &Registry,
    repository_name: &str,
    tags: &[String],
    progress: &dyn Progress,
) -> EngineResult<Option<ImageRef>> {
    let Some(commit) = tags.first().filter(|_| !registry.overridden) else {
        return Ok(None);
    };
    let query = ImageQuery::Tag(commit.clone());
    let Some(digest) = lookup_digest(clients, registry, repository_name, &query).await? else {
        return Ok(None);
    };
    let repository = format!("{}/{repository_name}", registry.host);
    progress.info(format!(
        "{repository}:{commit} already exists (an earlier run of this commit pushed it); deploying its digest {digest} without rebuilding"
    ));
    let mut carried = vec![commit.clone()];
    for tag in &tags[1..] {
        let named = lookup_digest(
            clients,
            registry,
            repository_name,
            &ImageQuery::Tag(tag.clone()),
        )
        .await?;
        match named {
            Some(d) if d == digest => carried.push(tag.clone()),
            Some(other) => {
                return Err(EngineError::failed(format!(
                    "{repository}:{tag} names {other}, but the commit tag {commit} names {digest}; ECR tags are immutable, so one tag cannot name both: deploy with --image {repository}@{digest}, or push a new version tag"
                )))
            }
            None => progress.warning(format!(
                "{repository}:{commit} does not carry the tag {tag}; deploying it by digest without that tag"
            )),
        }
    }
    Ok(Some(ImageRef {
        reference: format!("{repository}@{digest}"),
        digest,
        tags: carried,
    }))
}

/// The digest the repository holds for `query`, or `None` when it holds no such image.
pub async fn lookup_digest(
    clients: &AwsClients,
    registry: &Registry,
    repository_name: &str,
    query: &ImageQuery,
) -> EngineResult<Option<String>> {
    if registry.overridden {
        return registry_manifest_digest(registry, repository_name, query).await;
    }
    let id = match query {
        ImageQuery::Digest(d) => ImageIdentifier::builder().image_digest(d).build(),
        ImageQuery::Tag(t) => ImageIdentifier::builder().image_tag(t).build(),
    };
    let result = clients
        .ecr
        .describe_images()
        .repository_name(repository_name)
        .image_ids(id)
        .send()
        .await;
    match result {
        Ok(out) => Ok(out
            .image_details()
            .first()
            .and_then(|d| d.image_digest())
            .map(str::to_owned)),
        Err(e) if error_code(&e) == Some("ImageNotFoundException") => Ok(None),
        Err(e) if error_code(&e) == Some("RepositoryNotFoundException") => {
            Err(EngineError::not_found(format!(
                "ECR repository `{repository_name}` does not exist; create it (the infrastructure templates do) or set `names.repository`"
            )))
        }
        Err(e) => Err(aws_error(
            &format!("ecr:DescribeImages on {repository_name}"),
            e,
        )),
    }
}

/// `HEAD /v2/<repo>/manifests/<ref>` on a registry that is not ECR.
async fn registry_manifest_digest(
    registry: &Registry,
    repository_name: &str,
    query: &ImageQuery,
) -> EngineResult<Option<String>> {
    let reference = match query {
        ImageQuery::Digest(d) | ImageQuery::Tag(d) => d,
    };
    let mut repository = Repository::new(&registry.host, repository_name, None);
    repository.plain_http = registry.plain_http;
    let client = RegistryClient::new().map_err(|e| EngineError::failed(e.to_string()))?;
    client
        .manifest_digest(&repository, reference)
        .await
        .map_err(|e| match e {
            RegistryError::Http { .. } => EngineError::unavailable(format!(
                "registry {} cannot be reached: {e}",
                registry.host
            )),
            _ => EngineError::failed(e.to_string()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_are_read_as_digest_or_tag() {
        let digest = "sha256:0123456789abcdef";
        assert_eq!(
            parse_image_reference(&format!(
                "1.dkr.ecr.eu-west-1.amazonaws.com/kaapi-repo@{digest}"
            )),
            ImageQuery::Digest(digest.to_owned())
        );
        assert_eq!(
            parse_image_reference(digest),
            ImageQuery::Digest(digest.to_owned())
        );
        assert_eq!(
            parse_image_reference("127.0.0.1:5000/kaapi-repo:3f2a1c0"),
            ImageQuery::Tag("3f2a1c0".to_owned())
        );
        assert_eq!(
            parse_image_reference("3f2a1c0"),
            ImageQuery::Tag("3f2a1c0".to_owned())
        );
        assert_eq!(
            parse_image_reference("127.0.0.1:5000/kaapi-repo"),
            ImageQuery::Tag("latest".to_owned())
        );
    }

    #[test]
    fn loopback_registries_speak_plain_http() {
        assert!(Registry::from_override("127.0.0.1:5000").plain_http);
        assert!(!Registry::from_override("registry.example.com").plain_http);
        assert_eq!(Registry::from_override("http://host:1/").host, "host:1");
    }
}
