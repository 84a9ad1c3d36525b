//! What the engine works on: one resolved environment of one config, with ECS's view of its
//! names (service, family and log group of each service).

use kaapi_core::config::{Config, EnvironmentConfig, ResolvedEnvironment};
use kaapi_core::engine::EngineError;
use kaapi_core::naming::Names;

/// An environment of a config, ready for the ECS engine.
#[derive(Debug, Clone)]
pub struct Target {
    resolved: ResolvedEnvironment,
}

impl From<ResolvedEnvironment> for Target {
    fn from(resolved: ResolvedEnvironment) -> Self {
        Self { resolved }
    }
}

impl Target {
    pub fn resolved(&self) -> &ResolvedEnvironment {
        &self.resolved
    }

    pub fn config(&self) -> &Config {
        self.resolved.config()
    }

    /// The environment's name.
    pub fn environment(&self) -> &str {
        self.resolved.name()
    }

    pub fn env(&self) -> &EnvironmentConfig {
        self.resolved.env()
    }

    pub fn names(&self) -> &Names {
        self.resolved.names()
    }

    pub fn app(&self) -> &str {
        self.resolved.app()
    }

    /// Service keys of the config, in the config's order (web first where it is listed first).
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.config().services.keys().map(String::as_str)
    }

    pub fn web_service(&self) -> Option<&str> {
        self.config().web_service().map(|(name, _)| name)
    }

    /// The service whose task-definition family holds the release history: the web service, or
    /// the first service when there is none.
    pub fn history_service(&self) -> Option<&str> {
        self.web_service().or_else(|| self.services().next())
    }

    pub fn ecs_service_name(&self, service: &str) -> Result<&str, EngineError> {
        self.names()
            .service(service)
            .map(|n| n.service.as_str())
            .ok_or_else(|| unknown_service(self, service))
    }

    pub fn family(&self, service: &str) -> Result<&str, EngineError> {
        self.names()
            .service(service)
            .map(|n| n.family.as_str())
            .ok_or_else(|| unknown_service(self, service))
    }

    pub fn log_group(&self, service: &str) -> Result<&str, EngineError> {
        self.names()
            .service(service)
            .map(|n| n.log_group.as_str())
            .ok_or_else(|| unknown_service(self, service))
    }

    /// The config's service key of an ECS service name.
    pub fn service_of_ecs_name(&self, ecs_name: &str) -> Option<&str> {
        self.names()
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
