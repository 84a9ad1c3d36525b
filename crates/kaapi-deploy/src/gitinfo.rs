//! Who and what is being deployed, read from git (or from CI variables when set).

use std::path::Path;
use std::process::Command;

use kaapi_core::config::ResolvedEnvironment;
use kaapi_core::engine::LockOwner;
use kaapi_core::interpolate::interpolate;
use kaapi_core::release::ReleaseMeta;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The short commit, `-dirty` when the tree has uncommitted changes; `GITHUB_SHA` wins in CI.
pub fn commit(dir: &Path) -> String {
    if let Ok(sha) = std::env::var("GITHUB_SHA") {
        if !sha.is_empty() {
            return sha.chars().take(12).collect();
        }
    }
    let Some(head) = git(dir, &["rev-parse", "--short=12", "HEAD"]) else {
        return "uncommitted".to_owned();
    };
    let dirty = git(dir, &["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{head}-dirty")
    } else {
        head
    }
}

pub fn author(dir: &Path) -> String {
    std::env::var("GITHUB_ACTOR")
        .ok()
        .filter(|a| !a.is_empty())
        .or_else(|| git(dir, &["config", "user.name"]).filter(|a| !a.is_empty()))
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Build arguments that, by convention, carry the version a build ships.
const VERSION_BUILD_ARGS: [&str; 2] = ["APP_VERSION", "VERSION"];

/// The version a deploy of `target` ships: the `APP_VERSION` (or `VERSION`) build argument as
/// the build expands it, else a git tag on the commit; `None` when there is neither.
pub fn release_version(target: &ResolvedEnvironment) -> Option<String> {
    let build_args = &target.config().image.build_args;
    VERSION_BUILD_ARGS
        .iter()
        .find_map(|name| build_args.get(*name))
        .and_then(|value| interpolate(value, |name| std::env::var(name).ok()).ok())
        .filter(|version| !version.is_empty())
        .or_else(|| {
            git(
                target.dir(),
                &["describe", "--tags", "--exact-match", "HEAD"],
            )
        })
}

pub fn release_meta(dir: &Path, version: Option<String>) -> ReleaseMeta {
    ReleaseMeta {
        commit: commit(dir),
        version,
        author: author(dir),
        created_at: chrono::Utc::now(),
    }
}

pub fn lock_owner(dir: &Path) -> LockOwner {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    let url = match (
        std::env::var("GITHUB_SERVER_URL"),
        std::env::var("GITHUB_REPOSITORY"),
        std::env::var("GITHUB_RUN_ID"),
    ) {
        (Ok(server), Ok(repo), Ok(run)) => Some(format!("{server}/{repo}/actions/runs/{run}")),
        _ => None,
    };
    LockOwner {
        holder: format!("{}@{host} (pid {})", author(dir), std::process::id()),
        url,
    }
}
