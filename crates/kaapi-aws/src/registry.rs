//! A small client of the OCI distribution API, enough to copy an image by digest from one
//! repository to another without changing a byte: the manifest is fetched and stored as is, so
//! the digest is the same on both sides.

use std::sync::Arc;
use std::time::Duration;

use kaapi_core::engine::RegistryAuth;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use sha2::{Digest, Sha256};

/// Manifest types we ask for and copy: OCI and Docker v2, single-platform and multi-platform.
pub const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{method} {url}: {message}")]
    Http {
        method: Method,
        url: String,
        message: String,
    },
    #[error("{url} answered {status}{}", body_hint(.body))]
    Status {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("the content at {url} has digest {actual}, not the {expected} asked for")]
    DigestMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{0}")]
    Invalid(String),
}

fn body_hint(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        String::new()
    } else {
        format!(": {}", body.chars().take(300).collect::<String>())
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(bytes);
    hex_digest(hasher)
}

fn hex_digest(hasher: Sha256) -> String {
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// The most of a blob held in memory while it is copied; registries take chunks of 5 MiB and
/// more (ECR's minimum) in any order of size.
pub const UPLOAD_CHUNK: usize = 8 * 1024 * 1024;

/// One repository of one registry, with how to authenticate to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// `127.0.0.1:5000`, `123456789012.dkr.ecr.eu-west-1.amazonaws.com`.
    pub host: String,
    /// `kaapi-staging-repo`, `team/app`.
    pub name: String,
    /// Basic credentials (an ECR token); `None` is anonymous.
    pub auth: Option<RegistryAuth>,
    /// Plain HTTP instead of HTTPS: loopback hosts by default, as Docker assumes.
    pub plain_http: bool,
}

/// Loopback registries speak plain HTTP (as Docker assumes); every other one HTTPS.
pub fn is_loopback(host: &str) -> bool {
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    host == "localhost"
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Repository {
    pub fn new(host: &str, name: &str, auth: Option<RegistryAuth>) -> Self {
        Self {
            host: host.to_owned(),
            name: name.to_owned(),
            auth,
            plain_http: is_loopback(host),
        }
    }

    fn scheme(&self) -> &'static str {
        if self.plain_http {
            "http"
        } else {
            "https"
        }
    }

    pub fn url(&self, rest: &str) -> String {
        format!("{}://{}/v2/{}/{rest}", self.scheme(), self.host, self.name)
    }

    /// The reference engines run: `host/name@digest`.
    pub fn reference(&self, digest: &str) -> String {
        format!("{}/{}@{digest}", self.host, self.name)
    }
}

/// An image reference split into registry host, repository and digest
/// (`127.0.0.1:5000/kaapi-staging-repo@sha256:…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestReference {
    pub host: String,
    pub name: String,
    pub digest: String,
}

impl DigestReference {
    /// `None` when the reference has no registry host or no digest (a local image ID, a tag).
    pub fn parse(reference: &str) -> Option<Self> {
        let (path, digest) = reference.split_once('@')?;
        if !digest.starts_with("sha256:") {
            return None;
        }
        let (host, name) = path.split_once('/')?;
        let looks_like_host = host.contains('.') || host.contains(':') || host == "localhost";
        if !looks_like_host || name.is_empty() {
            return None;
        }
        // A tag before the digest (`repo:tag@sha256:…`) is informational: drop it.
        let name = match name.rsplit_once(':') {
            Some((n, tag)) if !tag.contains('/') => n,
            _ => name,
        };
        Some(Self {
            host: host.to_owned(),
            name: name.to_owned(),
            digest: digest.to_owned(),
        })
    }
}

/// A manifest exactly as the registry stored it.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub digest: String,
}

impl Manifest {
    /// Blobs (config and layers) of an image manifest, child manifests of an index.
    fn references(&self) -> Result<(Vec<String>, Vec<String>), RegistryError> {
        #[derive(serde::Deserialize)]
        struct Descriptor {
            digest: String,
        }
        #[derive(serde::Deserialize)]
        struct Parsed {
            config: Option<Descriptor>,
            #[serde(default)]
            layers: Vec<Descriptor>,
            #[serde(default)]
            manifests: Vec<Descriptor>,
        }
        let parsed: Parsed = serde_json::from_slice(&self.bytes).map_err(|e| {
            RegistryError::Invalid(format!("manifest {} is not valid JSON: {e}", self.digest))
        })?;
        let blobs = parsed
            .config
            .into_iter()
            .chain(parsed.layers)
            .map(|d| d.digest)
            .collect();
        let children = parsed.manifests.into_iter().map(|d| d.digest).collect();
        Ok((blobs, children))
    }
}

