//! The naming convention of AWS resources (Kaapi's `AWS_RESOURCE_PREFIX` scheme), with
//! per-environment overrides. Production uses the bare prefix; every other environment E
//! inserts `-E`.

use indexmap::IndexMap;
use serde::Serialize;

use crate::config::{Config, ServiceKind};

/// The environment that uses the bare prefix (`kaapi-cluster` rather than `kaapi-production-cluster`).
pub const PRODUCTION: &str = "production";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceNames {
    /// ECS service name (docker engine: container name stem).
    pub service: String,
    /// Task-definition family.
    pub family: String,
    /// CloudWatch log group.
    pub log_group: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Names {
    pub cluster: String,
    pub repository: String,
    /// The DynamoDB table of the ECS engine's deploy lock (one per environment, so that each
    /// environment's stack owns its table and its deploy role reaches no other lock).
    pub lock_table: String,
    pub services: IndexMap<String, ServiceNames>,
}

impl Names {
    pub fn service(&self, name: &str) -> Option<&ServiceNames> {
        self.services.get(name)
    }
}

/// `kaapi` for production, `kaapi-staging` for staging, and so on.
pub fn stem(app: &str, environment: &str) -> String {
    if environment == PRODUCTION {
        app.to_owned()
    } else {
        format!("{app}-{environment}")
    }
}

/// Every resource name of `environment` (which must exist in `config`).
pub fn names(config: &Config, environment: &str) -> Names {
    let stem = stem(&config.app, environment);
    let overrides = config
        .environments
        .get(environment)
        .map(|e| e.names.clone())
        .unwrap_or_default();
    let cluster = overrides
        .cluster
        .clone()
        .unwrap_or_else(|| format!("{stem}-cluster"));
    let repository = overrides
        .repository
        .clone()
        .unwrap_or_else(|| format!("{stem}-repo"));
    let owner = config
        .services
        .iter()
        .find(|(_, s)| s.kind() == ServiceKind::Web)
        .map(|(n, _)| n.clone());
    let services = config
        .services
        .keys()
        .map(|name| {
            let service = overrides.services.get(name).cloned().unwrap_or_else(|| {
                if owner.as_deref() == Some(name.as_str()) {
                    format!("{stem}-service")
                } else {
                    format!("{stem}-{name}-service")
                }
            });
            let family = overrides
                .families
                .get(name)
                .cloned()
                .unwrap_or_else(|| format!("{stem}-{name}"));
            let log_group = overrides
                .log_groups
                .get(name)
                .cloned()
                .unwrap_or_else(|| format!("/ecs/{cluster}/{service}"));
            (
                name.clone(),
                ServiceNames {
                    service,
                    family,
                    log_group,
                },
            )
        })
        .collect();
    Names {
        cluster,
        repository,
        lock_table: format!("{stem}-deploy-lock"),
        services,
    }
}
