//! `prune` on ECS: deregisters the task-definition revisions and deletes the ECR images that no
//! kept release needs. A revision an ECS service runs or deploys is never deregistered, whatever
//! release it belongs to (AWS would allow it; a later scale-out could then not start tasks of it
//! from the console, and nothing should change what serves).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use aws_sdk_ecr::types::ImageIdentifier;
use kaapi_core::engine::{EngineError, EngineResult};
use kaapi_core::progress::Progress;
use kaapi_core::prune::Pruned;
use kaapi_core::release::Release;

use crate::error::aws_error;
use crate::session::Ctx;

/// ECR's BatchDeleteImage takes at most this many image IDs per call.
pub const ECR_BATCH: usize = 100;

pub async fn run(
    ctx: &Ctx,
    releases: &[Release],
    kept: &BTreeSet<u64>,
    dry_run: bool,
    progress: &dyn Progress,
) -> EngineResult<Vec<Pruned>> {
    let live = live_revisions(ctx, progress).await?;
    let mut removed = Vec::new();
    for (arn, numbers) in deregistrable(releases, kept, &live) {
        if !dry_run {
            ctx.clients
                .ecs
                .deregister_task_definition()
                .task_definition(&arn)
                .send()
                .await
                .map_err(|e| aws_error(&format!("ecs:DeregisterTaskDefinition {arn}"), e))?;
        }
        removed.push(Pruned {
            kind: "task definition",
            id: arn,
            releases: numbers,
        });
    }
    if ctx.target.env().registry.is_some() {
        progress
            .info("the environment's registry is not ECR: its images are left alone".to_owned());
        return Ok(removed);
    }
    let mut live_images = HashSet::new();
    for arn in &live {
        if let Some(described) = ctx.describe_task_definition(arn, progress).await? {
            live_images.extend(
                described
                    .definition
                    .container_definitions()
                    .iter()
                    .filter_map(|c| c.image())
                    .filter_map(|i| i.rsplit_once('@').map(|(_, d)| d.to_owned())),
            );
        }
    }
    let images = deletable_images(releases, kept, &live_images);
    let repository = ctx.target.names().repository.clone();
    let digests: Vec<String> = images.keys().cloned().collect();
    for batch in batches(&digests) {
        if dry_run {
            break;
        }
        let out = ctx
            .clients
            .ecr
            .batch_delete_image()
            .repository_name(&repository)
            .set_image_ids(Some(batch))
            .send()
            .await
            .map_err(|e| aws_error(&format!("ecr:BatchDeleteImage in {repository}"), e))?;
        for failure in out.failures() {
            // An image already gone is what we wanted.
            if failure.failure_code().map(|c| c.as_str()) != Some("ImageNotFound") {
                return Err(EngineError::failed(format!(
                    "ecr:BatchDeleteImage in {repository}: {} {}",
                    failure
                        .image_id()
                        .and_then(|i| i.image_digest())
                        .unwrap_or_default(),
                    failure.failure_reason().unwrap_or_default()
                )));
            }
        }
    }
    removed.extend(images.into_iter().map(|(digest, numbers)| Pruned {
        kind: "registry image",
        id: format!("{repository}@{digest}"),
        releases: numbers,
    }));
    Ok(removed)
}

/// Every revision an ECS service of the environment runs or is deploying.
async fn live_revisions(ctx: &Ctx, progress: &dyn Progress) -> EngineResult<HashSet<String>> {
    let names: Vec<String> = ctx
        .target
        .services()
        .filter_map(|s| ctx.target.ecs_service_name(s).ok().map(str::to_owned))
        .collect();
    let services = ctx.describe_services(&names, progress).await?;
    Ok(services
        .iter()
        .flat_map(|s| {
            s.task_definition()
                .into_iter()
                .chain(s.deployments().iter().filter_map(|d| d.task_definition()))
        })
        .map(str::to_owned)
        .collect())
}

/// The revisions of releases outside `kept` that no kept release shares and no service uses,
/// with the releases that used them.
pub fn deregistrable(
    releases: &[Release],
    kept: &BTreeSet<u64>,
    live: &HashSet<String>,
) -> BTreeMap<String, Vec<u64>> {
    let needed: HashSet<&str> = releases
        .iter()
        .filter(|r| kept.contains(&r.number))
        .flat_map(|r| r.revisions.iter().map(|v| v.revision.as_str()))
        .collect();
    let mut found: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for release in releases.iter().filter(|r| !kept.contains(&r.number)) {
        for revision in &release.revisions {
            let arn = revision.revision.as_str();
            if !needed.contains(arn) && !live.contains(arn) {
                found
                    .entry(arn.to_owned())
                    .or_default()
                    .push(release.number);
            }
        }
    }
    found
}

