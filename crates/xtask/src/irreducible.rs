//! The physical floor of a deploy, measured alone with plain docker on the same machine and
//! context: `docker build` of the image, and one container started from it until its first
//! healthy probe (polled every 20 ms on its published 127.0.0.1 port).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cmd::docker;
use crate::probe;
use crate::project::HEALTH_PATH;

const POLL_EVERY: Duration = Duration::from_millis(20);
const HEALTHY_LIMIT: Duration = Duration::from_secs(60);

/// `docker build` of `context` with the example's build args, tagged `tag`; seconds taken.
pub async fn build(context: &Path, tag: &str, app_version: &str) -> Result<f64> {
    let out = docker([
        "build".as_ref(),
        "-q".as_ref(),
        "--build-arg".as_ref(),
        format!("APP_VERSION={app_version}").as_ref(),
        "-t".as_ref(),
        tag.as_ref(),
        context.as_os_str(),
    ])
    .await?;
    Ok(out.elapsed.as_secs_f64())
}

/// A named volume holding a migrated database, as the example's health check needs one.
pub async fn migrated_volume(image: &str, volume: &str) -> Result<()> {
    docker(["volume", "create", volume]).await?;
    docker([
        "run",
        "--rm",
        "-v",
        &format!("{volume}:/data"),
        image,
        "/app",
        "migrate",
    ])
    .await?;
    Ok(())
}

/// Seconds of one `docker run --rm` of the migrations command to its exit, on `volume` (already
/// migrated, as a deploy of a new image finds it).
pub async fn migrate(image: &str, volume: &str) -> Result<f64> {
    let started = Instant::now();
    docker([
        "run",
        "--rm",
        "-v",
        &format!("{volume}:/data"),
        image,
        "/app",
        "migrate",
    ])
    .await?;
    Ok(started.elapsed().as_secs_f64())
}

/// Seconds from `docker run` to the first 200 of the health path, for one container of
/// `image` with `volume` at /data. The container is removed afterwards.
pub async fn start_until_healthy(image: &str, volume: &str, name: &str) -> Result<f64> {
    let started = Instant::now();
    let result = async {
        docker([
            "run",
            "-d",
            "--name",
            name,
            "-v",
            &format!("{volume}:/data"),
            "-p",
            "127.0.0.1::8000",
            image,
        ])
        .await?;
        let addr = published_port(name, 8000).await?;
        probe::until_healthy(addr, HEALTH_PATH, started, POLL_EVERY, HEALTHY_LIMIT).await
    }
    .await;
    let _ = docker(["rm", "-f", name]).await;
    Ok(result?.as_secs_f64())
}

/// The 127.0.0.1 address a container's port is published on.
pub async fn published_port(container: &str, port: u16) -> Result<SocketAddr> {
    let out = docker(["port", container, &port.to_string()]).await?;
    // `127.0.0.1:49153`
    let line = out
        .stdout
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    line.parse()
        .with_context(|| format!("docker port {container} {port} printed {line:?}"))
}
