//! What every step shares: the clients, the target environment, timings, and caches of what
//! AWS already told us (task-definition revisions are immutable, so describing one twice in a
//! deploy is a wasted call).

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_ecs::types::{
    DesiredStatus, Service, ServiceField, Tag, Task, TaskDefinition, TaskDefinitionField,
};
use kaapi_core::engine::{EngineError, EngineResult};
use kaapi_core::progress::{Progress, Silent};

use crate::aws::AwsClients;
use crate::error::{aws_error, error_code};
use crate::retry::retry_throttled;
use crate::target::Target;
use crate::tuning::Tuning;

/// A task-definition revision with its tags.
#[derive(Debug, Clone)]
pub struct Described {
    pub definition: TaskDefinition,
    pub tags: Vec<Tag>,
}

impl Described {
    pub fn arn(&self) -> &str {
        self.definition.task_definition_arn().unwrap_or_default()
    }

    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
    }
}

pub struct Ctx {
    pub clients: AwsClients,
    pub target: Target,
    pub tuning: Tuning,
    task_definitions: Mutex<HashMap<String, Described>>,
    services: Mutex<HashMap<String, Service>>,
}

impl Ctx {
    pub fn new(clients: AwsClients, target: Target, tuning: Tuning) -> Self {
        Self {
            clients,
            target,
            tuning,
            task_definitions: Mutex::new(HashMap::new()),
            services: Mutex::new(HashMap::new()),
        }
    }

    pub fn cluster(&self) -> &str {
        &self.target.names().cluster
    }

    /// The tasks of ECS service `ecs_name` in `status` (up to 100, what one DescribeTasks takes),
    /// described. Rollouts, failure diagnosis and `exec` all read tasks this one way.
    pub async fn service_tasks(
        &self,
        ecs_name: &str,
        status: DesiredStatus,
    ) -> EngineResult<Vec<Task>> {
        let listed = self
            .clients
            .ecs
            .list_tasks()
            .cluster(self.cluster())
            .service_name(ecs_name)
            .desired_status(status)
            .send()
            .await
            .map_err(|e| aws_error(&format!("listing the tasks of {ecs_name}"), e))?;
        let arns: Vec<String> = listed.task_arns().iter().take(100).cloned().collect();
        if arns.is_empty() {
            return Ok(Vec::new());
        }
        let described = self
            .clients
            .ecs
            .describe_tasks()
            .cluster(self.cluster())
            .set_tasks(Some(arns))
            .send()
            .await
            .map_err(|e| aws_error(&format!("describing the tasks of {ecs_name}"), e))?;
        Ok(described.tasks().to_vec())
    }

    pub fn region(&self) -> &str {
        self.target
            .env()
            .region
            .as_deref()
            .unwrap_or(&self.clients.region)
    }

    /// Describes a revision (ARN, `family:N`, or a family for its latest ACTIVE revision), with
    /// its tags; `None` when there is no such task definition.
    pub async fn describe_task_definition(
        &self,
        reference: &str,
        progress: &dyn Progress,
    ) -> EngineResult<Option<Described>> {
        if let Some(hit) = self.cached_task_definition(reference) {
            return Ok(Some(hit));
        }
        self.describe_task_definition_fresh(reference, progress)
            .await
    }

    /// Like [`Self::describe_task_definition`] but always asks AWS: tags (a release's outcome)
    /// can change under us, e.g. by another deploy.
    pub async fn describe_task_definition_fresh(
        &self,
        reference: &str,
        progress: &dyn Progress,
    ) -> EngineResult<Option<Described>> {
        let result = retry_throttled(&self.tuning, "ecs:DescribeTaskDefinition", progress, || {
            self.clients
                .ecs
                .describe_task_definition()
                .task_definition(reference)
                .include(TaskDefinitionField::Tags)
                .send()
        })
        .await;
        let out = match result {
            Ok(out) => out,
            // ECS answers ClientException for a family or revision that does not exist.
            Err(e) if error_code(&e) == Some("ClientException") => return Ok(None),
            Err(e) => {
                return Err(aws_error(
                    &format!("ecs:DescribeTaskDefinition {reference}"),
                    e,
                ))
            }
        };
        let Some(definition) = out.task_definition().cloned() else {
            return Ok(None);
        };
        let described = Described {
            definition,
            tags: out.tags().to_vec(),
        };
        self.remember_task_definition(&described);
        Ok(Some(described))
    }

