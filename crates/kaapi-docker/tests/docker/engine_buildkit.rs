//! BuildKit builds against the real Docker Engine: a Kaapi-shaped Dockerfile (a cache mount,
//! `COPY --from` a locally built image, `FROM` a locally built base, `ARG GIT_SHA`), the build
//! context's exclusions, build secrets that reach their step and nothing else, and a failing
//! step named with its log.

use std::path::Path;
use std::sync::Mutex;

use kaapi_core::engine::ImageBuilder;
use kaapi_core::progress::{Event, Progress};
use kaapi_docker::build_secrets::{BuildSecret, SecretFrom};
use kaapi_docker::{BuildSpec, DockerImageBuilder};
use kaapi_testkit::docker;

/// Every progress event as text, so a test can look for a secret anywhere in it.
#[derive(Default)]
struct Recorded(Mutex<Vec<String>>);

impl Progress for Recorded {
    fn event(&self, event: Event) {
        let text = match event {
            Event::Output { line, .. } => line,
            Event::Info { message } | Event::Warning { message } => message,
            other => format!("{other:?}"),
        };
        self.0.lock().expect("recorded").push(text);
    }
}

impl Recorded {
    fn lines(&self) -> Vec<String> {
        self.0.lock().expect("recorded").clone()
    }
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

fn spec(dir: &Path, repository: &str) -> BuildSpec {
    BuildSpec {
        config_dir: dir.to_path_buf(),
        context: dir.to_path_buf(),
        dockerfile: "Dockerfile".to_owned(),
        repository: repository.to_owned(),
        ..BuildSpec::default()
    }
}

async fn build(spec: BuildSpec, tag: &str, progress: &Recorded) -> String {
    let builder =
        DockerImageBuilder::new(kaapi_docker::docker::connect().await.expect("docker"), spec);
    builder.build(tag, progress).await.expect("build").id
}

/// A shell image built here from the static busybox (`apt-get install busybox-static`).
async fn base_image(name: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy("/bin/busybox", dir.path().join("busybox")).expect("needs busybox-static");
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
    )
    .expect("Dockerfile");
    let repository = unique(name);
    build(spec(dir.path(), &repository), "base", &Recorded::default()).await;
    format!("{repository}:base")
}

/// An image holding only `/uv`, standing in for `ghcr.io/astral-sh/uv` in `COPY --from`.
async fn tool_image() -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("uv"), "#!/bin/sh\necho uv stand-in\n").expect("uv");
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\nCOPY uv /uv\n").expect("df");
    let repository = unique("kt-bk-uv");
    build(spec(dir.path(), &repository), "tool", &Recorded::default()).await;
    format!("{repository}:tool")
}

fn run(image: &str, command: &[&str]) -> String {
    let mut args = vec!["run", "--rm", image];
    args.extend_from_slice(command);
    docker(&args)
}

#[tokio::test]
async fn builds_a_kaapi_shaped_dockerfile_with_cache_mount_copy_from_and_git_sha() {
    let base = base_image("kt-bk-base").await;
    let tool = tool_image().await;
    let cache_id = unique("uv-cache");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::write(
        root.join("Dockerfile"),
        format!(
            "FROM {base} AS deps\n\
             ARG RUN_NONCE\n\
             RUN --mount=type=cache,id={cache_id},target=/root/.cache/uv \
             echo \"run $RUN_NONCE\" >> /root/.cache/uv/runs && cp /root/.cache/uv/runs /runs\n\
             FROM {base}\n\
             COPY --from={tool} /uv /bin/uv\n\
             COPY --from=deps /runs /app/runs\n\
             ARG GIT_SHA\n\
             RUN echo \"$GIT_SHA\" > /app/git_sha\n\
             COPY . /ctx\n"
        ),
    )
    .expect("Dockerfile");
    std::fs::create_dir_all(root.join(".kaapi")).expect("state dir");
    std::fs::create_dir_all(root.join("app")).expect("app dir");
    std::fs::write(root.join(".kaapi/releases.db"), "state").expect("state");
    std::fs::write(root.join(".env"), "JWT_SECRET=local-only").expect(".env");
    std::fs::write(root.join(".env.staging"), "JWT_SECRET=staging").expect(".env.staging");
    std::fs::write(root.join(".env.example"), "JWT_SECRET=").expect(".env.example");
    std::fs::write(root.join("app/main.py"), "app = None\n").expect("main.py");
    std::fs::write(root.join("debug.log"), "noise").expect("log");
    // `.dockerignore` tries to keep the env file; the tool leaves it out anyway.
    std::fs::write(root.join(".dockerignore"), "*.log\n!.env\n").expect("ignore");

    let repository = unique("kt-bk-app");
    let mut first = spec(root, &repository);
    first.platform = Some("linux/amd64".to_owned());
    first
        .build_args
        .insert("RUN_NONCE".to_owned(), "one".to_owned());
    let mut second = first.clone();
    second
        .build_args
        .insert("RUN_NONCE".to_owned(), "two".to_owned());

    let progress = Recorded::default();
    build(first, "c0ffee1", &progress).await;
    let image = build(second, "c0ffee2", &progress).await;

    assert_eq!(run(&image, &["cat", "/app/git_sha"]), "c0ffee2");
    assert_eq!(
        run(&image, &["cat", "/bin/uv"]),
        "#!/bin/sh\necho uv stand-in"
    );
    // The second run saw the first run's file: the cache mount outlived the first build.
    assert_eq!(run(&image, &["cat", "/app/runs"]), "run one\nrun two");
    let mut context = run(&image, &["find", "/ctx", "-type", "f"])
        .lines()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    context.sort();
    assert_eq!(
        context,
        vec![
            "/ctx/.dockerignore",
            "/ctx/.env.example",
            "/ctx/Dockerfile",
            "/ctx/app/main.py"
        ]
    );
    assert_eq!(
        docker(&["image", "inspect", "--format", "{{.Architecture}}", &image]),
        "amd64"
    );
    let tagged = docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        &format!("{repository}:c0ffee2"),
    ]);
    assert_eq!(tagged, image);
    let lines = progress.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("RUN --mount=type=cache") && l.starts_with('#')),
        "steps are shown by name: {lines:?}"
    );
    assert!(lines.iter().any(|l| l.ends_with(" DONE")), "{lines:?}");
    docker(&["rmi", "-f", &image, &base, &tool]);
}

