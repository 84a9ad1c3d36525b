//! This repository's GitHub name (`OWNER/REPO`): `GITHUB_REPOSITORY` in CI, else the `origin`
//! remote of the git checkout holding deploy.toml.

use std::path::Path;
use std::process::Command;

pub fn detect(dir: &Path) -> Option<String> {
    if let Ok(repo) = std::env::var("GITHUB_REPOSITORY") {
        if is_owner_repo(&repo) {
            return Some(repo);
        }
    }
    let output = Command::new("git")
        .args(["remote", "get-url", "origin"])
        .current_dir(dir)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    from_remote_url(String::from_utf8_lossy(&output.stdout).trim())
}

/// `git@github.com:o/r.git`, `https://github.com/o/r(.git)`, `ssh://git@github.com/o/r` → `o/r`.
pub fn from_remote_url(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("git@github.com:")
        .or_else(|| url.split_once("github.com/").map(|(_, r)| r))?;
    let repo = rest.trim_end_matches('/').trim_end_matches(".git");
    is_owner_repo(repo).then(|| repo.to_owned())
}

pub fn is_owner_repo(text: &str) -> bool {
    let mut parts = text.split('/');
    let valid = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    matches!((parts.next(), parts.next(), parts.next()), (Some(o), Some(r), None) if valid(o) && valid(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_urls() {
        assert_eq!(
            from_remote_url("git@github.com:o/r.git").as_deref(),
            Some("o/r")
        );
        assert_eq!(
            from_remote_url("https://github.com/o/r").as_deref(),
            Some("o/r")
        );
        assert_eq!(from_remote_url("https://gitlab.com/o/r"), None);
        assert!(!is_owner_repo("o/*"));
    }
}
