//! `adopt ENV`: reads an environment's live ECS services and their task definitions, and maps
//! them to `deploy.toml` entries (see `adopt_config`) so that the first deploy changes nothing
//! but the image.

use aws_sdk_ecs::types::TaskDefinition;
use kaapi_core::engine::{EngineError, EngineResult};
use kaapi_core::naming;

use crate::adopt_config::{self, Adopted, LiveService};
use crate::aws::AwsClients;
use crate::error::aws_error;

/// What to read.
#[derive(Debug, Clone)]
pub struct AdoptRequest {
    /// The resource prefix (`kaapi`).
    pub app: String,
    pub environment: String,
    /// Default: the naming convention's `{stem}-cluster`.
    pub cluster: Option<String>,
    /// ECS service names; empty means every service of the cluster.
    pub services: Vec<String>,
}

impl AdoptRequest {
    pub fn cluster(&self) -> String {
        self.cluster
            .clone()
            .unwrap_or_else(|| format!("{}-cluster", naming::stem(&self.app, &self.environment)))
    }
}

/// Reads the live services and maps them to a config for the environment.
pub async fn adopt(clients: &AwsClients, request: &AdoptRequest) -> EngineResult<Adopted> {
    let cluster = request.cluster();
    let names = if request.services.is_empty() {
        list_services(clients, &cluster).await?
    } else {
        request.services.clone()
    };
    if names.is_empty() {
        return Err(EngineError::not_found(format!(
            "cluster `{cluster}` has no service to adopt; name them with --service NAME"
        )));
    }
    let mut live = Vec::new();
    for chunk in names.chunks(10) {
        let out = clients
            .ecs
            .describe_services()
            .cluster(&cluster)
            .set_services(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| aws_error(&format!("ecs:DescribeServices in cluster {cluster}"), e))?;
        if let Some(failure) = out.failures().first() {
            return Err(EngineError::not_found(format!(
                "service {} in cluster `{cluster}`: {}",
                failure.arn().unwrap_or_default(),
                failure.reason().unwrap_or_default()
            )));
        }
        for service in out.services() {
            let name = service.service_name().unwrap_or_default().to_owned();
            let arn = service.task_definition().ok_or_else(|| {
                EngineError::failed(format!("service `{name}` runs no task definition"))
            })?;
            live.push(LiveService {
                ecs_name: name,
                desired_count: service.desired_count(),
                definition: describe_task_definition(clients, arn).await?,
            });
        }
    }
    adopt_config::adopted(request, &cluster, &clients.region, live)
}

async fn list_services(clients: &AwsClients, cluster: &str) -> EngineResult<Vec<String>> {
    let mut names = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let out = clients
            .ecs
            .list_services()
            .cluster(cluster)
            .set_next_token(next.take())
            .send()
            .await
            .map_err(|e| aws_error(&format!("ecs:ListServices in cluster {cluster}"), e))?;
        names.extend(
            out.service_arns()
                .iter()
                .map(|arn| arn.rsplit('/').next().unwrap_or(arn).to_owned()),
        );
        next = out.next_token().map(str::to_owned);
        if next.is_none() {
            break;
        }
    }
    names.sort();
    Ok(names)
}

async fn describe_task_definition(clients: &AwsClients, arn: &str) -> EngineResult<TaskDefinition> {
    clients
        .ecs
        .describe_task_definition()
        .task_definition(arn)
        .send()
        .await
        .map_err(|e| aws_error(&format!("ecs:DescribeTaskDefinition {arn}"), e))?
        .task_definition()
        .cloned()
        .ok_or_else(|| EngineError::failed(format!("ecs:DescribeTaskDefinition {arn}: empty")))
}
