//! A reader's copy of an environment's release history, kept up to date by reading only what
//! can have changed ([`Engine::releases_since`]). A finished release never changes, so a poller
//! (the dashboard) reads it once; new releases and unfinished ones are read at every refresh,
//! and the whole history again every [`FULL_REREAD`], so that whatever an engine cannot see
//! incrementally (a release removed behind its back) is gone from the copy within that time.

use std::time::{Duration, Instant};

use crate::engine::{Engine, EngineResult};
use crate::release::Release;

/// How often [`KnownReleases::refresh`] reads the whole history again.
pub const FULL_REREAD: Duration = Duration::from_secs(10 * 60);

/// What an engine read of its history for a reader that already has some of it.
#[derive(Debug, Clone, PartialEq)]
pub enum HistoryRead {
    /// The whole history, newest first: it replaces the reader's copy.
    Full(Vec<Release>),
    /// Only what changed: releases the reader did not have and its unfinished ones read again
    /// (newest first), and the numbers of the reader's releases that no longer exist.
    Changes {
        releases: Vec<Release>,
        gone: Vec<u64>,
    },
}

impl HistoryRead {
    /// The releases read, newest first.
    pub fn releases(&self) -> &[Release] {
        match self {
            HistoryRead::Full(releases) | HistoryRead::Changes { releases, .. } => releases,
        }
    }
}

/// The releases of one environment as last read, newest first.
#[derive(Debug, Default)]
pub struct KnownReleases {
    releases: Vec<Release>,
    /// When the whole history was last read.
    full_at: Option<Instant>,
}

impl KnownReleases {
    pub fn releases(&self) -> &[Release] {
        &self.releases
    }

    /// Brings the copy up to date: the whole history on the first call and every
    /// [`FULL_REREAD`], only what can have changed otherwise. On error the copy is unchanged.
    pub async fn refresh(&mut self, engine: &dyn Engine) -> EngineResult<&[Release]> {
        let now = Instant::now();
        let read = if self.full_read_due(now) {
            HistoryRead::Full(engine.releases().await?)
        } else {
            engine.releases_since(&self.releases).await?
        };
        self.apply(read, now);
        Ok(&self.releases)
    }

    fn full_read_due(&self, now: Instant) -> bool {
        self.full_at
            .is_none_or(|at| now.saturating_duration_since(at) >= FULL_REREAD)
    }

    fn apply(&mut self, read: HistoryRead, now: Instant) {
        match read {
            HistoryRead::Full(releases) => {
                self.releases = releases;
                self.full_at = Some(now);
            }
            HistoryRead::Changes { releases, gone } => {
                self.releases.retain(|old| {
                    !gone.contains(&old.number) && !releases.iter().any(|r| r.number == old.number)
                });
                self.releases.extend(releases);
                self.releases.sort_by_key(|r| std::cmp::Reverse(r.number));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::test_release as release;
    use crate::release::Outcome;

    fn outcomes(known: &KnownReleases) -> Vec<(u64, Outcome)> {
        known
            .releases()
            .iter()
            .map(|r| (r.number, r.outcome))
            .collect()
    }

    #[test]
    fn changes_add_new_releases_replace_reread_ones_and_drop_gone_ones() {
        let mut known = KnownReleases::default();
        let start = Instant::now();
        known.apply(
            HistoryRead::Full(vec![
                release(3, Outcome::InProgress),
                release(2, Outcome::Succeeded),
                release(1, Outcome::Succeeded),
            ]),
            start,
        );
        known.apply(
            HistoryRead::Changes {
                releases: vec![
                    release(5, Outcome::InProgress),
                    release(4, Outcome::Succeeded),
                    release(3, Outcome::RolledBack),
                ],
                gone: vec![1],
            },
            start,
        );
        assert_eq!(
            outcomes(&known),
            vec![
                (5, Outcome::InProgress),
                (4, Outcome::Succeeded),
                (3, Outcome::RolledBack),
                (2, Outcome::Succeeded),
            ]
        );
        // A full read replaces the copy, whatever it held.
        known.apply(
            HistoryRead::Full(vec![release(5, Outcome::Succeeded)]),
            start,
        );
        assert_eq!(outcomes(&known), vec![(5, Outcome::Succeeded)]);
    }

    #[test]
    fn the_whole_history_is_read_first_and_again_every_full_reread_only() {
        let mut known = KnownReleases::default();
        let start = Instant::now();
        assert!(known.full_read_due(start), "nothing read yet");
        known.apply(
            HistoryRead::Full(vec![release(1, Outcome::Succeeded)]),
            start,
        );
        assert!(!known.full_read_due(start + Duration::from_secs(15)));
        // Incremental reads do not postpone the next full one.
        let changes = HistoryRead::Changes {
            releases: Vec::new(),
            gone: Vec::new(),
        };
        known.apply(changes, start + FULL_REREAD - Duration::from_secs(1));
        assert!(!known.full_read_due(start + FULL_REREAD - Duration::from_secs(1)));
        assert!(known.full_read_due(start + FULL_REREAD));
    }
}
