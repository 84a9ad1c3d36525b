//! The image of a deploy: build once through the shared [`ImageBuilder`], push to ECR (or the
//! environment's `registry` override) with the commit and version tags, and from then on refer
//! to it by digest. An image that the repository does not hold is refused.

use std::sync::Arc;

use aws_sdk_ecr::types::ImageIdentifier;
use base64::Engine as _;
use kaapi_core::engine::{EngineError, EngineResult, ImageBuilder, ImageSource, RegistryAuth};
use kaapi_core::progress::Progress;
use kaapi_core::release::{ImageRef, ReleaseMeta};

use crate::aws::AwsClients;
use crate::error::{aws_error, error_code};
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
            let loopback = value.starts_with("127.") || value.starts_with("localhost");
            (value, loopback)
        };
        Self {
            host: host.trim_end_matches('/').to_owned(),
            plain_http,
            overridden: true,
        }
    }

    fn base_url(&self) -> String {
        let scheme = if self.plain_http { "http" } else { "https" };
        format!("{scheme}://{}", self.host)
    }
}

/// ECR login: credentials for `docker push` and the registry host they are for.
pub async fn ecr_login(clients: &AwsClients) -> EngineResult<(Registry, RegistryAuth)> {
    let out = clients
        .ecr
        .get_authorization_token()
        .send()
        .await
        .map_err(|e| aws_error("ecr:GetAuthorizationToken", e))?;
    let data = out.authorization_data().first().ok_or_else(|| {
        EngineError::failed("ecr:GetAuthorizationToken returned no authorization data")
    })?;
    let token = data.authorization_token().unwrap_or_default();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            EngineError::failed(
                "ecr:GetAuthorizationToken returned a token that is not base64 `user:password`",
            )
        })?;
    let (username, password) = decoded.split_once(':').ok_or_else(|| {
        EngineError::failed("ecr:GetAuthorizationToken returned a token without `user:password`")
    })?;
    let endpoint = data.proxy_endpoint().unwrap_or_default();
    let host = endpoint
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    if host.is_empty() {
        return Err(EngineError::failed(
            "ecr:GetAuthorizationToken returned no registry endpoint",
        ));
    }
    Ok((
        Registry {
            host,
            plain_http: false,
            overridden: false,
        },
        RegistryAuth {
            username: username.to_owned(),
            password: password.to_owned(),
        },
    ))
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
            let built = builder.build(&meta.commit, progress).await?;
            let tags = push_tags(meta);
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

const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// `HEAD /v2/<repo>/manifests/<ref>` on a registry that is not ECR.
async fn registry_manifest_digest(
    registry: &Registry,
    repository_name: &str,
    query: &ImageQuery,
) -> EngineResult<Option<String>> {
    let reference = match query {
        ImageQuery::Digest(d) | ImageQuery::Tag(d) => d,
    };
    let url = format!(
        "{}/v2/{repository_name}/manifests/{reference}",
        registry.base_url()
    );
    let response = reqwest::Client::new()
        .head(&url)
        .header(reqwest::header::ACCEPT, MANIFEST_TYPES)
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| {
            EngineError::unavailable(format!("registry {} cannot be reached: {e}", registry.host))
        })?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !response.status().is_success() {
        return Err(EngineError::failed(format!(
            "HEAD {url} answered {}",
            response.status()
        )));
    }
    let digest = response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match (digest, query) {
        (Some(d), _) => Ok(Some(d)),
        (None, ImageQuery::Digest(d)) => Ok(Some(d.clone())),
        (None, ImageQuery::Tag(_)) => Err(EngineError::failed(format!(
            "HEAD {url} did not say the manifest's digest (Docker-Content-Digest)"
        ))),
    }
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
