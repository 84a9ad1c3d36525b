//! The shared build step over the Docker Engine API: pre-build command, build context
//! (honouring `.dockerignore`, never sending the tool's state or env files), a BuildKit build
//! with build args, secrets and platform, tags, and pushes that return the registry's manifest
//! digest. The local engine uses it, and the ECS engine can too.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;

use async_trait::async_trait;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{PushImageOptionsBuilder, TagImageOptionsBuilder};
use bollard::Docker;
use futures_util::StreamExt;
use kaapi_core::config::{EngineKind, ResolvedEnvironment};
use kaapi_core::engine::{BuiltImage, EngineError, EngineResult, ImageBuilder, RegistryAuth};
use kaapi_core::interpolate::interpolate;
use kaapi_core::progress::Progress;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::build_secrets::{BuildSecret, SecretFrom};
use crate::buildkit::{BuildRequest, Outcome};
use crate::docker::failed;
use crate::{build_context, buildkit, buildkit_solve};

/// The build argument set from the release's commit unless the config sets it.
pub const GIT_SHA_ARG: &str = "GIT_SHA";

/// What ECS runs when `image.platform` is not set (Fargate's default architecture).
pub const ECS_DEFAULT_PLATFORM: &str = "linux/amd64";

/// What to build, read from the config's `[image]` table.
#[derive(Debug, Clone, Default)]
pub struct BuildSpec {
    /// Directory the pre-build command runs in (the config file's directory).
    pub config_dir: PathBuf,
    pub context: PathBuf,
    pub dockerfile: String,
    pub build_args: HashMap<String, String>,
    pub pre_build: Option<String>,
    /// Local repository name the tag goes on, e.g. `kaapi-staging`.
    pub repository: String,
    /// `os/arch[/variant]`; `None` builds for the engine's own platform.
    pub platform: Option<String>,
    /// Secrets for `RUN --mount=type=secret`, served to the build, never stored.
    pub secrets: Vec<BuildSecret>,
}

impl BuildSpec {
    /// The build of `environment`: tags go on `{app}-{environment}`. Build arguments may use
    /// `${VAR}` / `${VAR:-default}` from the deployer's environment.
    pub fn from_config(target: &ResolvedEnvironment) -> EngineResult<Self> {
        let loaded = target.loaded();
        let image = &loaded.config.image;
        let build_args = image
            .build_args
            .iter()
            .map(|(key, value)| {
                interpolate(value, |name| std::env::var(name).ok())
                    .map(|expanded| (key.clone(), expanded))
                    .map_err(|e| {
                        EngineError::failed(format!(
                            "{}: `image.build_args.{key}`: {e}",
                            loaded.path.display()
                        ))
                    })
            })
            .collect::<EngineResult<HashMap<_, _>>>()?;
        let targets_ecs = target.env().engine == EngineKind::Ecs;
        let platform = image
            .platform
            .clone()
            .or_else(|| targets_ecs.then(|| ECS_DEFAULT_PLATFORM.to_owned()));
        let secrets = image
            .secrets
            .iter()
            .map(|(id, from)| {
                let source = match (&from.env, &from.file) {
                    (Some(name), _) => SecretFrom::Env(name.clone()),
                    (None, Some(file)) => SecretFrom::File(loaded.resolve(file)),
                    (None, None) => {
                        return Err(EngineError::failed(format!(
                            "{}: `image.secrets.{id}` needs `env` or `file`",
                            loaded.path.display()
                        )))
                    }
                };
                Ok(BuildSecret {
                    id: id.clone(),
                    source,
                })
            })
            .collect::<EngineResult<Vec<_>>>()?;
        Ok(Self {
            config_dir: loaded.dir.clone(),
            context: loaded.resolve(&image.context),
            dockerfile: image.dockerfile.clone(),
            build_args,
            pre_build: image.pre_build.clone(),
            repository: format!("{}-{}", target.app(), target.name()),
            platform,
            secrets,
        })
    }

    /// The build arguments of the build tagged `tag` (the commit): `GIT_SHA` is the commit
    /// unless the config sets it.
    pub fn build_args_for(&self, tag: &str) -> HashMap<String, String> {
        let mut args = self.build_args.clone();
        args.entry(GIT_SHA_ARG.to_owned())
            .or_insert_with(|| tag.to_owned());
        args
    }
}

pub struct DockerImageBuilder {
    docker: Docker,
    spec: BuildSpec,
}

impl DockerImageBuilder {
    pub fn new(docker: Docker, spec: BuildSpec) -> Self {
        Self { docker, spec }
    }

    async fn pre_build(&self, command: &str, progress: &dyn Progress) -> EngineResult<()> {
        progress.info(format!("pre-build: {command}"));
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(&self.spec.config_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                EngineError::failed(format!(
                    "image.pre_build `{command}` could not start in {}: {e}",
                    self.spec.config_dir.display()
                ))
            })?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let (status, (), ()) = tokio::join!(
            child.wait(),
            forward_lines(stdout, "pre-build", progress),
            forward_lines(stderr, "pre-build", progress),
        );
        let status = status.map_err(|e| {
            EngineError::failed(format!(
                "image.pre_build `{command}` could not be awaited: {e}"
            ))
        })?;
        if status.success() {
            Ok(())
        } else {
            let code = status
                .code()
                .map(|c| format!("exit code {c}"))
                .unwrap_or_else(|| "a signal".to_owned());
            Err(EngineError::failed(format!(
                "image.pre_build `{command}` failed with {code}; its output is above"
            )))
        }
    }
}

