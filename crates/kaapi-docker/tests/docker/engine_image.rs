//! The shared build step against the real Docker Engine (and a real registry for pushes):
//! pre-build command, `.dockerignore`, build args, tags, and the pushed manifest digest.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use kaapi_core::engine::ImageBuilder;
use kaapi_core::progress::{Event, Progress};
use kaapi_docker::{docker, BuildSpec, DockerImageBuilder};

#[derive(Default)]
struct Lines(Mutex<Vec<(String, String)>>);

impl Progress for Lines {
    fn event(&self, event: Event) {
        if let Event::Output { source, line } = event {
            self.0.lock().expect("lines").push((source, line));
        }
    }
}

fn docker_cli(args: &[&str]) -> (bool, String) {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

fn project(dir: &Path, pre_build: Option<&str>) -> BuildSpec {
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nARG GREETING=none\nENV GREETING=$GREETING\nCOPY . /ctx/\n",
    )
    .expect("Dockerfile");
    std::fs::write(dir.join(".dockerignore"), "secret.txt\n**/*.log\n").expect("ignore");
    std::fs::write(dir.join("keep.txt"), "kept").expect("keep");
    std::fs::write(dir.join("secret.txt"), "must not be sent").expect("secret");
    std::fs::write(dir.join("sub/a.log"), "log").expect("log");
    std::fs::write(dir.join("sub/b.txt"), "b").expect("b");
    BuildSpec {
        config_dir: dir.to_path_buf(),
        context: dir.to_path_buf(),
        dockerfile: "Dockerfile".to_owned(),
        build_args: HashMap::from([("GREETING".to_owned(), "hello".to_owned())]),
        pre_build: pre_build.map(str::to_owned),
        repository: unique("kt-engine"),
        ..BuildSpec::default()
    }
}

/// Files under /ctx in an image, read back through `docker export`.
fn files_in(image: &str) -> Vec<String> {
    let (ok, id) = docker_cli(&["create", image, "/none"]);
    assert!(ok, "docker create {image}");
    let id = id.trim().to_owned();
    let export = Command::new("sh")
        .arg("-c")
        .arg(format!("docker export {id} | tar -t"))
        .output()
        .expect("export");
    docker_cli(&["rm", "-f", &id]);
    String::from_utf8_lossy(&export.stdout)
        .lines()
        .filter(|l| l.starts_with("ctx/") && !l.ends_with('/'))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn builds_with_pre_build_dockerignore_and_build_args() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = project(
        dir.path(),
        Some("echo made by pre-build > generated.txt && echo pre-build says hi"),
    );
    let repository = spec.repository.clone();
    let builder = DockerImageBuilder::new(docker::connect().await.expect("docker"), spec);
    let progress = Lines::default();
    let built = builder.build("abc123", &progress).await.expect("build");
    assert!(built.id.starts_with("sha256:"), "{built:?}");
    assert_eq!(built.tags, vec![format!("{repository}:abc123")]);

    let mut files = files_in(&built.id);
    files.sort();
    assert_eq!(
        files,
        vec![
            "ctx/.dockerignore",
            "ctx/Dockerfile",
            "ctx/generated.txt",
            "ctx/keep.txt",
            "ctx/sub/b.txt"
        ]
    );
    let (_, env) = docker_cli(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Env}}",
        &built.id,
    ]);
    assert!(env.contains("GREETING=hello"), "{env}");
    let (_, tagged) = docker_cli(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        &format!("{repository}:abc123"),
    ]);
    assert_eq!(tagged.trim(), built.id);
    let lines = progress.0.lock().expect("lines").clone();
    assert!(
        lines
            .iter()
            .any(|(s, l)| s == "pre-build" && l == "pre-build says hi"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|(s, l)| s == "build" && l.contains("COPY . /ctx/")),
        "{lines:?}"
    );
    docker_cli(&["rmi", "-f", &built.id]);
}

#[tokio::test]
async fn a_failing_pre_build_or_dockerfile_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = project(dir.path(), Some("echo broken >&2; exit 7"));
    let builder = DockerImageBuilder::new(docker::connect().await.expect("docker"), spec.clone());
    let error = builder
        .build("x", &Lines::default())
        .await
        .expect_err("pre-build fails")
        .to_string();
    assert!(
        error.contains("echo broken >&2; exit 7") && error.contains("exit code 7"),
        "{error}"
    );

    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY missing.txt /\n",
    )
    .expect("write");
    let builder = DockerImageBuilder::new(
        docker::connect().await.expect("docker"),
        BuildSpec {
            pre_build: None,
            ..spec
        },
    );
    let error = builder
        .build("x", &Lines::default())
        .await
        .expect_err("build fails")
        .to_string();
    assert!(
        error.contains("docker build of") && error.contains("missing.txt"),
        "{error}"
    );
}

#[tokio::test]
async fn push_returns_the_digest_the_registry_serves() {
    let registry = kaapi_testkit::registry();
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = project(dir.path(), None);
    let builder = DockerImageBuilder::new(docker::connect().await.expect("docker"), spec);
    let built = builder.build("v1", &Lines::default()).await.expect("build");
    let repository = format!("127.0.0.1:{}/kt-engine-push", registry.port);
    let digest = builder
        .push(
            &built.id,
            &repository,
            &["c0ffee".to_owned(), "v1.2.3".to_owned()],
            None,
            &Lines::default(),
        )
        .await
        .expect("push");
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    for tag in ["c0ffee", "v1.2.3"] {
        let head = Command::new("curl")
            .args([
                "-sSI",
                "-H",
                "Accept: application/vnd.docker.distribution.manifest.v2+json",
                &format!(
                    "http://127.0.0.1:{}/v2/kt-engine-push/manifests/{tag}",
                    registry.port
                ),
            ])
            .output()
            .expect("curl");
        let headers = String::from_utf8_lossy(&head.stdout).to_ascii_lowercase();
        assert!(
            headers.contains(&format!("docker-content-digest: {digest}")),
            "{tag}: {headers}"
        );
    }
    docker_cli(&["rmi", "-f", &built.id]);
}
