//! The image build over the engine's `/build` endpoint, through BuildKit with a session
//! (bollard's in-process BuildKit client: `RUN --mount=type=cache`, multi-stage `COPY --from`,
//! `FROM` a local image, `--platform`, step progress as it happens), or through the legacy
//! builder on engines without BuildKit. The context is streamed.

use std::collections::HashMap;
use std::path::Path;

use bollard::models::{BuildInfoAux, ImageId};
use bollard::query_parameters::{BuildImageOptions, BuildImageOptionsBuilder, BuilderVersion};
use bollard::Docker;
use futures_util::StreamExt;
use kaapi_core::engine::{EngineError, EngineResult};
use kaapi_core::progress::Progress;

use crate::build_context_stream::{self, is_reader_gone};
use crate::buildkit_progress::StepTracker;
use crate::docker::failed;

/// One build, whatever builder runs it.
pub struct BuildRequest<'a> {
    pub context_dir: &'a Path,
    /// Files of the context to send (see [`crate::build_context::files`]).
    pub files: &'a [String],
    pub dockerfile: &'a str,
    /// `repository:tag` the image gets.
    pub tag: &'a str,
    pub build_args: &'a HashMap<String, String>,
    pub platform: Option<&'a str>,
}

/// How a BuildKit build ended when it did not fail.
pub enum Outcome {
    Built {
        image_id: String,
    },
    /// The engine has no BuildKit (e.g. a Windows daemon); its message says so.
    Unsupported(String),
}

pub async fn build(
    docker: &Docker,
    request: &BuildRequest<'_>,
    progress: &dyn Progress,
) -> EngineResult<Outcome> {
    let session = format!("kaapi-{:016x}", rand::random::<u64>());
    let mut options = BuildImageOptionsBuilder::default()
        .dockerfile(request.dockerfile)
        .t(request.tag)
        .buildargs(request.build_args)
        // Base images are local (built here or pulled beforehand); never reach for a registry.
        .pull("false")
        .version(BuilderVersion::BuilderBuildKit)
        .session(&session);
    if let Some(platform) = request.platform {
        options = options.platform(platform);
    }
    run(docker, options.build(), request, progress).await
}

/// The engine's legacy builder, only for engines without BuildKit: it refuses `RUN --mount`,
/// so a Dockerfile that needs it fails with the engine's message.
pub async fn build_legacy(
    docker: &Docker,
    request: &BuildRequest<'_>,
    progress: &dyn Progress,
) -> EngineResult<String> {
    let mut options = BuildImageOptionsBuilder::default()
        .dockerfile(request.dockerfile)
        .t(request.tag)
        .buildargs(request.build_args)
        .rm(true)
        .forcerm(true);
    if let Some(platform) = request.platform {
        options = options.platform(platform);
    }
    match run(docker, options.build(), request, progress).await? {
        Outcome::Built { image_id } => Ok(image_id),
        Outcome::Unsupported(error) => Err(EngineError::failed(format!(
            "docker build of {} failed: {error}",
            request.tag
        ))),
    }
}

/// Streams the context into `/build` and follows the answer: plain output lines, BuildKit
/// steps, the image ID, and the failing step when there is one.
async fn run(
    docker: &Docker,
    options: BuildImageOptions,
    request: &BuildRequest<'_>,
    progress: &dyn Progress,
) -> EngineResult<Outcome> {
    let (body, written) = build_context_stream::gzip_stream(
        request.context_dir.to_path_buf(),
        request.files.to_vec(),
    );
    let mut stream = docker.build_image(options, None, Some(bollard::body_stream(body)));
    let mut tracker = StepTracker::new(progress);
    let mut image_id = None;
    let mut engine_error = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                for line in info.stream.iter().flat_map(|t| t.lines()) {
                    if !line.trim().is_empty() {
                        progress.output("build", line);
                    }
                }
                match info.aux {
                    Some(BuildInfoAux::BuildKit(status)) => tracker.update(&status),
                    Some(BuildInfoAux::Default(ImageId { id: Some(id) })) => image_id = Some(id),
                    _ => {}
                }
            }
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                engine_error = Some(error);
                break;
            }
            Err(other) => {
                drop(stream);
                let _ = written.await;
                return Err(failed(&format!("building {}", request.tag), other));
            }
        }
    }
    drop(stream);
    let sent = written
        .await
        .map_err(|e| EngineError::failed(format!("writing the build context: {e}")))?;
    match (engine_error, sent) {
        // A file that could not be read explains a truncated context better than the engine.
        (_, Err(e)) if !is_reader_gone(&e) => Err(EngineError::failed(e.to_string())),
        (Some(error), _) if is_unsupported(&error) => Ok(Outcome::Unsupported(error)),
        (Some(error), _) => Err(EngineError::failed(match tracker.failure() {
            Some(step) => format!(
                "docker build of {} failed: {}",
                request.tag,
                step.describe()
            ),
            None => format!("docker build of {} failed: {error}", request.tag),
        })),
        (None, Err(e)) => Err(EngineError::failed(e.to_string())),
        (None, Ok(bytes)) => {
            progress.info(format!(
                "build context {}: {} files, {} KiB compressed",
                request.context_dir.display(),
                request.files.len(),
                bytes / 1024
            ));
            Ok(Outcome::Built {
                image_id: match image_id {
                    Some(id) => id,
                    None => image_id_of(docker, request.tag).await?,
                },
            })
        }
    }
}

/// What an engine without BuildKit answers to `version=2`.
fn is_unsupported(error: &str) -> bool {
    let error = error.to_ascii_lowercase();
    error.contains("buildkit not supported") || error.contains("not supported by daemon")
}

/// The ID of `tag`, for builders that do not report it.
pub async fn image_id_of(docker: &Docker, tag: &str) -> EngineResult<String> {
    docker
        .inspect_image(tag)
        .await
        .map_err(|e| failed(&format!("inspecting {tag}"), e))?
        .id
        .ok_or_else(|| EngineError::failed(format!("{tag} has no image ID")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_without_buildkit_is_recognised() {
        assert!(is_unsupported("buildkit not supported by daemon"));
        assert!(!is_unsupported(
            "failed to compute cache key: \"/missing.txt\" not found"
        ));
    }
}
