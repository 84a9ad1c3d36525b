//! `prune`: which releases keep their images and revisions, and the run under the deploy lock
//! (so that no deploy registers or rolls out while their artifacts are removed).

use std::collections::BTreeSet;

use serde::Serialize;

use crate::engine::{Engine, EngineResult, LockOwner};
use crate::progress::Progress;
use crate::release::{Outcome, Release};

/// What a prune removed, or would remove with `--dry-run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    pub environment: String,
    pub dry_run: bool,
    /// Releases whose images and revisions stay, newest first.
    pub kept_releases: Vec<u64>,
    pub removed: Vec<Pruned>,
}

/// One removed artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// `image`, `task definition`, `registry image`.
    pub kind: &'static str,
    /// Image ID, task-definition ARN, `repository@digest`.
    pub id: String,
    /// The releases that used it.
    pub releases: Vec<u64>,
}

/// The releases a prune keeps: the current one, the `keep` newest successful ones before it
/// (what `rollback` can go back to), and any still in progress.
pub fn kept_releases(releases: &[Release], current: Option<u64>, keep: usize) -> BTreeSet<u64> {
    let mut kept: BTreeSet<u64> = current.into_iter().collect();
    let mut newest_first: Vec<&Release> = releases.iter().collect();
    newest_first.sort_by_key(|r| std::cmp::Reverse(r.number));
    kept.extend(
        newest_first
            .iter()
            .filter(|r| r.outcome == Outcome::Succeeded && Some(r.number) != current)
            .take(keep)
            .map(|r| r.number),
    );
    kept.extend(
        releases
            .iter()
            .filter(|r| r.outcome == Outcome::InProgress)
            .map(|r| r.number),
    );
    kept
}

/// Prunes under the environment's deploy lock; a dry run takes no lock.
pub async fn run(
    engine: &dyn Engine,
    owner: &LockOwner,
    keep: usize,
    dry_run: bool,
    progress: &dyn Progress,
) -> EngineResult<PruneReport> {
    if dry_run {
        return engine.prune(keep, true, progress).await;
    }
    let token = engine.acquire_lock(owner, progress).await?;
    let result = engine.prune(keep, false, progress).await;
    if let Err(e) = engine.release_lock(&token).await {
        progress.warning(format!("could not release the deploy lock: {e}"));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::test_release as release;

    #[test]
    fn keeps_the_current_and_the_newest_successful_before_it() {
        let releases = vec![
            release(1, Outcome::Succeeded),
            release(2, Outcome::Succeeded),
            release(3, Outcome::RolledBack),
            release(4, Outcome::Succeeded),
            release(5, Outcome::Succeeded),
        ];
        assert_eq!(kept_releases(&releases, Some(5), 1), BTreeSet::from([4, 5]));
        assert_eq!(
            kept_releases(&releases, Some(5), 2),
            BTreeSet::from([2, 4, 5]),
            "a failed release is no rollback target"
        );
        assert_eq!(kept_releases(&releases, Some(5), 0), BTreeSet::from([5]));
    }

    #[test]
    fn keeps_a_release_in_progress_and_the_current_after_a_rollback() {
        let releases = vec![
            release(1, Outcome::Succeeded),
            release(2, Outcome::Succeeded),
            release(3, Outcome::InProgress),
        ];
        assert_eq!(kept_releases(&releases, Some(1), 0), BTreeSet::from([1, 3]));
    }
}
