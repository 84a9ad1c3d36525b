//! What the engine works on: one environment of one config, with its AWS names resolved.

use std::sync::Arc;

use kaapi_core::config::{Config, EnvironmentConfig, LoadedConfig};
use kaapi_core::engine::EngineError;
use kaapi_core::naming::{self, Names};

/// An environment of a config, ready for the ECS engine.
#[derive(Debug, Clone)]
pub struct Target {
    pub config: Arc<Config>,
    pub environment: String,
    pub names: Names,
}

impl Target {
    pub fn new(loaded: &LoadedConfig, environment: &str) -> Result<Self, EngineError> {
        if loaded.config.environment(environment).is_none() {
            return Err(EngineError::not_found(format!(
                "{}: no environment `{environment}`",
                loaded.path.display()
            )));
        }
        Ok(Self {
            config: Arc::new(loaded.config.clone()),
            environment: environment.to_owned(),
            names: naming::names(&loaded.config, environment),
        })
    }

    pub fn env(&self) -> &EnvironmentConfig {
        // `new` checked that the environment exists; the config is immutable afterwards.
        match self.config.environments.get(&self.environment) {
            Some(env) => env,
            None => unreachable!("environment checked in Target::new"),
        }
    }

    pub fn app(&self) -> &str {
        &self.config.app
    }

    /// Service keys of the config, in the config's order (web first where it is listed first).
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.config.services.keys().map(String::as_str)
    }

    pub fn web_service(&self) -> Option<&str> {
        self.config.web_service().map(|(name, _)| name)
    }

    /// The service whose task-definition family holds the release history: the web service, or
    /// the first service when there is none.
    pub fn history_service(&self) -> Option<&str> {
        self.web_service().or_else(|| self.services().next())
    }

    pub fn ecs_service_name(&self, service: &str) -> Result<&str, EngineError> {
        self.names
            .service(service)
            .map(|n| n.service.as_str())
            .ok_or_else(|| unknown_service(self, service))
    }

    pub fn family(&self, service: &str) -> Result<&str, EngineError> {
        self.names
            .service(service)
            .map(|n| n.family.as_str())
            .ok_or_else(|| unknown_service(self, service))
    }

    pub fn log_group(&self, service: &str) -> Result<&str, EngineError> {
        self.names
            .service(service)
            .map(|n| n.log_group.as_str())
            .ok_or_else(|| unknown_service(self, service))
    }

    /// The config's service key of an ECS service name.
    pub fn service_of_ecs_name(&self, ecs_name: &str) -> Option<&str> {
        self.names
            .services
            .iter()
            .find(|(_, n)| n.service == ecs_name)
            .map(|(k, _)| k.as_str())
    }
}

fn unknown_service(target: &Target, service: &str) -> EngineError {
    EngineError::not_found(format!(
        "no service `{service}` in the config; services: {}",
        target.services().collect::<Vec<_>>().join(", ")
    ))
}
