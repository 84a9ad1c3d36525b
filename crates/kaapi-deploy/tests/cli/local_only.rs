//! The local-only build (`--no-default-features`): no AWS SDK in its dependency tree, and a
//! clear error, naming the way out, for everything that needs ECS. `scripts/test.sh` runs this
//! module a second time against that build; the tests of the other build check the opposite.

use std::path::Path;
use std::process::Command as StdCommand;

use assert_cmd::Command;

/// The crates `cargo tree` lists for kaapi-deploy with `features` (normal dependencies only).
fn dependency_tree(features: &[&str]) -> String {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = StdCommand::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["-p", "kaapi-deploy"])
        .args(features)
        .current_dir(workspace)
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

#[test]
fn the_local_only_build_has_no_aws_sdk_and_the_full_one_does() {
    let local = dependency_tree(&["--no-default-features"]);
    assert!(local.contains("kaapi-docker"), "the tree was read: {local}");
    let aws: Vec<&str> = local
        .lines()
        .filter(|line| line.starts_with("aws-") || line.starts_with("kaapi-aws"))
        .collect();
    assert!(
        aws.is_empty(),
        "AWS crates in the local-only build: {aws:?}"
    );

    let full = dependency_tree(&[]);
    for krate in ["aws-sdk-ecs ", "kaapi-ecs ", "kaapi-infra "] {
        assert!(full.contains(krate), "the default build has {krate}");
    }
}

const CONFIG: &str = r#"
app = "shop"

[image]
context = "."

[services.web]
port = 8000

[environments.local]
engine = "docker"

[environments.staging]
engine = "ecs"
region = "eu-west-1"
"#;

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("project dir");
    std::fs::write(dir.path().join("deploy.toml"), CONFIG).expect("write deploy.toml");
    dir
}

fn kaapi(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("kaapi-deploy").expect("the binary");
    cmd.current_dir(dir)
        .env_remove("KAAPI_CONFIG")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

#[test]
fn version_names_the_commit_the_date_and_the_engines() {
    let output = kaapi(Path::new("."))
        .arg("--version")
        .output()
        .expect("run");
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    let engines = if cfg!(feature = "ecs") {
        "engines: docker, ecs)"
    } else {
        "engines: docker only)"
    };
    assert!(
        text.starts_with(&format!("kaapi-deploy {} (", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.trim_end().ends_with(engines), "{text}");
    // `commit 0123abcd…` from git (the tests run in a checkout) and `built YYYY-MM-DD`.
    let commit = text
        .split("commit ")
        .nth(1)
        .expect("a commit")
        .split(',')
        .next();
    assert!(
        commit.is_some_and(|c| c.len() >= 7 && c.chars().all(|c| c.is_ascii_hexdigit())),
        "{text}"
    );
    let date = text.split("built ").nth(1).expect("a build date");
    assert!(date.get(..10).is_some_and(chrono_like_date), "{text}");
}

fn chrono_like_date(d: &str) -> bool {
    d.len() == 10
        && d.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            _ => c.is_ascii_digit(),
        })
}

#[cfg(not(feature = "ecs"))]
#[test]
fn everything_that_needs_ecs_says_how_to_get_it() {
    let project = project();
    let dir = project.path();
    std::fs::write(dir.join("secrets.env"), "SECRET_KEY=x\n").expect("env file");
    let commands: [&[&str]; 6] = [
        &["deploy", "staging"],
        &["status", "staging"],
        &["check", "staging"],
        &["infra", "template", "staging"],
        &["secrets", "push", "staging", "--from", "secrets.env"],
        &["promote", "local", "staging"],
    ];
    for args in commands {
        let output = kaapi(dir).args(args).output().expect("run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("this kaapi-deploy was built without ECS support")
                && stderr.contains("cargo install kaapi-deploy"),
            "{args:?}: {stderr}"
        );
    }
    // What needs no AWS still works: the offline check of the ECS environment.
    let output = kaapi(dir)
        .args(["check", "staging", "--offline"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("without ECS support"),
        "the offline check needs no AWS: {stderr}"
    );
}

#[cfg(feature = "ecs")]
#[test]
fn the_full_build_knows_ecs_environments() {
    let project = project();
    let output = kaapi(project.path())
        .args(["infra", "template", "staging", "--repository", "acme/shop"])
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("AWS::ECS::Cluster"));
}
