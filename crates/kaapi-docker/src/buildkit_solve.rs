//! Builds that mount build secrets (`RUN --mount=type=secret`). bollard's `/build` session
//! serves registry credentials only, so a secret mount there would find nothing; its BuildKit
//! solve API (the engine's `/grpc` control endpoint) serves secrets through the session. That
//! API takes the context as one buffer (held in memory, refused past
//! [`build_context_stream::BUFFER_LIMIT`]) and streams no step progress, so it is used only when
//! secrets are configured.

use std::path::Path;

use bollard::grpc::build::{ImageBuildFrontendOptions, ImageBuildLoadInput, ImageBuildPlatform};
use bollard::grpc::driver::moby::Moby;
use bollard::grpc::driver::Build;
use bollard::Docker;
use kaapi_core::engine::{EngineError, EngineResult};
use kaapi_core::progress::Progress;

use crate::build_context_stream;
use crate::build_secrets::BuildSecret;
use crate::buildkit::{image_id_of, BuildRequest};

pub async fn build(
    docker: &Docker,
    request: &BuildRequest<'_>,
    secrets: &[BuildSecret],
    progress: &dyn Progress,
) -> EngineResult<String> {
    for secret in secrets {
        secret
            .check()
            .map_err(|e| EngineError::failed(e.to_string()))?;
    }
    let mut options = ImageBuildFrontendOptions::builder()
        .dockerfile(Path::new(request.dockerfile))
        .pull(false);
    for (key, value) in request.build_args {
        options = options.buildarg(key, value);
    }
    if let Some(platform) = request.platform {
        options = options.platforms(&parse_platform(platform)?);
    }
    for secret in secrets {
        options = options.set_secret(&secret.id, &secret.session_source());
    }
    let dir = request.context_dir.to_path_buf();
    let files = request.files.to_vec();
    let archive = tokio::task::spawn_blocking(move || {
        build_context_stream::gzip_bytes(&dir, &files, build_context_stream::BUFFER_LIMIT)
    })
    .await
    .map_err(|e| EngineError::failed(format!("archiving the build context: {e}")))?
    .map_err(|e| EngineError::failed(e.to_string()))?;
    progress.info(format!(
        "build context {}: {} files, {} KiB compressed; building with {} build secret(s) (no step progress on this path)",
        request.context_dir.display(),
        request.files.len(),
        archive.len() / 1024,
        secrets.len()
    ));
    solve_on_own_thread(
        docker.clone(),
        request.tag.to_owned(),
        options.build(),
        ImageBuildLoadInput::Upload(archive.into()),
    )
    .await
    .map_err(|e| EngineError::failed(format!("docker build of {} failed: {e}", request.tag)))?;
    image_id_of(docker, request.tag).await
}

/// bollard's solve future is not `Send` (its tear-down handler is a boxed non-`Send` future),
/// while engine futures must be; so it runs on a thread of its own, on a one-thread runtime.
async fn solve_on_own_thread(
    docker: Docker,
    tag: String,
    options: ImageBuildFrontendOptions,
    input: ImageBuildLoadInput,
) -> Result<(), String> {
    let (done, outcome) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting the build runtime: {e}"))
            .and_then(|runtime| {
                runtime
                    .block_on(Build::docker_build(
                        Moby::new(&docker),
                        &tag,
                        options,
                        input,
                        None,
                        None,
                    ))
                    .map_err(|e| e.to_string())
            });
        // The receiver is gone only when the deploy was cancelled; nobody waits for the result.
        let _ = done.send(result);
    });
    outcome
        .await
        .map_err(|_| "the build thread ended without an answer".to_owned())?
}

/// `os/arch[/variant]`, e.g. `linux/amd64` or `linux/arm/v7`.
pub fn parse_platform(text: &str) -> EngineResult<ImageBuildPlatform> {
    let parts: Vec<&str> = text.split('/').collect();
    match parts.as_slice() {
        [os, architecture] | [os, architecture, _]
            if !os.is_empty() && !architecture.is_empty() =>
        {
            Ok(ImageBuildPlatform {
                os: (*os).to_owned(),
                architecture: (*architecture).to_owned(),
                variant: parts.get(2).map(|v| (*v).to_owned()),
            })
        }
        _ => Err(EngineError::failed(format!(
            "image.platform `{text}` is not `os/arch[/variant]`, e.g. `linux/amd64`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_are_os_arch_and_an_optional_variant() {
        let arm = parse_platform("linux/arm/v7").expect("arm");
        assert_eq!(
            (arm.os.as_str(), arm.architecture.as_str(), arm.variant),
            ("linux", "arm", Some("v7".to_owned()))
        );
        assert_eq!(parse_platform("linux/amd64").expect("amd64").variant, None);
        assert!(parse_platform("amd64").is_err());
        assert!(parse_platform("linux/").is_err());
    }
}
