//! A throwaway project for the benchmark: a copy of `examples/backend` (with its built
//! `dist/`), a `deploy.toml` with a unique app name and a free ingress port, and a private
//! state directory for the local engine, all under one temporary directory.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub const HEALTH_PATH: &str = "/api/v1/utils/health/";
pub const ENVIRONMENT: &str = "local";

pub struct Project {
    /// Removed when the project is dropped.
    _root: tempfile::TempDir,
    pub dir: PathBuf,
    pub state_dir: PathBuf,
    pub app: String,
    pub ingress_port: u16,
}

/// What the next deploy builds: build args of the example backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    pub app_version: String,
    /// `health` for a release whose health check always fails.
    pub break_mode: Option<String>,
}

impl Project {
    pub fn create(workspace: &Path, app: &str, ingress_port: u16) -> Result<Self> {
        let source = workspace.join("examples/backend");
        let binary = source.join("dist/kaapi-example-backend");
        if !binary.is_file() {
            bail!(
                "{} is missing; run examples/backend/build-static.sh first",
                binary.display()
            );
        }
        let root = tempfile::Builder::new()
            .prefix("kaapi-bench-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let dir = root.path().join("project");
        copy_tree(&source, &dir)?;
        let state_dir = root.path().join("state");
        std::fs::create_dir_all(&state_dir)?;
        let project = Self {
            dir,
            state_dir,
            app: app.to_owned(),
            ingress_port,
            _root: root,
        };
        project.write_config(&Build {
            app_version: "bench-0".to_owned(),
            break_mode: None,
        })?;
        Ok(project)
    }

    /// The temporary directory holding the project, its state and the binary under test.
    pub fn root(&self) -> &Path {
        self._root.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("deploy.toml")
    }

    /// Rewrites `deploy.toml` so the next deploy builds `build`.
    pub fn write_config(&self, build: &Build) -> Result<()> {
        let text = deploy_toml(&self.app, self.ingress_port, build);
        std::fs::write(self.config_path(), text).context("cannot write deploy.toml")
    }
}

/// The example backend as the local engine runs it: 2 web replicas, 1 worker, migrations.
pub fn deploy_toml(app: &str, ingress_port: u16, build: &Build) -> String {
    let break_arg = build.break_mode.as_deref().unwrap_or("");
    format!(
        r#"app = "{app}"

[image]
context = "."
build_args = {{ APP_VERSION = "{version}", BREAK = "{break_arg}" }}

[migrations]
command = ["/app", "migrate"]

[services.backend]
port = 8000
replicas = 2
health = {{ path = "{HEALTH_PATH}", interval = "1s", timeout = "500ms", retries = 3, start_period = "3s" }}
stop_timeout = "10s"
volumes = ["data:/data"]

[services.worker]
command = ["/app", "worker"]
replicas = 1
stop_timeout = "5s"
volumes = ["data:/data"]

[environments.{ENVIRONMENT}]
engine = "docker"
ingress_port = {ingress_port}
# The rollback measured comes within this window of the deploy it undoes: a switch, not a start.
keep_warm = "5m"
"#,
        version = build.app_version,
    )
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let name = entry.file_name();
        if name == "target" || name == ".kaapi" {
            continue;
        }
        let (source, dest) = (entry.path(), to.join(&name));
        if entry.file_type()?.is_dir() {
            copy_tree(&source, &dest)?;
        } else {
            std::fs::copy(&source, &dest)
                .with_context(|| format!("cannot copy {}", source.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_config_is_valid_for_the_core() {
        let build = Build {
            app_version: "bench-7".to_owned(),
            break_mode: Some("health".to_owned()),
        };
        let text = deploy_toml("kaapi-bench-x1", 18123, &build);
        let (config, _warnings) = kaapi_core::config::parse(Path::new("deploy.toml"), &text)
            .unwrap_or_else(|e| panic!("generated deploy.toml is invalid: {e}\n{text}"));
        assert_eq!(config.app, "kaapi-bench-x1");
        assert_eq!(config.image.build_args["APP_VERSION"], "bench-7");
        assert_eq!(config.image.build_args["BREAK"], "health");
        assert_eq!(config.replicas(ENVIRONMENT, "backend"), 2);
        assert_eq!(config.replicas(ENVIRONMENT, "worker"), 1);
        assert_eq!(
            config.environment(ENVIRONMENT).and_then(|e| e.ingress_port),
            Some(18123)
        );
    }
}
