//! `status`: per service, desired/running/healthy tasks, deployments and rollout state, task
//! health, recent events (DescribeServices, ListTasks, DescribeTasks), CPU and memory
//! utilisation from CloudWatch, and request count and 5xx from the load balancer when the
//! service is attached to a target group (one GetMetricData call for everything).

use std::collections::HashMap;

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use aws_sdk_ecs::types::Service;
use chrono::{DateTime, Utc};
use kaapi_core::engine::{EngineResult, ReplicaStatus, ServiceStatus, StatusEvent, StatusReport};
use kaapi_core::progress::Progress;

use crate::error::aws_error;
use crate::release_tags as tags;
use crate::retry::retry_throttled;
use crate::revisions::short_revision;
use crate::session::Ctx;

const EVENTS_SHOWN: usize = 5;

fn to_chrono(t: Option<&aws_sdk_ecs::primitives::DateTime>) -> DateTime<Utc> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
        .unwrap_or_default()
}

async fn release_number(ctx: &Ctx, arn: Option<&str>, progress: &dyn Progress) -> Option<u64> {
    let arn = arn?;
    ctx.describe_task_definition(arn, progress)
        .await
        .ok()
        .flatten()
        .and_then(|d| d.tag(tags::RELEASE).and_then(|n| n.parse().ok()))
}

/// `targetgroup/name/id` of a target-group ARN (the CloudWatch dimension value).
pub fn target_group_dimension(arn: &str) -> Option<&str> {
    arn.find("targetgroup/").map(|i| &arn[i..])
}

/// The average of an AWS/ECS service metric per `period` seconds.
pub(crate) fn ecs_metric(
    id: String,
    cluster: &str,
    service: &str,
    name: &str,
    period: i32,
) -> MetricDataQuery {
    let metric = Metric::builder()
        .namespace("AWS/ECS")
        .metric_name(name)
        .dimensions(
            Dimension::builder()
                .name("ClusterName")
                .value(cluster)
                .build(),
        )
        .dimensions(
            Dimension::builder()
                .name("ServiceName")
                .value(service)
                .build(),
        )
        .build();
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(
            MetricStat::builder()
                .metric(metric)
                .period(period)
                .stat("Average")
                .build(),
        )
        .build()
}

fn alb_metric(id: String, target_group: &str, name: &str) -> MetricDataQuery {
    MetricDataQuery::builder()
        .id(id)
        .expression(format!(
            "SUM(SEARCH('{{AWS/ApplicationELB,LoadBalancer,TargetGroup}} MetricName=\"{name}\" TargetGroup=\"{target_group}\"', 'Sum', 300))"
        ))
        .build()
}

/// Latest value of each query, by id.
async fn metrics(
    ctx: &Ctx,
    queries: Vec<MetricDataQuery>,
    progress: &dyn Progress,
) -> EngineResult<HashMap<String, f64>> {
    if queries.is_empty() {
        return Ok(HashMap::new());
    }
    let window = std::time::Duration::from_secs(15 * 60);
    let results = crate::metrics::get_metric_data(ctx, queries, window, progress).await?;
    Ok(results
        .iter()
        .filter_map(|r| Some((r.id()?.to_owned(), *r.values().first()?)))
        .collect())
}