/// The image digests of releases outside `kept` that no kept release and no live revision uses.
pub fn deletable_images(
    releases: &[Release],
    kept: &BTreeSet<u64>,
    live: &HashSet<String>,
) -> BTreeMap<String, Vec<u64>> {
    let needed: HashSet<&str> = releases
        .iter()
        .filter(|r| kept.contains(&r.number))
        .map(|r| r.image.digest.as_str())
        .collect();
    let mut found: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for release in releases.iter().filter(|r| !kept.contains(&r.number)) {
        let digest = release.image.digest.as_str();
        if digest.starts_with("sha256:") && !needed.contains(digest) && !live.contains(digest) {
            found
                .entry(digest.to_owned())
                .or_default()
                .push(release.number);
        }
    }
    found
}

/// The digests as BatchDeleteImage image IDs, at most [`ECR_BATCH`] per call.
pub fn batches(digests: &[String]) -> Vec<Vec<ImageIdentifier>> {
    digests
        .chunks(ECR_BATCH)
        .map(|chunk| {
            chunk
                .iter()
                .map(|d| ImageIdentifier::builder().image_digest(d).build())
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kaapi_core::release::{ImageRef, Outcome, ReleaseMeta, ServiceRevision};

    fn release(number: u64, digest: &str, revisions: &[&str]) -> Release {
        Release {
            number,
            environment: "staging".to_owned(),
            image: ImageRef {
                reference: format!("repo@{digest}"),
                digest: digest.to_owned(),
                tags: Vec::new(),
            },
            meta: ReleaseMeta {
                commit: "abc".to_owned(),
                version: None,
                author: "test".to_owned(),
                created_at: chrono::Utc::now(),
            },
            revisions: revisions
                .iter()
                .map(|r| ServiceRevision {
                    service: "backend".to_owned(),
                    revision: (*r).to_owned(),
                })
                .collect(),
            outcome: Outcome::Succeeded,
            detail: None,
            rollback_of: None,
            schema_version: None,
        }
    }

    #[test]
    fn a_revision_a_service_uses_is_never_deregistered() {
        let releases = vec![
            release(1, "sha256:a", &["web:1", "worker:1"]),
            release(2, "sha256:b", &["web:2", "worker:1"]),
            release(3, "sha256:c", &["web:3", "worker:2"]),
        ];
        let kept = BTreeSet::from([3]);
        // The worker service still runs worker:1 (e.g. its rollout to worker:2 never finished).
        let live = HashSet::from(["web:3".to_owned(), "worker:1".to_owned()]);
        let found = deregistrable(&releases, &kept, &live);
        assert_eq!(
            found,
            BTreeMap::from([("web:1".to_owned(), vec![1]), ("web:2".to_owned(), vec![2]),])
        );
    }

    #[test]
    fn a_revision_or_image_a_kept_release_shares_stays() {
        let releases = vec![
            release(1, "sha256:a", &["web:1"]),
            release(2, "sha256:a", &["web:1"]),
        ];
        let kept = BTreeSet::from([2]);
        assert!(deregistrable(&releases, &kept, &HashSet::new()).is_empty());
        assert!(deletable_images(&releases, &kept, &HashSet::new()).is_empty());
    }

    #[test]
    fn images_are_deleted_at_most_a_hundred_per_call() {
        let digests: Vec<String> = (0..250).map(|i| format!("sha256:{i:064x}")).collect();
        let sizes: Vec<usize> = batches(&digests).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![100, 100, 50]);
    }

    #[test]
    fn a_live_image_stays() {
        let releases = vec![
            release(1, "sha256:a", &["web:1"]),
            release(2, "sha256:b", &["web:2"]),
            release(3, "sha256:c", &["web:3"]),
        ];
        let kept = BTreeSet::from([3]);
        let live = HashSet::from(["sha256:a".to_owned()]);
        assert_eq!(
            deletable_images(&releases, &kept, &live),
            BTreeMap::from([("sha256:b".to_owned(), vec![2])])
        );
    }
}
