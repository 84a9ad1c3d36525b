//! `down` stops and removes what a docker environment runs (replicas, ingress, accessories,
//! network, the agent) and keeps the history, so the next deploy numbers on; `--volumes` also
//! removes the data. Against the real Docker Engine.

use std::path::Path;

use crate::docker_support::{agent_pid, docker, ingress_pid, Project, LABEL_APP, LABEL_ROLE};

fn volumes(project: &Project) -> Vec<String> {
    let mut names: Vec<String> = docker(&["volume", "ls", "-q"])
        .lines()
        .filter(|v| v.starts_with(&format!("{}-local-", project.app)))
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

fn networks(project: &Project) -> Vec<String> {
    docker(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("label={LABEL_APP}={}", project.app),
    ])
    .lines()
    .map(str::to_owned)
    .collect()
}

fn configure(project: &Project, version: &str) {
    project.configure(&format!("{version}-{}", project.app), "");
    let text = std::fs::read_to_string(&project.config).expect("read deploy.toml");
    std::fs::write(
        &project.config,
        format!("{text}\n[accessories.cache]\nimage = \"redis:7\"\nvolumes = [\"cache:/cache\"]\n"),
    )
    .expect("write deploy.toml");
}

fn agent_runs(state_dir: &Path) -> bool {
    agent_pid(state_dir).is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

#[test]
fn down_removes_what_the_environment_runs_and_keeps_the_history() {
    crate::docker_accessories::build_stand_in_images();
    let project = Project::new("down");
    configure(&project, "1.0.0");
    project.deploy();
    assert_eq!(project.containers(&[(LABEL_ROLE, "replica")]).len(), 3);
    let cache = format!("{}-local-accessory-cache", project.app);
    docker(&["exec", &cache, "sh", "-c", "echo kept > /cache/marker"]);
    assert!(agent_runs(&project.state_dir));

    let text = project.ok(&["down", "local"]);
    assert!(text.contains("agent stopped"), "{text}");
    assert!(
        text.contains(&format!("removed container {cache}")),
        "{text}"
    );
    assert!(
        project.containers(&[]).is_empty(),
        "containers left: {:?}",
        project.containers(&[])
    );
    assert!(networks(&project).is_empty(), "{:?}", networks(&project));
    assert!(!agent_runs(&project.state_dir), "the agent still runs");
    assert!(project.get("/").is_err(), "the ingress still answers");
    assert!(
        ingress_pid(&project.state_dir)
            .is_none_or(|pid| !Path::new(&format!("/proc/{pid}")).exists()),
        "the ingress process still runs"
    );
    assert_eq!(
        volumes(&project),
        [
            format!("{}-local-cache", project.app),
            format!("{}-local-data", project.app)
        ],
        "volumes stay without --volumes"
    );
    assert_eq!(project.releases().len(), 1, "the history stays");

    // The next deploy starts everything again and numbers on; the accessory's data survived.
    configure(&project, "2.0.0");
    project.deploy();
    let releases = project.releases();
    let newest = releases
        .iter()
        .filter_map(|r| r["number"].as_u64())
        .max()
        .expect("a release");
    assert_eq!(newest, 2, "{releases:?}");
    assert_eq!(
        project.serving_version(),
        Some(format!("2.0.0-{}", project.app))
    );
    assert_eq!(
        docker(&["exec", &cache, "cat", "/cache/marker"]).trim(),
        "kept"
    );

    let text = project.ok(&["down", "local", "--volumes", "--yes"]);
    assert!(text.contains("removed volume"), "{text}");
    assert!(project.containers(&[]).is_empty());
    assert!(networks(&project).is_empty());
    assert!(volumes(&project).is_empty(), "{:?}", volumes(&project));
    assert_eq!(project.releases().len(), 2);

    // Nothing left to remove is not an error.
    let text = project.ok(&["down", "local"]);
    assert!(!text.contains("removed container"), "{text}");
}

#[test]
fn down_on_an_ecs_environment_names_the_stack_to_delete() {
    let project = Project::new("downecs");
    let text = std::fs::read_to_string(&project.config).expect("read deploy.toml");
    std::fs::write(
        &project.config,
        format!(
            "{text}\n[environments.staging]\nengine = \"ecs\"\nregion = \"eu-west-1\"\nsecrets_from = {{ ssm = \"/kt/staging/\" }}\n"
        ),
    )
    .expect("write deploy.toml");
    let output = project
        .cli()
        .args(["down", "staging", "--yes"])
        .output()
        .expect("run down");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`down` stops local (docker) environments only")
            && stderr.contains("kaapi-deploy infra template staging")
            && stderr.contains("aws cloudformation delete-stack"),
        "{stderr}"
    );
}