fn rollout_summary(service: &Service) -> String {
    service
        .deployments()
        .iter()
        .map(|d| {
            format!(
                "{} {} {} ({}/{} running)",
                d.status().unwrap_or("?"),
                d.rollout_state().map(|s| s.as_str()).unwrap_or("-"),
                short_revision(d.task_definition().unwrap_or_default()),
                d.running_count(),
                d.desired_count()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub async fn status(ctx: &Ctx, progress: &dyn Progress) -> EngineResult<StatusReport> {
    let target = &ctx.target;
    let services: Vec<String> = target.services().map(str::to_owned).collect();
    let ecs_names = services
        .iter()
        .map(|s| target.ecs_service_name(s).map(str::to_owned))
        .collect::<EngineResult<Vec<_>>>()?;
    let live = ctx.describe_services(&ecs_names, progress).await?;

    let mut queries = Vec::new();
    for (i, name) in ecs_names.iter().enumerate() {
        queries.push(ecs_metric(
            format!("cpu{i}"),
            ctx.cluster(),
            name,
            "CPUUtilization",
            300,
        ));
        queries.push(ecs_metric(
            format!("mem{i}"),
            ctx.cluster(),
            name,
            "MemoryUtilization",
            300,
        ));
        let target_group = live
            .iter()
            .find(|s| s.service_name() == Some(name))
            .and_then(|s| {
                s.load_balancers()
                    .iter()
                    .find_map(|lb| lb.target_group_arn())
            })
            .and_then(target_group_dimension);
        if let Some(tg) = target_group {
            queries.push(alb_metric(format!("req{i}"), tg, "RequestCount"));
            queries.push(alb_metric(
                format!("err{i}"),
                tg,
                "HTTPCode_Target_5XX_Count",
            ));
        }
    }
    let values = match metrics(ctx, queries, progress).await {
        Ok(v) => v,
        Err(e) => {
            progress.warning(format!("metrics unavailable: {e}"));
            HashMap::new()
        }
    };

    let mut report = Vec::new();
    for (i, (service, ecs_name)) in services.iter().zip(&ecs_names).enumerate() {
        let Some(svc) = live
            .iter()
            .find(|s| s.service_name() == Some(ecs_name.as_str()))
        else {
            report.push(ServiceStatus {
                service: service.clone(),
                desired: 0,
                running: 0,
                healthy: 0,
                current_release: None,
                previous_release: None,
                rollout: Some(format!("ECS service {ecs_name} does not exist")),
                replicas: Vec::new(),
                events: Vec::new(),
                requests: None,
                errors_5xx: None,
            });
            continue;
        };
        let replicas = replicas(ctx, ecs_name, progress).await?;
        let mut replica_status = Vec::new();
        for (task, definition) in replicas {
            let mut task = task;
            task.release = release_number(ctx, definition.as_deref(), progress).await;
            replica_status.push(task);
        }
        let primary = svc
            .deployments()
            .iter()
            .find(|d| d.status() == Some("PRIMARY"));
        let active = svc
            .deployments()
            .iter()
            .find(|d| d.status() == Some("ACTIVE"));
        let current_release =
            release_number(ctx, primary.and_then(|d| d.task_definition()), progress).await;
        let previous_release =
            release_number(ctx, active.and_then(|d| d.task_definition()), progress).await;
        let mut rollout = rollout_summary(svc);
        if let (Some(cpu), Some(mem)) = (
            values.get(&format!("cpu{i}")),
            values.get(&format!("mem{i}")),
        ) {
            rollout.push_str(&format!(
                "; CPU {cpu:.1}%, memory {mem:.1}% (5-min average)"
            ));
        }
        report.push(ServiceStatus {
            service: service.clone(),
            desired: svc.desired_count().max(0) as u32,
            running: svc.running_count().max(0) as u32,
            healthy: replica_status
                .iter()
                .filter(|r| r.healthy == Some(true))
                .count() as u32,
            current_release,
            previous_release,
            rollout: Some(rollout),
            replicas: replica_status,
            events: svc
                .events()
                .iter()
                .take(EVENTS_SHOWN)
                .map(|e| StatusEvent {
                    at: to_chrono(e.created_at()),
                    message: e.message().unwrap_or_default().to_owned(),
                })
                .collect(),
            requests: values.get(&format!("req{i}")).map(|v| *v as u64),
            errors_5xx: values.get(&format!("err{i}")).map(|v| *v as u64),
        });
    }
    Ok(StatusReport {
        environment: target.environment().to_owned(),
        engine: "ecs".to_owned(),
        url: target.env().url.clone(),
        services: report,
    })
}

/// The service's tasks (ListTasks + DescribeTasks), each with its task-definition ARN.
async fn replicas(
    ctx: &Ctx,
    ecs_name: &str,
    progress: &dyn Progress,
) -> EngineResult<Vec<(ReplicaStatus, Option<String>)>> {
    let list = retry_throttled(&ctx.tuning, "ecs:ListTasks", progress, || {
        ctx.clients
            .ecs
            .list_tasks()
            .cluster(ctx.cluster())
            .service_name(ecs_name)
            .send()
    })
    .await
    .map_err(|e| aws_error(&format!("ecs:ListTasks {ecs_name}"), e))?;
    let arns = list.task_arns().to_vec();
    if arns.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for chunk in arns.chunks(100) {
        let described = retry_throttled(&ctx.tuning, "ecs:DescribeTasks", progress, || {
            ctx.clients
                .ecs
                .describe_tasks()
                .cluster(ctx.cluster())
                .set_tasks(Some(chunk.to_vec()))
                .send()
        })
        .await
        .map_err(|e| aws_error("ecs:DescribeTasks", e))?;
        for task in described.tasks() {
            let arn = task.task_arn().unwrap_or_default();
            let id = arn.rsplit('/').next().unwrap_or(arn).to_owned();
            let healthy = match task.health_status().map(|h| h.as_str()) {
                Some("HEALTHY") => Some(true),
                Some("UNHEALTHY") => Some(false),
                _ => None,
            };
            out.push((
                ReplicaStatus {
                    id,
                    state: task.last_status().unwrap_or("UNKNOWN").to_owned(),
                    healthy,
                    release: None,
                    cpu_percent: None,
                    memory_bytes: None,
                },
                task.task_definition_arn().map(str::to_owned),
            ));
        }
    }
    Ok(out)
}
