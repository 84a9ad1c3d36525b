//! The `--github` part of `kaapi-deploy init`: writes `.github/workflows/cd-<env>.yml` for
//! every environment with a trigger. `init` calls [`run`] after writing deploy.toml.

use std::path::Path;

use kaapi_ci::workflows::{self, WorkflowOptions, DEFAULT_GITHUB_ENVIRONMENT};

use crate::exit::{CliError, CliResult};
use crate::project;

/// `dir` is the repository root; the config is `config` or `dir/deploy.toml`;
/// `github_environment` defaults to `AWS_ENV_VARS`. Existing files are kept unless `force`.
pub fn run(
    dir: &Path,
    config: Option<&Path>,
    force: bool,
    github_environment: Option<&str>,
) -> CliResult {
    let config_path = config
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join(kaapi_core::config::CONFIG_FILE_NAME));
    let loaded = project::load_config(Some(&config_path))?;
    // The workflows run from the repository root: name the config only when it lives elsewhere.
    let relative = match config_path.strip_prefix(dir) {
        Ok(inside) => Some(inside.to_path_buf()),
        // `--config deploy/deploy.toml` with the default `--dir .`
        Err(_) if config_path.is_relative() && dir == Path::new(".") => Some(config_path.clone()),
        Err(_) => None,
    }
    .map(|p| p.to_string_lossy().into_owned())
    .filter(|p| p != kaapi_core::config::CONFIG_FILE_NAME);
    let options = WorkflowOptions {
        github_environment: github_environment
            .unwrap_or(DEFAULT_GITHUB_ENVIRONMENT)
            .to_owned(),
        config_path: relative,
        ..WorkflowOptions::default()
    };
    let written = workflows::write(dir, &loaded.config, &options, force).map_err(|e| match e {
        workflows::WorkflowError::Write { .. } => CliError::Failed(e.to_string()),
        _ => CliError::Usage(e.to_string()),
    })?;
    for path in written {
        println!("wrote {}", path.display());
    }
    println!(
        "next: create the GitHub environment `{}`, the repository variable AWS_RESOURCE_PREFIX and the deploy role (docs/ci.md)",
        options.github_environment
    );
    Ok(())
}