/// How each blob got into the target repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Blobs the target already had.
    pub present: usize,
    /// Blobs mounted from the source repository (same registry, no bytes moved).
    pub mounted: usize,
    /// Blobs downloaded and uploaded.
    pub uploaded: usize,
}

/// Sees each request (method and full URL) before it is sent; tests use it to check what the
/// registry authorizes for every request a copy makes.
pub type RequestObserver = Arc<dyn Fn(&Method, &str) + Send + Sync>;

pub struct RegistryClient {
    http: reqwest::Client,
    observer: Option<RequestObserver>,
}

fn http_error(method: &Method, url: &str, e: reqwest::Error) -> RegistryError {
    RegistryError::Http {
        method: method.clone(),
        url: url.to_owned(),
        message: e.to_string(),
    }
}

async fn status_error(url: &str, response: Response) -> RegistryError {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    RegistryError::Status {
        url: url.to_owned(),
        status,
        body,
    }
}

impl RegistryClient {
    pub fn new() -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(600))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| RegistryError::Invalid(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            http,
            observer: None,
        })
    }

    /// This client, showing each request to `observer` before sending it.
    pub fn observed(self, observer: RequestObserver) -> Self {
        Self {
            observer: Some(observer),
            ..self
        }
    }

    fn request(&self, method: Method, url: &str, repo: &Repository) -> RequestBuilder {
        let request = self.http.request(method, url);
        match &repo.auth {
            Some(auth) => request.basic_auth(&auth.username, Some(&auth.password)),
            None => request,
        }
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        repo: &Repository,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        if let Some(observer) = &self.observer {
            observer(&method, url);
        }
        build(self.request(method.clone(), url, repo))
            .send()
            .await
            .map_err(|e| http_error(&method, url, e))
    }

    /// GETs a manifest by digest or tag; by digest, its bytes must hash to that digest.
    pub async fn get_manifest(
        &self,
        repo: &Repository,
        reference: &str,
    ) -> Result<Manifest, RegistryError> {
        let url = repo.url(&format!("manifests/{reference}"));
        let response = self
            .send(Method::GET, &url, repo, |r| {
                r.header(ACCEPT, MANIFEST_TYPES.join(", "))
            })
            .await?;
        if !response.status().is_success() {
            return Err(status_error(&url, response).await);
        }
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned())
            .unwrap_or_else(|| MANIFEST_TYPES[0].to_owned());
        let bytes = response
            .bytes()
            .await
            .map_err(|e| http_error(&Method::GET, &url, e))?
            .to_vec();
        let digest = sha256_digest(&bytes);
        if reference.starts_with("sha256:") && digest != reference {
            return Err(RegistryError::DigestMismatch {
                url,
                expected: reference.to_owned(),
                actual: digest,
            });
        }
        Ok(Manifest {
            media_type,
            bytes,
            digest,
        })
    }

    /// HEADs a manifest and returns the `Docker-Content-Digest` the registry reports, or
    /// `None` when the repository holds no such manifest.
    pub async fn manifest_digest(
        &self,
        repo: &Repository,
        reference: &str,
    ) -> Result<Option<String>, RegistryError> {
        let url = repo.url(&format!("manifests/{reference}"));
        let response = self
            .send(Method::HEAD, &url, repo, |r| {
                r.header(ACCEPT, MANIFEST_TYPES.join(", "))
            })
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(status_error(&url, response).await);
        }
        // Asked by digest, the digest is known even when the registry does not repeat it.
        match digest_header(response.headers()) {
            Some(digest) => Ok(Some(digest)),
            None if reference.starts_with("sha256:") => Ok(Some(reference.to_owned())),
            None => Err(RegistryError::Invalid(format!(
                "{url} sent no Docker-Content-Digest"
            ))),
        }
    }

    async fn blob_exists(&self, repo: &Repository, digest: &str) -> Result<bool, RegistryError> {
        let url = repo.url(&format!("blobs/{digest}"));
        let response = self.send(Method::HEAD, &url, repo, |r| r).await?;
        match response.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error(&url, response).await),
        }
    }

    /// The absolute upload URL from a `Location` header (registries may answer a path).
    fn upload_location(url: &str, response: &Response) -> Result<Url, RegistryError> {
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                RegistryError::Invalid(format!("{url} started an upload without a Location"))
            })?;
        let base = Url::parse(url).map_err(|e| RegistryError::Invalid(format!("{url}: {e}")))?;
        base.join(location)
            .map_err(|e| RegistryError::Invalid(format!("bad upload Location `{location}`: {e}")))
    }

    /// Tries a cross-repository mount; on refusal the registry starts a normal upload and
    /// answers its location, returned as `Err(location)`.
    async fn mount(
        &self,
        from: &Repository,
        to: &Repository,
        digest: &str,
    ) -> Result<Result<(), Url>, RegistryError> {
        let mut url = Url::parse(&to.url("blobs/uploads/"))
            .map_err(|e| RegistryError::Invalid(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("mount", digest)
            .append_pair("from", &from.name);
        let url = url.to_string();
        let response = self.send(Method::POST, &url, to, |r| r).await?;
        match response.status() {
            StatusCode::CREATED => Ok(Ok(())),
            StatusCode::ACCEPTED => Ok(Err(Self::upload_location(&url, &response)?)),
            _ => Err(status_error(&url, response).await),
        }
    }

    async fn start_upload(&self, to: &Repository) -> Result<Url, RegistryError> {
        let url = to.url("blobs/uploads/");
        let response = self.send(Method::POST, &url, to, |r| r).await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(status_error(&url, response).await);
        }
        Self::upload_location(&url, &response)
    }

    /// Streams the blob from the source to the upload: up to [`UPLOAD_CHUNK`] bytes are held at
    /// a time, sent as `PATCH` chunks, and the upload is committed by the final `PUT` only when
    /// the bytes hash to the digest. A blob of one chunk goes in the `PUT` alone.
    async fn upload(
        &self,
        from: &Repository,
        to: &Repository,
        digest: &str,
        mut location: Url,
    ) -> Result<(), RegistryError> {
        let get_url = from.url(&format!("blobs/{digest}"));
        let mut response = self.send(Method::GET, &get_url, from, |r| r).await?;
        if !response.status().is_success() {
            return Err(status_error(&get_url, response).await);
        }
        let mut hasher = Sha256::new();
        // Room for one chunk up front (or the whole of a smaller blob): no regrowth copies.
        let capacity = response
            .content_length()
            .and_then(|length| usize::try_from(length).ok())
            .map_or(UPLOAD_CHUNK, |length| length.min(UPLOAD_CHUNK));
        let mut pending: Vec<u8> = Vec::with_capacity(capacity);
        let mut offset: u64 = 0;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| http_error(&Method::GET, &get_url, e))?
        {
            hasher.update(&chunk);
            pending.extend_from_slice(&chunk);
            if pending.len() >= UPLOAD_CHUNK {
                let part = std::mem::replace(&mut pending, Vec::with_capacity(UPLOAD_CHUNK));
                let length = part.len() as u64;
                location = self.patch(to, location, offset, part).await?;
                offset += length;
            }
        }
        if offset > 0 && !pending.is_empty() {
            let part = std::mem::take(&mut pending);
            location = self.patch(to, location, offset, part).await?;
        }
        let actual = hex_digest(hasher);
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                url: get_url,
                expected: digest.to_owned(),
                actual,
            });
        }
        location.query_pairs_mut().append_pair("digest", digest);
        let put_url = location.to_string();
        let response = self
            .send(Method::PUT, &put_url, to, |r| {
                r.header(CONTENT_TYPE, "application/octet-stream")
                    .body(pending)
            })
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(status_error(&put_url, response).await);
        }
        Ok(())
    }

    /// Sends one chunk of an upload at `offset`; returns where the upload continues.
    async fn patch(
        &self,
        to: &Repository,
        location: Url,
        offset: u64,
        part: Vec<u8>,
    ) -> Result<Url, RegistryError> {
        let url = location.to_string();
        let end = offset + part.len() as u64 - 1;
        let response = self
            .send(Method::PATCH, &url, to, |r| {
                r.header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_RANGE, format!("{offset}-{end}"))
                    .body(part)
            })
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(status_error(&url, response).await);
        }
        Self::upload_location(&url, &response)
    }

    async fn copy_blob(
        &self,
        from: &Repository,
        to: &Repository,
        digest: &str,
        report: &mut CopyReport,
    ) -> Result<(), RegistryError> {
        if self.blob_exists(to, digest).await? {
            report.present += 1;
            return Ok(());
        }
        // Mounting only makes sense within one registry.
        let location = if from.host == to.host {
            match self.mount(from, to, digest).await {
                Ok(Ok(())) => {
                    report.mounted += 1;
                    return Ok(());
                }
                Ok(Err(location)) => location,
                // Some registries reject the mount request itself: upload instead.
                Err(RegistryError::Status { .. }) => self.start_upload(to).await?,
                Err(e) => return Err(e),
            }
        } else {
            self.start_upload(to).await?
        };
        self.upload(from, to, digest, location).await?;
        report.uploaded += 1;
        Ok(())
    }

    async fn put_manifest(
        &self,
        to: &Repository,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<(), RegistryError> {
        let url = to.url(&format!("manifests/{reference}"));
        let response = self
            .send(Method::PUT, &url, to, |r| {
                r.header(CONTENT_TYPE, &manifest.media_type)
                    .body(manifest.bytes.clone())
            })
            .await?;
        if !response.status().is_success() {
            return Err(status_error(&url, response).await);
        }
        if let Some(stored) = digest_header(response.headers()) {
            if stored != manifest.digest {
                return Err(RegistryError::DigestMismatch {
                    url,
                    expected: manifest.digest.clone(),
                    actual: stored,
                });
            }
        }
        Ok(())
    }

    /// Copies the image `digest` (and, for an index, every platform's image) from `from` to
    /// `to`, then stores the manifest unchanged under its digest and each of `tags`.
    pub async fn copy_image(
        &self,
        from: &Repository,
        to: &Repository,
        digest: &str,
        tags: &[String],
    ) -> Result<CopyReport, RegistryError> {
        let mut report = CopyReport::default();
        let manifest = self.get_manifest(from, digest).await?;
        let (blobs, children) = manifest.references()?;
        for child in &children {
            let child_manifest = self.get_manifest(from, child).await?;
            let (child_blobs, _) = child_manifest.references()?;
            for blob in &child_blobs {
                self.copy_blob(from, to, blob, &mut report).await?;
            }
            self.put_manifest(to, child, &child_manifest).await?;
        }
        for blob in &blobs {
            self.copy_blob(from, to, blob, &mut report).await?;
        }
        self.put_manifest(to, digest, &manifest).await?;
        for tag in tags {
            self.put_manifest(to, tag, &manifest).await?;
        }
        Ok(report)
    }
}

