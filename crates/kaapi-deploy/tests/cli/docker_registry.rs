//! Pushing to a registry: a real OCI registry (Debian's docker-registry) on 127.0.0.1; the
//! release then refers to its image by the registry's digest.

use std::process::Command;

use crate::docker_support::Project;

#[test]
fn a_release_pushed_to_a_registry_runs_by_the_registry_digest() {
    let registry = kaapi_testkit::registry();
    let mut project = Project::new("reg");
    project.environment_extra = format!("registry = \"127.0.0.1:{}\"", registry.port);
    project.configure("1.0.0", "");
    project.deploy();
    assert_eq!(project.serving_version().as_deref(), Some("1.0.0"));

    let releases = project.releases();
    let image = &releases[0]["image"];
    let reference = image["reference"].as_str().expect("reference");
    let digest = image["digest"].as_str().expect("digest");
    let repository = format!("127.0.0.1:{}/{}-local-repo", registry.port, project.app);
    assert_eq!(reference, format!("{repository}@{digest}"));
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );

    // The registry itself serves that manifest under that digest.
    let output = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Accept: application/vnd.docker.distribution.manifest.v2+json",
            &format!(
                "http://127.0.0.1:{}/v2/{}-local-repo/manifests/{digest}",
                registry.port, project.app
            ),
        ])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "200");
}