    pub fn cached_task_definition(&self, reference: &str) -> Option<Described> {
        // Only full ARNs are cache keys: a bare family means "latest", which can change.
        if !reference.starts_with("arn:") {
            return None;
        }
        self.task_definitions
            .lock()
            .ok()
            .and_then(|cache| cache.get(reference).cloned())
    }

    pub fn remember_task_definition(&self, described: &Described) {
        if let Ok(mut cache) = self.task_definitions.lock() {
            cache.insert(described.arn().to_owned(), described.clone());
        }
    }

    /// Updates the cached tags of a revision after we tagged it.
    pub fn update_cached_tags(&self, arn: &str, tags: &[Tag]) {
        if let Ok(mut cache) = self.task_definitions.lock() {
            if let Some(entry) = cache.get_mut(arn) {
                for tag in tags {
                    entry.tags.retain(|t| t.key() != tag.key());
                    entry.tags.push(tag.clone());
                }
            }
        }
    }

    /// Describes the ECS services (by ECS name) in one call per ten, refreshing the cache. With
    /// their tags (`include: TAGS`), so the scaling events a service carries come with it
    /// instead of one ListTagsForResource per service.
    pub async fn describe_services(
        &self,
        ecs_names: &[String],
        progress: &dyn Progress,
    ) -> EngineResult<Vec<Service>> {
        let mut found = Vec::new();
        for chunk in ecs_names.chunks(10) {
            let out = retry_throttled(&self.tuning, "ecs:DescribeServices", progress, || {
                self.clients
                    .ecs
                    .describe_services()
                    .cluster(self.cluster())
                    .set_services(Some(chunk.to_vec()))
                    .include(ServiceField::Tags)
                    .send()
            })
            .await
            .map_err(|e| {
                aws_error(
                    &format!("ecs:DescribeServices in cluster {}", self.cluster()),
                    e,
                )
            })?;
            for failure in out.failures() {
                if failure.reason() != Some("MISSING") {
                    return Err(EngineError::failed(format!(
                        "ecs:DescribeServices: {} {}",
                        failure.arn().unwrap_or_default(),
                        failure.reason().unwrap_or_default()
                    )));
                }
            }
            found.extend(
                out.services()
                    .iter()
                    .filter(|s| s.status() != Some("INACTIVE"))
                    .cloned(),
            );
        }
        if let Ok(mut cache) = self.services.lock() {
            for service in &found {
                if let Some(name) = service.service_name() {
                    cache.insert(name.to_owned(), service.clone());
                }
            }
        }
        Ok(found)
    }

    /// Fills the cache with the named ECS services not in it yet, in one DescribeServices call
    /// per ten (instead of one call per service later).
    pub async fn prefetch_services(
        &self,
        ecs_names: &[String],
        progress: &dyn Progress,
    ) -> EngineResult<()> {
        let missing: Vec<String> = match self.services.lock() {
            Ok(cache) => ecs_names
                .iter()
                .filter(|n| !cache.contains_key(n.as_str()))
                .cloned()
                .collect(),
            Err(_) => ecs_names.to_vec(),
        };
        if !missing.is_empty() {
            self.describe_services(&missing, progress).await?;
        }
        Ok(())
    }

    /// The live ECS service of a config service, from the cache or one DescribeServices call.
    pub async fn live_service(&self, service: &str) -> EngineResult<Option<Service>> {
        let name = self.target.ecs_service_name(service)?.to_owned();
        if let Some(hit) = self
            .services
            .lock()
            .ok()
            .and_then(|cache| cache.get(&name).cloned())
        {
            return Ok(Some(hit));
        }
        let found = self
            .describe_services(std::slice::from_ref(&name), &Silent)
            .await?;
        Ok(found
            .into_iter()
            .find(|s| s.service_name() == Some(name.as_str())))
    }
}
