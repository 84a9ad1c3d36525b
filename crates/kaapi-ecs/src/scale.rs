//! `scale` on ECS: `UpdateService` with only `desiredCount` for each named service (no new
//! revision, no new release), then a bounded wait until each is steady at its count. The last
//! scaling event of each service is kept as a tag on its ECS service, where the next deploy and
//! `releases`/`status` read it back (tags outlive deployments; task definitions are replaced).

use std::collections::HashMap;

use aws_sdk_ecs::types::Service;
use chrono::{DateTime, SecondsFormat, Utc};
use kaapi_core::engine::{EngineError, EngineResult};
use kaapi_core::progress::Progress;
use kaapi_core::scaling::{kept_count, Kept, ScaleRequest, ScalingEvent};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::error::aws_error;
use crate::release_tags::{tag, tag_value, SCALED};
use crate::retry::retry_throttled;
use crate::session::Ctx;

/// Sets each requested desired count, records the events, and waits until ECS runs them.
pub async fn scale(
    ctx: &Ctx,
    release: u64,
    requests: &[ScaleRequest],
    author: &str,
    progress: &dyn Progress,
) -> EngineResult<Vec<ScalingEvent>> {
    let names = requests
        .iter()
        .map(|r| ctx.target.ecs_service_name(&r.service).map(str::to_owned))
        .collect::<EngineResult<Vec<_>>>()?;
    let live = ctx.describe_services(&names, progress).await?;
    // Every service must exist before any changes: no half-applied scale.
    let mut found = Vec::new();
    for (request, name) in requests.iter().zip(&names) {
        let service = find(&live, name, ctx)?;
        let arn = service.service_arn().unwrap_or_default().to_owned();
        found.push((request, name, arn, service.desired_count().max(0) as u32));
    }
    let at = Utc::now();
    let mut events = Vec::new();
    for (request, name, arn, from) in found {
        retry_throttled(&ctx.tuning, "ecs:UpdateService", progress, || {
            ctx.clients
                .ecs
                .update_service()
                .cluster(ctx.cluster())
                .service(name)
                .desired_count(request.replicas as i32)
                .send()
        })
        .await
        .map_err(|e| aws_error(&format!("ecs:UpdateService {name}"), e))?;
        let event = request.event(release, from, author, at);
        record(ctx, &arn, &event, progress).await?;
        progress.info(format!(
            "{}: desired count {from} → {}",
            request.service, request.replicas
        ));
        events.push(event);
    }
    wait_steady(ctx, &names, requests, progress).await?;
    Ok(events)
}

fn find<'a>(live: &'a [Service], name: &str, ctx: &Ctx) -> EngineResult<&'a Service> {
    live.iter()
        .find(|s| s.service_name() == Some(name))
        .ok_or_else(|| {
            EngineError::not_found(format!(
                "ECS service `{name}` does not exist in cluster {}; deploy first (or set \
                 `names.services`)",
                ctx.cluster()
            ))
        })
}

/// Tags the ECS service with its scaling event (one standalone TagResource call).
async fn record(
    ctx: &Ctx,
    arn: &str,
    event: &ScalingEvent,
    progress: &dyn Progress,
) -> EngineResult<()> {
    let value = encode(event);
    retry_throttled(&ctx.tuning, "ecs:TagResource", progress, || {
        ctx.clients
            .ecs
            .tag_resource()
            .resource_arn(arn)
            .tags(tag(SCALED, &value))
            .send()
    })
    .await
    .map_err(|e| aws_error(&format!("ecs:TagResource {arn}"), e))?;
    Ok(())
}

