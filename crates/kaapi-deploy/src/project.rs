//! The project a command works on: its config (found and loaded once), the environment it
//! names (resolved once), and where the local engine keeps its state.

use std::path::{Path, PathBuf};

use std::sync::Arc;

use kaapi_core::config::{self, LoadedConfig, ResolvedEnvironment};

use crate::exit::{CliError, CliResult};

pub fn load_config(explicit: Option<&Path>) -> CliResult<LoadedConfig> {
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None => {
            let cwd = std::env::current_dir()
                .map_err(|e| CliError::Usage(format!("cannot read the current directory: {e}")))?;
            config::find_config(&cwd)?
        }
    };
    let loaded = config::load(&path)?;
    for warning in &loaded.warnings {
        eprintln!("{warning}");
    }
    Ok(loaded)
}

/// Loads the config and resolves the environment a command names, once: everything below takes
/// the result and never looks the name up again.
pub fn resolve(explicit: Option<&Path>, name: &str) -> CliResult<ResolvedEnvironment> {
    resolve_in(load_config(explicit)?, name)
}

/// Resolves `name` in an already loaded config; an unknown name is a usage error.
pub fn resolve_in(
    loaded: impl Into<Arc<LoadedConfig>>,
    name: &str,
) -> CliResult<ResolvedEnvironment> {
    ResolvedEnvironment::resolve(loaded, name).map_err(|e| CliError::Usage(e.to_string()))
}

/// Where the local engine keeps its state: `KAAPI_STATE_DIR`, else `.kaapi/` beside deploy.toml.
pub fn state_dir(loaded: &LoadedConfig) -> PathBuf {
    std::env::var_os("KAAPI_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| loaded.dir.join(".kaapi"))
}

/// `service` when the config has it, else the web service (or the first one).
pub fn service_or_web(target: &ResolvedEnvironment, service: Option<&str>) -> CliResult<String> {
    match service {
        Some(s) => known_service(target, s).map(|()| s.to_owned()),
        None => target
            .config()
            .web_service()
            .map(|(n, _)| n.to_owned())
            .or_else(|| target.config().services.keys().next().cloned())
            .ok_or_else(|| CliError::Usage("the config has no service".to_owned())),
    }
}

/// A usage error naming the config's services unless `service` is one of them.
pub fn known_service(target: &ResolvedEnvironment, service: &str) -> CliResult<()> {
    let services = &target.config().services;
    if services.contains_key(service) {
        return Ok(());
    }
    Err(CliError::Usage(format!(
        "no service `{service}` in {}; services: {}",
        target.path().display(),
        services.keys().cloned().collect::<Vec<_>>().join(", ")
    )))
}
