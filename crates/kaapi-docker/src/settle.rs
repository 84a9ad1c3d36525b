//! Settles the releases a deploy left unfinished from what the agent actually serves. A deploy
//! that is killed or interrupted records its release `in_progress` or `interrupted`, while the
//! agent may well finish the rollout: the release the agent serves succeeded; a release still
//! `in_progress` that no deploy can finish any more (no live deploy holds the lock) and that
//! the agent does not serve is recorded as interrupted.

use kaapi_core::release::Outcome;

use crate::history::{Store, StoreError};

/// One release whose recorded outcome changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub number: u64,
    pub outcome: Outcome,
}

/// Call only when no live deploy of `environment` holds its lock. `served` is the release the
/// agent serves with no rollout running, `None` when that is unknown.
pub fn settle(
    store: &Store,
    environment: &str,
    served: Option<u64>,
) -> Result<Vec<Settled>, StoreError> {
    let mut settled = Vec::new();
    for release in store.releases(environment)? {
        let (outcome, detail) = match release.outcome {
            Outcome::InProgress | Outcome::Interrupted if Some(release.number) == served => (
                Outcome::Succeeded,
                "its deploy stopped before the end, but the agent finished the rollout and serves it",
            ),
            Outcome::InProgress => (
                Outcome::Interrupted,
                "its deploy stopped before the end and the agent does not serve it",
            ),
            _ => continue,
        };
        store.set_outcome(environment, release.number, outcome, Some(detail))?;
        settled.push(Settled {
            number: release.number,
            outcome,
        });
    }
    Ok(settled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Revisions;
    use chrono::Utc;
    use kaapi_core::release::{ImageRef, ReleaseMeta};

    fn release(store: &Store, outcome: Outcome) -> u64 {
        let image = ImageRef {
            reference: "sha256:1".to_owned(),
            digest: "sha256:1".to_owned(),
            tags: Vec::new(),
        };
        let meta = ReleaseMeta {
            commit: "c1".to_owned(),
            version: None,
            author: "alice".to_owned(),
            created_at: Utc::now(),
        };
        let number = store
            .insert_release("local", &image, &meta, &Revisions::New(Vec::new()))
            .expect("insert")
            .number;
        store
            .set_outcome("local", number, outcome, None)
            .expect("outcome");
        number
    }

    fn outcomes(store: &Store) -> Vec<(u64, Outcome)> {
        let mut all: Vec<_> = store
            .releases("local")
            .expect("releases")
            .iter()
            .map(|r| (r.number, r.outcome))
            .collect();
        all.sort_by_key(|(number, _)| *number);
        all
    }

    #[test]
    fn the_served_release_succeeded_and_an_abandoned_one_was_interrupted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        let good = release(&store, Outcome::Succeeded);
        let finished_by_agent = release(&store, Outcome::Interrupted);
        let abandoned = release(&store, Outcome::InProgress);
        let settled = settle(&store, "local", Some(finished_by_agent)).expect("settle");
        assert_eq!(
            settled,
            vec![
                Settled {
                    number: abandoned,
                    outcome: Outcome::Interrupted
                },
                Settled {
                    number: finished_by_agent,
                    outcome: Outcome::Succeeded
                },
            ]
        );
        assert_eq!(
            outcomes(&store),
            vec![
                (good, Outcome::Succeeded),
                (finished_by_agent, Outcome::Succeeded),
                (abandoned, Outcome::Interrupted),
            ]
        );
        // Settled once: a second pass changes nothing.
        assert!(settle(&store, "local", Some(finished_by_agent))
            .expect("settle")
            .is_empty());
    }

    #[test]
    fn without_an_agent_an_unfinished_release_is_interrupted_and_an_interrupted_one_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        let interrupted = release(&store, Outcome::Interrupted);
        let unfinished = release(&store, Outcome::InProgress);
        settle(&store, "local", None).expect("settle");
        assert_eq!(
            outcomes(&store),
            vec![
                (interrupted, Outcome::Interrupted),
                (unfinished, Outcome::Interrupted),
            ]
        );
    }
}
