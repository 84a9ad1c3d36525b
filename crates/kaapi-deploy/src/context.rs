//! Loading the config and picking an environment, with errors that say what to do.

use std::path::{Path, PathBuf};

use kaapi_core::config::{self, EnvironmentConfig, LoadedConfig};
use kaapi_core::diagnostics::nearest;

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

/// The named environment, or a usage error listing the known ones.
pub fn environment<'a>(loaded: &'a LoadedConfig, name: &str) -> CliResult<&'a EnvironmentConfig> {
    loaded.config.environment(name).ok_or_else(|| {
        let known: Vec<&str> = loaded
            .config
            .environments
            .keys()
            .map(String::as_str)
            .collect();
        let hint = match nearest(name, known.iter().copied()) {
            Some(best) => format!("did you mean `{best}`?"),
            None => format!("known environments: {}", known.join(", ")),
        };
        CliError::Usage(format!(
            "{}: no environment `{name}`; {hint}",
            loaded.path.display()
        ))
    })
}

/// Where the local engine keeps its state: `KAAPI_STATE_DIR`, else `.kaapi/` beside deploy.toml.
pub fn state_dir(loaded: &LoadedConfig) -> PathBuf {
    std::env::var_os("KAAPI_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| loaded.dir.join(".kaapi"))
}
