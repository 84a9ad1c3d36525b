//! Release history, kept in AWS itself: the task-definition revisions of the history family (the
//! web service's) carry the release's tags; the release number is the explicit `kaapi:release`
//! tag, never the revision number (revisions registered by hand or by other tools are skipped).

use std::collections::HashSet;

use aws_sdk_ecs::types::SortOrder;
use chrono::{DateTime, Utc};
use kaapi_core::engine::{EngineError, EngineResult};
use kaapi_core::progress::Progress;
use kaapi_core::release::{ImageRef, Outcome, Release, ReleaseMeta, ServiceRevision};
use kaapi_core::release_history::HistoryRead;

use crate::error::aws_error;
use crate::release_tags::{self as tags, tag};
use crate::retry::retry_throttled;
use crate::revisions::main_container_index;
use crate::session::{Ctx, Described};

/// How many revisions `releases` reads at most (each is one DescribeTaskDefinition).
const MAX_REVISIONS: usize = 50;

/// The release a history revision records, or `None` for a revision kaapi did not make.
pub fn release_of(
    described: &Described,
    environment: &str,
    history_service: &str,
) -> Option<Release> {
    let number: u64 = described.tag(tags::RELEASE)?.parse().ok()?;
    let definition = &described.definition;
    let arn = described.arn();
    let reference = main_container_index(definition, &[history_service])
        .and_then(|i| definition.container_definitions().get(i))
        .and_then(|c| c.image())
        .unwrap_or_default()
        .to_owned();
    let digest = described
        .tag(tags::IMAGE)
        .map(str::to_owned)
        .or_else(|| reference.rsplit_once('@').map(|(_, d)| d.to_owned()))
        .unwrap_or_default();
    let created_at = described
        .tag(tags::TIME)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default();
    // Other services' revisions are named `family:N`; their ARN shares the history ARN's prefix.
    let prefix = arn.rsplit_once('/').map(|(p, _)| p).unwrap_or_default();
    let mut revisions = vec![ServiceRevision {
        service: history_service.to_owned(),
        revision: arn.to_owned(),
    }];
    for t in &described.tags {
        if let (Some(key), Some(value)) = (t.key(), t.value()) {
            if let Some(service) = key.strip_prefix(tags::REVISION_PREFIX) {
                revisions.push(ServiceRevision {
                    service: service.to_owned(),
                    revision: format!("{prefix}/{value}"),
                });
            }
        }
    }
    Some(Release {
        number,
        environment: environment.to_owned(),
        image: ImageRef {
            reference,
            digest,
            tags: described
                .tag(tags::IMAGE_TAGS)
                .map(|t| t.split(' ').map(str::to_owned).collect())
                .unwrap_or_default(),
        },
        meta: ReleaseMeta {
            commit: described.tag(tags::COMMIT).unwrap_or_default().to_owned(),
            version: described.tag(tags::VERSION).map(str::to_owned),
            author: described.tag(tags::DEPLOYER).unwrap_or_default().to_owned(),
            created_at,
        },
        revisions,
        outcome: described
            .tag(tags::OUTCOME)
            .and_then(|value| value.parse().ok())
            .unwrap_or(Outcome::InProgress),
        detail: described.tag(tags::DETAIL).map(str::to_owned),
        rollback_of: described
            .tag(tags::ROLLBACK_OF)
            .and_then(|v| v.parse().ok()),
        schema_version: described.tag(tags::SCHEMA_VERSION).map(str::to_owned),
    })
}

/// ARNs of the history family's revisions, newest first (at most `limit`).
async fn revision_arns(
    ctx: &Ctx,
    limit: usize,
    progress: &dyn Progress,
) -> EngineResult<Vec<String>> {
    let Some(service) = ctx.target.history_service() else {
        return Ok(Vec::new());
    };
    let family = ctx.target.family(service)?.to_owned();
    let mut arns = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = retry_throttled(&ctx.tuning, "ecs:ListTaskDefinitions", progress, || {
            ctx.clients
                .ecs
                .list_task_definitions()
                .family_prefix(&family)
                .sort(SortOrder::Desc)
                .max_results(limit.min(100) as i32)
                .set_next_token(next.clone())
                .send()
        })
        .await
        .map_err(|e| aws_error(&format!("ecs:ListTaskDefinitions for family {family}"), e))?;
        // The prefix also matches longer families (`app-web` matches `app-web2`).
        arns.extend(
            page.task_definition_arns()
                .iter()
                .filter(|arn| {
                    arn.rsplit('/')
                        .next()
                        .and_then(|r| r.rsplit_once(':'))
                        .is_some_and(|(f, _)| f == family)
                })
                .cloned(),
        );
        next = page.next_token().map(str::to_owned);
        if next.is_none() || arns.len() >= limit {
            break;
        }
    }
    arns.truncate(limit);
    Ok(arns)
}

