//! `prune` on the local engine: removes the images of releases no kept release shares, with all
//! their tags (`release-N`, commit tags), unless a container uses them.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use bollard::query_parameters::RemoveImageOptionsBuilder;
use bollard::Docker;
use kaapi_core::engine::EngineResult;
use kaapi_core::progress::Progress;
use kaapi_core::prune::Pruned;
use kaapi_core::release::Release;

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
        if !dry_run {
            // Forced so that every tag goes (a commit tag would keep the image alive); no
            // container uses it, checked above.
            let options = RemoveImageOptionsBuilder::default().force(true).build();
            docker
                .remove_image(id, Some(options), None)
                .await
                .map_err(|e| failed(&format!("removing image {id}"), e))?;
        }
        removed.push(Pruned {
            kind: "image",
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

fn list(numbers: &[u64]) -> String {
    numbers
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