#[tokio::test]
async fn a_build_secret_reaches_its_step_but_no_layer_history_or_log() {
    let base = base_image("kt-bk-secret-base").await;
    let value = unique("s3cret-value");
    let variable = "KT_BUILDKIT_TEST_TOKEN";
    std::env::set_var(variable, &value);
    let outside = tempfile::tempdir().expect("secret dir");
    let file_value = unique("file-s3cret");
    std::fs::write(outside.path().join("netrc"), &file_value).expect("secret file");

    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    // BuildKit's cache key leaves secret contents out: a step unique to this run cannot be
    // served from an earlier run's cache with other values.
    let run_id = unique("run");
    std::fs::write(
        root.join("Dockerfile"),
        format!(
            "FROM {base}\n\
             RUN --mount=type=secret,id=token,required=true \
             --mount=type=secret,id=netrc,required=true \
             echo {run_id} > /run-id && cat /run/secrets/token /run/secrets/netrc | sha256sum | cut -c1-64 > /secrets.sha \
             && echo mounted $(wc -c < /run/secrets/token) bytes\n\
             COPY . /ctx\n"
        ),
    )
    .expect("Dockerfile");
    std::fs::write(root.join(".env"), format!("TOKEN={value}")).expect(".env");
    let mut build_spec = spec(root, &unique("kt-bk-secret"));
    build_spec.secrets = vec![
        BuildSecret {
            id: "token".to_owned(),
            source: SecretFrom::Env(variable.to_owned()),
        },
        BuildSecret {
            id: "netrc".to_owned(),
            source: SecretFrom::File(outside.path().join("netrc")),
        },
    ];
    let progress = Recorded::default();
    let image = build(build_spec, "s1", &progress).await;

    // The step read both values: their digest is in the image, computed the same way here.
    let expected = std::process::Command::new("sh")
        .arg("-c")
        .arg("printf '%s%s' \"$A\" \"$B\" | sha256sum | cut -c1-64")
        .env("A", &value)
        .env("B", &file_value)
        .output()
        .expect("sha256sum");
    assert_eq!(
        run(&image, &["cat", "/secrets.sha"]),
        String::from_utf8_lossy(&expected.stdout).trim()
    );
    assert_eq!(
        run(&image, &["find", "/ctx", "-type", "f"]),
        "/ctx/Dockerfile"
    );

    let saved = tempfile::NamedTempFile::new().expect("save file");
    let saved_path = saved.path().to_string_lossy().into_owned();
    docker(&["save", "-o", &saved_path, &image]);
    let bytes = std::fs::read(saved.path()).expect("saved image");
    for secret in [&value, &file_value] {
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "a secret is in a layer"
        );
    }
    let history = docker(&["history", "--no-trunc", &image]);
    let inspect = docker(&["image", "inspect", &image]);
    let progress_text = progress.lines().join("\n");
    for text in [&history, &inspect, &progress_text] {
        assert!(!text.contains(&value) && !text.contains(&file_value));
    }
    assert!(history.contains("/run/secrets/token"), "{history}");
    docker(&["rmi", "-f", &image, &base]);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_failing_run_names_its_step_and_last_log_lines() {
    let base = base_image("kt-bk-fail-base").await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {base}\nRUN echo resolving packages && echo 'no version of kaapi-lib' >&2 && exit 3\n"
        ),
    )
    .expect("Dockerfile");
    let builder = DockerImageBuilder::new(
        kaapi_docker::docker::connect().await.expect("docker"),
        spec(dir.path(), &unique("kt-bk-fail")),
    );
    let error = builder
        .build("bad", &Recorded::default())
        .await
        .expect_err("the RUN fails")
        .to_string();
    assert!(
        error.contains("step `[2/2] RUN echo resolving packages")
            && error.contains("exit code: 3")
            && error.contains("  resolving packages")
            && error.contains("  no version of kaapi-lib"),
        "{error}"
    );
    docker(&["rmi", "-f", &base]);
}
