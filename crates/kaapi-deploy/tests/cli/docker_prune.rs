//! `prune` removes the images of releases neither the current release nor the last N need, with
//! all their tags in the environment's repository (another repository's tag keeps the image), and
//! leaves the current one serving; `--dry-run` only lists them.

use std::process::Command;

use crate::docker_support::Project;

/// Whether the Docker Engine still has the image `reference`.
fn image_exists(reference: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", reference])
        .output()
        .expect("run docker")
        .status
        .success()
}

/// The image reference of each release, by number.
fn release_images(project: &Project) -> Vec<(u64, String)> {
    let mut images: Vec<(u64, String)> = project
        .releases()
        .iter()
        .map(|r| {
            (
                r["number"].as_u64().expect("release number"),
                r["image"]["reference"]
                    .as_str()
                    .expect("image reference")
                    .to_owned(),
            )
        })
        .collect();
    images.sort();
    images
}

#[test]
fn prune_keeps_the_current_and_previous_release_images() {
    let project = Project::new("prune");
    // Versions of this project alone: the same build in a parallel test has the same image ID,
    // and prune (rightly) never removes an image some container runs.
    let versions: Vec<String> = ["1.0.0", "2.0.0", "3.0.0"]
        .iter()
        .map(|v| format!("{v}-{}", project.app))
        .collect();
    for version in &versions {
        project.configure(version, "");
        project.deploy();
    }
    let images = release_images(&project);
    assert_eq!(images.len(), 3, "{images:?}");
    assert!(images.iter().all(|(_, i)| image_exists(i)), "{images:?}");
    let first = &images[0].1;

    let listed = project.ok(&["prune", "local", "--keep", "1", "--dry-run", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&listed).expect("report JSON");
    assert_eq!(
        report["kept_releases"],
        serde_json::json!([3, 2]),
        "{report:#}"
    );
    let removed = report["removed"].as_array().expect("removed");
    assert_eq!(removed.len(), 1, "{report:#}");
    assert_eq!(removed[0]["releases"], serde_json::json!([1]), "{report:#}");
    assert!(image_exists(first), "a dry run removes nothing");

    // The same image under another repository (another app or environment deployed the same
    // build): prune removes this environment's tags only, and the image stays for the other.
    let other = format!("other-{}:kept", project.app);
    crate::docker_support::docker(&["tag", first, &other]);
    let text = project.ok(&["prune", "local", "--keep", "1"]);
    let other_kept = image_exists(&other);
    crate::docker_support::docker(&["rmi", &other]);
    assert!(text.contains("removed image tags sha256:"), "{text}");
    assert!(other_kept, "another repository's tag was removed: {text}");
    assert!(
        !image_exists(first),
        "the first release's image is gone with the other tag"
    );
    assert!(
        image_exists(&images[1].1),
        "the previous release's image stays"
    );
    assert!(
        image_exists(&images[2].1),
        "the current release's image stays"
    );
    let tags = crate::docker_support::docker(&[
        "image",
        "ls",
        "--format",
        "{{.Tag}}",
        &format!("{}-local", project.app),
    ]);
    assert!(!tags.lines().any(|t| t == "release-1"), "{tags}");
    assert!(tags.lines().any(|t| t == "release-2"), "{tags}");
    assert_eq!(project.serving_version(), Some(versions[2].clone()));

    let again = project.ok(&["prune", "local", "--keep", "1"]);
    assert!(again.contains("nothing to remove"), "{again}");

    // Rolling back to the kept previous release still works.
    project.ok(&["rollback", "local"]);
    assert_eq!(project.serving_version(), Some(versions[1].clone()));
}

#[test]
fn deploys_prune_automatically_beyond_the_configured_retention() {
    let mut project = Project::new("retain");
    project.environment_extra = "retention = { keep = 1 }".to_owned();
    let versions: Vec<String> = ["1.0.0", "2.0.0", "3.0.0"]
        .iter()
        .map(|v| format!("{v}-{}", project.app))
        .collect();
    let mut outputs = Vec::new();
    for version in &versions {
        project.configure(version, "");
        outputs.push(project.deploy());
    }
    // Release 2: releases 2 and 1 are kept, so nothing goes.
    assert!(outputs[1].contains("nothing to remove"), "{}", outputs[1]);
    // Release 3: release 1 is beyond keep = 1, and the deploy says what it removed.
    let third = &outputs[2];
    assert!(third.contains("keeping release(s) 3, 2"), "{third}");
    assert!(
        third.contains("removed image sha256:") && third.contains("(release 1)"),
        "{third}"
    );
    let images = release_images(&project);
    assert_eq!(images.len(), 3, "{images:?}");
    assert!(!image_exists(&images[0].1), "release 1's image is pruned");
    assert!(
        image_exists(&images[1].1),
        "the previous release's image stays"
    );
    assert!(
        image_exists(&images[2].1),
        "the current release's image stays"
    );
    assert_eq!(project.serving_version(), Some(versions[2].clone()));

    // A rollback prunes too: release 4 (a copy of 2) and 3 are kept, which need both images.
    let rolled = project.ok(&["rollback", "local"]);
    assert!(rolled.contains("keeping release(s) 4, 3"), "{rolled}");
    assert!(rolled.contains("nothing to remove"), "{rolled}");
    assert_eq!(project.serving_version(), Some(versions[1].clone()));
    assert!(image_exists(&images[1].1) && image_exists(&images[2].1));
}