fn digest_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_digest_references() {
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            DigestReference::parse(&format!("127.0.0.1:5000/kaapi-staging-repo@{digest}")),
            Some(DigestReference {
                host: "127.0.0.1:5000".to_owned(),
                name: "kaapi-staging-repo".to_owned(),
                digest: digest.clone(),
            })
        );
        assert_eq!(
            DigestReference::parse(&format!(
                "123.dkr.ecr.eu-west-1.amazonaws.com/team/app:abc@{digest}"
            ))
            .map(|r| r.name),
            Some("team/app".to_owned())
        );
        assert_eq!(DigestReference::parse(&digest), None, "a local image ID");
        assert_eq!(
            DigestReference::parse(&format!("kaapi-local@{digest}")),
            None
        );
        assert_eq!(
            DigestReference::parse("127.0.0.1:5000/repo:tag"),
            None,
            "no digest"
        );
    }

    #[test]
    fn loopback_registries_use_http() {
        let url = |host: &str| Repository::new(host, "r", None).url("tags/list");
        assert_eq!(
            url("127.0.0.1:5000"),
            "http://127.0.0.1:5000/v2/r/tags/list"
        );
        assert_eq!(
            url("localhost:5000"),
            "http://localhost:5000/v2/r/tags/list"
        );
        assert_eq!(
            url("1.dkr.ecr.eu-west-1.amazonaws.com"),
            "https://1.dkr.ecr.eu-west-1.amazonaws.com/v2/r/tags/list"
        );
    }

    #[test]
    fn digests_are_sha256_of_the_bytes() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