/// Polls until every scaled service has one deployment running exactly its new count, at most
/// `rollout_timeout`.
async fn wait_steady(
    ctx: &Ctx,
    names: &[String],
    requests: &[ScaleRequest],
    progress: &dyn Progress,
) -> EngineResult<()> {
    let started = Instant::now();
    let mut backoff = Backoff::new(ctx.tuning.poll_initial, ctx.tuning.poll_max);
    loop {
        let live = ctx.describe_services(names, progress).await?;
        let mut waiting = Vec::new();
        for (request, name) in requests.iter().zip(names) {
            let service = find(&live, name, ctx)?;
            let wanted = request.replicas as i32;
            let steady = service.deployments().len() <= 1
                && service.desired_count() == wanted
                && service.running_count() == wanted;
            if !steady {
                waiting.push(format!(
                    "{}: {}/{wanted} running",
                    request.service,
                    service.running_count()
                ));
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if started.elapsed() >= ctx.tuning.rollout_timeout {
            return Err(EngineError::failed(format!(
                "the desired counts are set, but ECS did not reach them within {} \
                 (rollout_timeout): {}; see `kaapi-deploy status`",
                humantime::format_duration(ctx.tuning.rollout_timeout),
                waiting.join(", ")
            )));
        }
        progress.info(waiting.join(", "));
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// The last scaling event of each configured service, oldest first, from the services' tags
/// (DescribeServices with tags: from the cache when a rollout or `status` has described them,
/// else one call for all).
pub async fn events(ctx: &Ctx, progress: &dyn Progress) -> EngineResult<Vec<ScalingEvent>> {
    let services: Vec<String> = ctx.target.services().map(str::to_owned).collect();
    let names = services
        .iter()
        .map(|s| ctx.target.ecs_service_name(s).map(str::to_owned))
        .collect::<EngineResult<Vec<_>>>()?;
    ctx.prefetch_services(&names, progress).await?;
    let mut events = Vec::new();
    for service in &services {
        let Some(live) = ctx.live_service(service).await? else {
            continue;
        };
        let value = live
            .tags()
            .iter()
            .find(|t| t.key() == Some(SCALED))
            .and_then(|t| t.value());
        if let Some(event) = value.and_then(|v| decode(service, v)) {
            events.push(event);
        }
    }
    events.sort_by_key(|e| e.at);
    Ok(events)
}

/// The desired count a rollout gives each service: the scaled count while `deploy.toml` still
/// says what it said at the scale, else the config's (saying so).
pub async fn desired_counts(ctx: &Ctx, progress: &dyn Progress) -> HashMap<String, i32> {
    let events = match events(ctx, progress).await {
        Ok(events) => events,
        Err(e) => {
            progress.warning(format!(
                "could not read scaling events ({e}); every service gets deploy.toml's replicas"
            ));
            Vec::new()
        }
    };
    ctx.target
        .services()
        .map(|service| {
            let config = ctx.target.resolved().replicas(service);
            let count = match kept_count(service, config, &events) {
                Kept::Unscaled => config,
                Kept::Scaled(count) => {
                    progress.info(format!(
                        "{service}: keeps its scaled count {count} (deploy.toml says {config})"
                    ));
                    count
                }
                Kept::ConfigWins(note) => {
                    progress.warning(note);
                    config
                }
            };
            (service.to_owned(), count as i32)
        })
        .collect()
}

/// `release=4 from=2 to=3 config=2 at=2026-01-02T03:04:05Z by=alice`: a tag value ECS accepts
/// (the author, free text, goes last and is cleaned).
pub fn encode(event: &ScalingEvent) -> String {
    tag_value(&format!(
        "release={} from={} to={} config={} at={} by={}",
        event.release,
        event.from,
        event.to,
        event.config_replicas,
        event.at.to_rfc3339_opts(SecondsFormat::Secs, true),
        event.author
    ))
}

/// The event [`encode`] wrote for `service`; `None` for a value it did not write.
pub fn decode(service: &str, value: &str) -> Option<ScalingEvent> {
    let (fields, author) = value.split_once(" by=")?;
    let mut read: HashMap<&str, &str> = HashMap::new();
    for field in fields.split(' ') {
        let (key, value) = field.split_once('=')?;
        read.insert(key, value);
    }
    Some(ScalingEvent {
        release: read.get("release")?.parse().ok()?,
        service: service.to_owned(),
        from: read.get("from")?.parse().ok()?,
        to: read.get("to")?.parse().ok()?,
        config_replicas: read.get("config")?.parse().ok()?,
        author: author.to_owned(),
        at: DateTime::parse_from_rfc3339(read.get("at")?)
            .ok()?
            .with_timezone(&Utc),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_reads_back_from_its_tag_value() {
        let event = ScalingEvent {
            release: 4,
            service: "worker".to_owned(),
            from: 1,
            to: 3,
            config_replicas: 1,
            author: "alice <alice@example.org>".to_owned(),
            at: DateTime::parse_from_rfc3339("2026-12-01T20:00:00Z")
                .expect("a time")
                .with_timezone(&Utc),
        };
        let value = encode(&event);
        assert_eq!(
            value,
            "release=4 from=1 to=3 config=1 at=2026-12-01T20:00:00Z by=alice _alice@example.org_"
        );
        let back = decode("worker", &value).expect("reads back");
        assert_eq!((back.release, back.from, back.to), (4, 1, 3));
        assert_eq!((back.config_replicas, back.at), (1, event.at));
        assert_eq!(back.author, "alice _alice@example.org_");
        assert_eq!(decode("worker", "set by hand"), None);
    }
}
