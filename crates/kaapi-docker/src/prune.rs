//! `prune` on the local engine: removes the images of releases no kept release shares, with all
//! this environment's tags (`release-N`, commit tags), unless a container uses them. Tags of
//! other repositories (the same build deployed by another app or environment has the same image
//! ID) stay, and keep the image.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use bollard::query_parameters::RemoveImageOptionsBuilder;
use bollard::Docker;
use kaapi_core::engine::EngineResult;
use kaapi_core::progress::Progress;
use kaapi_core::prune::Pruned;
use kaapi_core::release::{repository_of, Release};

use crate::containers;
use crate::docker::failed;

/// Removes (or, with `dry_run`, lists) the images of the releases outside `kept`.
pub async fn images(
    docker: &Docker,
    releases: &[Release],
    kept: &BTreeSet<u64>,
    dry_run: bool,
    progress: &dyn Progress,
) -> EngineResult<Vec<Pruned>> {
    let by_image = release_images(docker, releases).await?;
    // The environment's repositories, from the tags its releases' images got (`app-env`).
    let repositories: BTreeSet<&str> = releases
        .iter()
        .flat_map(|r| &r.image.tags)
        .map(|tag| repository_of(tag))
        .collect();
    let kept_images: HashSet<&String> = by_image
        .iter()
        .filter(|(_, numbers)| numbers.iter().any(|n| kept.contains(n)))
        .map(|(id, _)| id)
        .collect();
    let in_use: HashSet<String> = containers::list(docker, &[])
        .await?
        .into_iter()
        .filter_map(|c| c.image_id)
        .collect();
    let mut removed = Vec::new();
    for (id, numbers) in &by_image {
        if kept_images.contains(id) {
            continue;
        }
        if in_use.contains(id) {
            progress.info(format!(
                "keeping image {id} of release(s) {}: a container uses it",
                list(numbers)
            ));
            continue;
        }
        let mut kind = "image";
        if !dry_run {
            let others = untag(docker, id, &repositories).await?;
            if !others.is_empty() {
                progress.info(format!(
                    "image {id}: {} still name it, so it stays",
                    others.join(", ")
                ));
                kind = "image tags";
            }
        }
        removed.push(Pruned {
            kind,
            id: id.clone(),
            releases: numbers.clone(),
        });
    }
    Ok(removed)
}

/// The local image ID of each release's image that still exists, with the releases using it.
async fn release_images(
    docker: &Docker,
    releases: &[Release],
) -> EngineResult<BTreeMap<String, Vec<u64>>> {
    let mut by_image: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for release in releases {
        match docker.inspect_image(&release.image.reference).await {
            Ok(image) => {
                if let Some(id) = image.id {
                    by_image.entry(id).or_default().push(release.number);
                }
            }
            // Already gone (pruned before, or removed by hand).
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => {
                return Err(failed(
                    &format!("inspecting image {}", release.image.reference),
                    e,
                ))
            }
        }
    }
    for numbers in by_image.values_mut() {
        numbers.sort_unstable();
    }
    Ok(by_image)
}

/// Removes the tags of image `id` in `repositories` (the engine deletes the image with its last
/// tag; an untagged image is removed by ID); returns the tags of other repositories left on it.
async fn untag(
    docker: &Docker,
    id: &str,
    repositories: &BTreeSet<&str>,
) -> EngineResult<Vec<String>> {
    let tags = docker
        .inspect_image(id)
        .await
        .map_err(|e| failed(&format!("inspecting image {id}"), e))?
        .repo_tags
        .unwrap_or_default();
    let (ours, others): (Vec<String>, Vec<String>) = tags
        .into_iter()
        .partition(|tag| repositories.contains(repository_of(tag)));
    let targets = if ours.is_empty() && others.is_empty() {
        vec![id.to_owned()]
    } else {
        ours
    };
    for target in &targets {
        // Not forced: a forced removal by ID would delete every other repository's tag too.
        let options = RemoveImageOptionsBuilder::default().force(false).build();
        docker
            .remove_image(target, Some(options), None)
            .await
            .map_err(|e| failed(&format!("removing image {target}"), e))?;
    }
    Ok(others)
}

fn list(numbers: &[u64]) -> String {
    numbers
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