/// Walks releases newest first, stopping as soon as `stop` says so (keeps call counts low).
pub async fn walk(
    ctx: &Ctx,
    progress: &dyn Progress,
    mut stop: impl FnMut(&Release) -> bool,
) -> EngineResult<Vec<Release>> {
    let Some(history) = ctx.target.history_service().map(str::to_owned) else {
        return Ok(Vec::new());
    };
    let mut releases = Vec::new();
    for arn in revision_arns(ctx, MAX_REVISIONS, progress).await? {
        if let Some(release) = read(ctx, &arn, &history, progress).await? {
            let done = stop(&release);
            releases.push(release);
            if done {
                break;
            }
        }
    }
    Ok(releases)
}

/// What can have changed since a reader read `seen` (see `Engine::releases_since`): one
/// ListTaskDefinitions, then one DescribeTaskDefinition for each revision listed above the
/// newest one of `seen` (but revisions this engine already found were not releases) and for
/// each unfinished release of `seen`. A release of `seen` whose
/// revision is no longer listed (deregistered by a prune, or beyond the newest
/// [`MAX_REVISIONS`] a full read reads) is gone, as a full read would say.
pub async fn changes_since(
    ctx: &Ctx,
    seen: &[Release],
    progress: &dyn Progress,
) -> EngineResult<HistoryRead> {
    let Some(history) = ctx.target.history_service().map(str::to_owned) else {
        return Ok(HistoryRead::Full(Vec::new()));
    };
    let arn_of = |release: &Release| release.revision_of(&history).map(|r| r.revision.to_owned());
    let seen_arns: HashSet<String> = seen.iter().filter_map(arn_of).collect();
    let listed = revision_arns(ctx, MAX_REVISIONS, progress).await?;
    let mut releases = Vec::new();
    // Newest first: the first revision the reader has ends the new ones.
    for arn in listed.iter().take_while(|arn| !seen_arns.contains(*arn)) {
        // A release's tags come with its registration: a revision described before without
        // them (registered by hand or by another tool) never becomes one; no call for it.
        let not_a_release = ctx
            .cached_task_definition(arn)
            .is_some_and(|d| release_of(&d, ctx.target.environment(), &history).is_none());
        if not_a_release {
            continue;
        }
        if let Some(release) = read(ctx, arn, &history, progress).await? {
            releases.push(release);
        }
    }
    let listed: HashSet<String> = listed.into_iter().collect();
    let mut gone = Vec::new();
    for release in seen {
        let Some(arn) = arn_of(release).filter(|arn| listed.contains(arn)) else {
            gone.push(release.number);
            continue;
        };
        if release.outcome.is_final() {
            continue;
        }
        match read(ctx, &arn, &history, progress).await? {
            Some(again) => releases.push(again),
            None => gone.push(release.number),
        }
    }
    releases.sort_by_key(|r| std::cmp::Reverse(r.number));
    Ok(HistoryRead::Changes { releases, gone })
}

/// The release a history revision records, read afresh (tags change); `None` when the revision
/// does not exist or kaapi did not make it.
async fn read(
    ctx: &Ctx,
    arn: &str,
    history: &str,
    progress: &dyn Progress,
) -> EngineResult<Option<Release>> {
    let described = ctx.describe_task_definition_fresh(arn, progress).await?;
    Ok(described.and_then(|d| release_of(&d, ctx.target.environment(), history)))
}

/// The next release number: one more than the newest recorded.
pub async fn next_number(ctx: &Ctx, progress: &dyn Progress) -> EngineResult<u64> {
    let newest = walk(ctx, progress, |_| true).await?;
    Ok(newest.first().map(|r| r.number + 1).unwrap_or(1))
}

/// Tags the release's history revision with its outcome (one TagResource call).
pub async fn record(
    ctx: &Ctx,
    release: &Release,
    outcome: Outcome,
    detail: Option<&str>,
    progress: &dyn Progress,
) -> EngineResult<()> {
    let mut new_tags = vec![tag(tags::OUTCOME, outcome.as_str())];
    if let Some(detail) = detail {
        new_tags.push(tag(tags::DETAIL, detail));
    }
    tag_release(ctx, release, new_tags, progress).await
}

/// Tags the release's history revision with the schema version its code runs on (one
/// TagResource call, like the outcome).
pub async fn record_schema_version(
    ctx: &Ctx,
    release: &Release,
    version: &str,
    progress: &dyn Progress,
) -> EngineResult<()> {
    let new_tags = vec![tag(tags::SCHEMA_VERSION, version)];
    tag_release(ctx, release, new_tags, progress).await
}

async fn tag_release(
    ctx: &Ctx,
    release: &Release,
    new_tags: Vec<aws_sdk_ecs::types::Tag>,
    progress: &dyn Progress,
) -> EngineResult<()> {
    let history = ctx.target.history_service().unwrap_or_default();
    let arn = release
        .revision_of(history)
        .map(|r| r.revision.clone())
        .ok_or_else(|| {
            EngineError::not_found(format!(
                "release {} has no revision of `{history}`",
                release.number
            ))
        })?;
    retry_throttled(&ctx.tuning, "ecs:TagResource", progress, || {
        ctx.clients
            .ecs
            .tag_resource()
            .resource_arn(&arn)
            .set_tags(Some(new_tags.clone()))
            .send()
    })
    .await
    .map_err(|e| aws_error(&format!("ecs:TagResource {arn}"), e))?;
    ctx.update_cached_tags(&arn, &new_tags);
    Ok(())
}
