//! Stamps `kaapi-deploy --version` with the git commit, the build date and the engines built
//! in, so a bug report or a CI log names exactly which binary ran.
//!
//! Plain `git` and chrono rather than `vergen`/`built`: two facts do not need their dependency
//! trees in every clean build.

use std::path::Path;
use std::process::Command;

fn main() {
    let commit = std::env::var("KAAPI_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown commit".to_owned());
    let engines = if std::env::var_os("CARGO_FEATURE_ECS").is_some() {
        "docker, ecs"
    } else {
        "docker only"
    };
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    println!(
        "cargo:rustc-env=KAAPI_DEPLOY_VERSION={version} ({commit}, built {}, engines: {engines})",
        build_date()
    );
    println!("cargo:rerun-if-env-changed=KAAPI_BUILD_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-changed=build.rs");
    rerun_on_new_commit();
}

/// The short commit of the checkout; `None` outside a git checkout (a crates.io download) or
/// without git.
fn git_commit() -> Option<String> {
    git(&["rev-parse", "--short=12", "HEAD"]).map(|sha| format!("commit {sha}"))
}

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// UTC date of the build; `SOURCE_DATE_EPOCH` (reproducible builds) wins over the clock.
fn build_date() -> String {
    let date = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .unwrap_or_else(chrono::Utc::now);
    date.format("%Y-%m-%d").to_string()
}

/// Re-stamp when HEAD moves (checkout or commit), not on every build.
fn rerun_on_new_commit() {
    let reference = git(&["symbolic-ref", "-q", "HEAD"]);
    for name in std::iter::once("HEAD").chain(reference.as_deref()) {
        if let Some(path) = git(&["rev-parse", "--git-path", name]) {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}
