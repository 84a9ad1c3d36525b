//! A loaded config bound to one of its environments. The CLI resolves the environment name once
//! and passes this value down; engines, the build step and the history take it and never look
//! the name up again.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;

use super::load::LoadedConfig;
use super::model::{Config, EnvironmentConfig};
use crate::diagnostics::nearest;
use crate::naming::{self, Names};

/// The environment a command names does not exist in the config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: no environment `{name}`; {hint}", path.display())]
pub struct UnknownEnvironment {
    pub path: PathBuf,
    pub name: String,
    /// `did you mean …?` or the list of known environments.
    pub hint: String,
}

/// One environment of one config, checked to exist. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ResolvedEnvironment {
    loaded: Arc<LoadedConfig>,
    name: String,
    env: Arc<EnvironmentConfig>,
    names: Arc<Names>,
}

impl ResolvedEnvironment {
    /// Binds `loaded` to its environment `name`.
    pub fn resolve(
        loaded: impl Into<Arc<LoadedConfig>>,
        name: &str,
    ) -> Result<Self, UnknownEnvironment> {
        let loaded = loaded.into();
        let Some(env) = loaded.config.environment(name) else {
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
            return Err(UnknownEnvironment {
                path: loaded.path.clone(),
                name: name.to_owned(),
                hint,
            });
        };
        let env = Arc::new(env.clone());
        let names = Arc::new(naming::names(&loaded.config, name));
        Ok(Self {
            name: name.to_owned(),
            env,
            names,
            loaded,
        })
    }

    /// Another environment of the same config (e.g. the one a promotion copies from).
    pub fn sibling(&self, name: &str) -> Result<Self, UnknownEnvironment> {
        Self::resolve(Arc::clone(&self.loaded), name)
    }

    /// The environment's name (`local`, `staging`, `production`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The environment's own section of the config.
    pub fn env(&self) -> &EnvironmentConfig {
        &self.env
    }

    pub fn config(&self) -> &Config {
        &self.loaded.config
    }

    pub fn loaded(&self) -> &LoadedConfig {
        &self.loaded
    }

    /// The application name (`app`), the stem of every resource name.
    pub fn app(&self) -> &str {
        &self.loaded.config.app
    }

    /// The config file, for messages.
    pub fn path(&self) -> &Path {
        &self.loaded.path
    }

    /// The directory the config's relative paths are resolved against.
    pub fn dir(&self) -> &Path {
        &self.loaded.dir
    }

    /// The environment's resource names (cluster, repository, per-service names).
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Replicas of `service` here (environment override first).
    pub fn replicas(&self, service: &str) -> u32 {
        self.loaded.config.replicas(&self.name, service)
    }

    /// How many earlier releases automatic pruning keeps here; `None`: deploys do not prune.
    pub fn retention(&self) -> Option<u32> {
        self.loaded.config.retention(&self.name)
    }

    /// Plain (non-secret) variables of `service` here.
    pub fn plain_env(&self, service: &str) -> IndexMap<String, String> {
        self.loaded.config.plain_env(&self.name, service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn loaded() -> LoadedConfig {
        let text = r#"
app = "kaapi"
[image]
context = "."
[services.backend]
command = "serve"
port = 80
[environments.staging]
engine = "ecs"
region = "eu-west-1"
[environments.production]
engine = "ecs"
region = "eu-west-1"
"#;
        let path = Path::new("deploy.toml");
        let (config, warnings) = parse(path, text).expect("valid config");
        LoadedConfig {
            path: path.to_path_buf(),
            dir: PathBuf::from("."),
            config,
            warnings,
        }
    }

    #[test]
    fn resolves_a_known_environment_with_its_names() {
        let resolved = ResolvedEnvironment::resolve(loaded(), "staging").expect("known");
        assert_eq!(resolved.name(), "staging");
        assert_eq!(resolved.env().region.as_deref(), Some("eu-west-1"));
        assert_eq!(resolved.names().cluster, "kaapi-staging-cluster");
        assert_eq!(resolved.replicas("backend"), 1);
    }

    #[test]
    fn an_unknown_environment_suggests_the_nearest() {
        let error = ResolvedEnvironment::resolve(loaded(), "stagign").expect_err("unknown");
        assert_eq!(error.hint, "did you mean `staging`?");
        let error = ResolvedEnvironment::resolve(loaded(), "qa").expect_err("unknown");
        assert_eq!(error.hint, "known environments: staging, production");
        assert!(error
            .to_string()
            .starts_with("deploy.toml: no environment `qa`"));
    }
}
