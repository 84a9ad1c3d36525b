//! The peer: the same replacement done the way a user would without us, with Debian's
//! docker-compose 1.29 — `docker-compose up -d --force-recreate` of one web container of the
//! same image, published on a fixed 127.0.0.1 port, measured by the same load client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cmd::{self, docker};
use crate::load::{LoadConfig, LoadReport, LoadRun};
use crate::probe;
use crate::project::HEALTH_PATH;

pub const COMPOSE: &str = "/usr/bin/docker-compose";

pub struct Peer {
    dir: PathBuf,
    project: String,
    pub port: u16,
}

#[derive(Debug, Clone)]
pub struct PeerRun {
    /// `docker-compose up -d --force-recreate` alone.
    pub command_seconds: f64,
    /// From the first to the last failed request (0 when none failed).
    pub outage_seconds: f64,
    pub load: LoadReport,
}

impl Peer {
    /// Writes the compose file, migrates its volume and starts the first container.
    pub async fn start(dir: &Path, project: &str, image: &str, port: u16) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let compose = format!(
            "version: \"2.4\"\nservices:\n  web:\n    image: \"{image}\"\n    ports:\n      - \"127.0.0.1:{port}:8000\"\n    volumes:\n      - data:/data\n    stop_grace_period: 10s\nvolumes:\n  data: {{}}\n"
        );
        std::fs::write(dir.join("docker-compose.yml"), compose)?;
        let peer = Self {
            dir: dir.to_path_buf(),
            project: project.to_owned(),
            port,
        };
        peer.compose(&["run", "--rm", "web", "/app", "migrate"])
            .await
            .context("docker-compose could not migrate the peer's volume")?;
        peer.compose(&["up", "-d"]).await?;
        probe::until_healthy(
            peer.addr(),
            HEALTH_PATH,
            Instant::now(),
            Duration::from_millis(20),
            Duration::from_secs(60),
        )
        .await?;
        Ok(peer)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    async fn compose(&self, args: &[&str]) -> Result<cmd::Output> {
        let mut all = vec!["-p", self.project.as_str(), "--no-ansi"];
        all.extend_from_slice(args);
        cmd::run(COMPOSE, all, Some(&self.dir), &[])
            .await?
            .ok(&format!("docker-compose {}", args.join(" ")))
    }

    /// Recreates the container under load: the user's zero-effort replacement.
    pub async fn replace_under_load(&self, load: LoadConfig) -> Result<PeerRun> {
        let run = LoadRun::start(load);
        // Steady traffic before the change, as in a real service.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let started = Instant::now();
        let result = async {
            let out = self.compose(&["up", "-d", "--force-recreate"]).await?;
            probe::until_healthy(
                self.addr(),
                HEALTH_PATH,
                started,
                Duration::from_millis(20),
                Duration::from_secs(60),
            )
            .await?;
            Ok::<_, anyhow::Error>(out.elapsed.as_secs_f64())
        }
        .await;
        let load = run.finish().await;
        Ok(PeerRun {
            command_seconds: result?,
            outage_seconds: outage_seconds(&load),
            load,
        })
    }

    pub async fn remove(&self) {
        let _ = self.compose(&["down", "-v", "--timeout", "2"]).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Seconds from the first to the last failed request.
pub fn outage_seconds(load: &LoadReport) -> f64 {
    load.failure_window
        .map(|(first, last)| last.saturating_sub(first).as_secs_f64())
        .unwrap_or(0.0)
}

/// Installs Debian's docker-compose when missing (needs root and the apt cache).
pub async fn ensure_installed() -> Result<()> {
    if Path::new(COMPOSE).is_file() {
        return Ok(());
    }
    eprintln!("docker-compose is missing; installing the Debian package");
    cmd::run(
        "apt-get",
        ["install", "-y", "--no-install-recommends", "docker-compose"],
        None,
        &[],
    )
    .await?
    .ok("apt-get install docker-compose")?;
    let _ = docker(["version"]).await?;
    Ok(())
}