async fn forward_lines<R: AsyncRead + Unpin>(
    reader: Option<R>,
    source: &str,
    progress: &dyn Progress,
) {
    let Some(reader) = reader else { return };
    let mut lines = BufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        progress.output(source, &line);
    }
}

#[async_trait]
impl ImageBuilder for DockerImageBuilder {
    async fn build(&self, tag: &str, progress: &dyn Progress) -> EngineResult<BuiltImage> {
        if let Some(command) = self
            .spec
            .pre_build
            .as_deref()
            .filter(|c| !c.trim().is_empty())
        {
            self.pre_build(command, progress).await?;
        }
        let context_dir = self.spec.context.clone();
        let dockerfile = self.spec.dockerfile.clone();
        let files =
            tokio::task::spawn_blocking(move || build_context::files(&context_dir, &dockerfile))
                .await
                .map_err(|e| EngineError::failed(format!("listing the build context: {e}")))?
                .map_err(|e| EngineError::failed(e.to_string()))?;
        let full_tag = format!("{}:{tag}", self.spec.repository);
        let build_args = self.spec.build_args_for(tag);
        let request = BuildRequest {
            context_dir: &self.spec.context,
            files: &files,
            dockerfile: &self.spec.dockerfile,
            tag: &full_tag,
            build_args: &build_args,
            platform: self.spec.platform.as_deref(),
        };
        let id = if self.spec.secrets.is_empty() {
            match buildkit::build(&self.docker, &request, progress).await? {
                Outcome::Built { image_id } => image_id,
                Outcome::Unsupported(reason) => {
                    progress.warning(format!(
                        "this Docker Engine has no BuildKit ({reason}); building with the legacy builder, which refuses RUN --mount"
                    ));
                    buildkit::build_legacy(&self.docker, &request, progress).await?
                }
            }
        } else {
            buildkit_solve::build(&self.docker, &request, &self.spec.secrets, progress).await?
        };
        progress.info(format!("built {full_tag} ({id})"));
        Ok(BuiltImage {
            id,
            tags: vec![full_tag],
        })
    }

    async fn push(
        &self,
        image_id: &str,
        repository: &str,
        tags: &[String],
        auth: Option<&RegistryAuth>,
        progress: &dyn Progress,
    ) -> EngineResult<String> {
        let credentials = auth.map(|a| DockerCredentials {
            username: Some(a.username.clone()),
            password: Some(a.password.clone()),
            serveraddress: Some(registry_host(repository).to_owned()),
            ..Default::default()
        });
        let mut digest = None;
        for tag in tags {
            let options = TagImageOptionsBuilder::default()
                .repo(repository)
                .tag(tag)
                .build();
            self.docker
                .tag_image(image_id, Some(options))
                .await
                .map_err(|e| failed(&format!("tagging {image_id} as {repository}:{tag}"), e))?;
            progress.info(format!("pushing {repository}:{tag}"));
            let options = PushImageOptionsBuilder::default().tag(tag).build();
            let mut stream = self
                .docker
                .push_image(repository, Some(options), credentials.clone());
            while let Some(item) = stream.next().await {
                let info = item.map_err(|e| match e {
                    bollard::errors::Error::DockerStreamError { error } => {
                        EngineError::failed(format!("pushing {repository}:{tag} failed: {error}"))
                    }
                    other => failed(&format!("pushing {repository}:{tag}"), other),
                })?;
                if let Some(status) = info.status {
                    if let Some(found) = digest_in_status(&status) {
                        digest = Some(found.to_owned());
                        progress.info(status);
                    }
                }
            }
        }
        digest.ok_or_else(|| {
            EngineError::failed(format!(
                "the registry of {repository} accepted the push but reported no digest"
            ))
        })
    }
}

/// The registry part of a repository (`127.0.0.1:5000/kaapi` → `127.0.0.1:5000`).
pub fn registry_host(repository: &str) -> &str {
    repository.split('/').next().unwrap_or(repository)
}

/// The push stream ends with `TAG: digest: sha256:… size: N`.
fn digest_in_status(status: &str) -> Option<&str> {
    let rest = &status[status.find("digest: ")? + "digest: ".len()..];
    let digest = rest.split_whitespace().next()?;
    digest.starts_with("sha256:").then_some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_digest_in_the_final_push_status() {
        let status = "3f2a1c0: digest: sha256:0123abcd size: 528";
        assert_eq!(digest_in_status(status), Some("sha256:0123abcd"));
        assert_eq!(digest_in_status("Pushed"), None);
        assert_eq!(digest_in_status("digest: md5:x"), None);
    }

    #[test]
    fn git_sha_defaults_to_the_commit_unless_configured() {
        let spec = BuildSpec {
            build_args: HashMap::from([("APP".to_owned(), "x".to_owned())]),
            ..BuildSpec::default()
        };
        let args = spec.build_args_for("c0ffee-dirty");
        assert_eq!(
            args.get(GIT_SHA_ARG).map(String::as_str),
            Some("c0ffee-dirty")
        );
        assert_eq!(args.get("APP").map(String::as_str), Some("x"));
        let pinned = BuildSpec {
            build_args: HashMap::from([(GIT_SHA_ARG.to_owned(), "pinned".to_owned())]),
            ..BuildSpec::default()
        };
        assert_eq!(pinned.build_args_for("c0ffee")[GIT_SHA_ARG], "pinned");
    }

    #[test]
    fn registry_host_is_the_first_segment() {
        assert_eq!(registry_host("127.0.0.1:5000/kaapi/app"), "127.0.0.1:5000");
    }
}
