//! What a deploy records: the release (one image, one revision per service), who made it, and
//! how it ended. Engines store these (an embedded database locally, task-definition tags on ECS).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Who and what a deploy ships.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseMeta {
    /// Git commit, with `-dirty` when the tree had uncommitted changes.
    pub commit: String,
    /// Version tag (`v1.2.3`) when deploying a tag.
    pub version: Option<String>,
    pub author: String,
    pub created_at: DateTime<Utc>,
}

/// An image as the pipeline refers to it after the build: by content, never by a mutable tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// Reference engines run, e.g. `127.0.0.1:5000/kaapi-repo@sha256:…` or a local image ID.
    pub reference: String,
    /// `sha256:…` content digest or image ID.
    pub digest: String,
    /// Tags pushed or applied (commit, version) for people to read.
    pub tags: Vec<String>,
}

/// The repository of an image reference: `host/repo:tag` or `host/repo@sha256:…` → `host/repo`
/// (a registry port is not a tag: `localhost:5000/repo` stays whole).
pub fn repository_of(image: &str) -> &str {
    let image = image.split_once('@').map_or(image, |(repo, _)| repo);
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => image,
    }
}

/// One service's immutable revision within a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRevision {
    pub service: String,
    /// Engine's identifier: task-definition ARN on ECS, `family:N` locally.
    pub revision: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    InProgress,
    Succeeded,
    /// The migrations exited non-zero; nothing serving changed.
    FailedMigration,
    /// Rollout or verification failed and the previous release serves again.
    RolledBack,
    /// Failed with nothing to roll back to, or the rollback failed too.
    Failed,
    /// The deploy was interrupted (Ctrl-C, killed) before it finished.
    Interrupted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::InProgress => "in_progress",
            Outcome::Succeeded => "succeeded",
            Outcome::FailedMigration => "failed_migration",
            Outcome::RolledBack => "rolled_back",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
        }
    }

    /// Whether the outcome never changes again: a release in progress ends, and an interrupted
    /// one can still be settled from what the engine runs.
    pub fn is_final(self) -> bool {
        !matches!(self, Outcome::InProgress | Outcome::Interrupted)
    }
}

/// A string that names no outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a release outcome")]
pub struct UnknownOutcome(pub String);

impl std::str::FromStr for Outcome {
    type Err = UnknownOutcome;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [
            Outcome::InProgress,
            Outcome::Succeeded,
            Outcome::FailedMigration,
            Outcome::RolledBack,
            Outcome::Failed,
            Outcome::Interrupted,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
        .ok_or_else(|| UnknownOutcome(text.to_owned()))
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// Numbered per environment, from 1.
    pub number: u64,
    pub environment: String,
    pub image: ImageRef,
    pub meta: ReleaseMeta,
    pub revisions: Vec<ServiceRevision>,
    pub outcome: Outcome,
    /// What went wrong, for failed outcomes.
    pub detail: Option<String>,
    /// Set when this release re-deploys an earlier one (`rollback`).
    pub rollback_of: Option<u64>,
    /// The database schema version this release's code runs on (`[migrations]
    /// version_command` after its migrations; a rollback copies its target's); `None` in
    /// history recorded before, or without a version command.
    #[serde(default)]
    pub schema_version: Option<String>,
}

impl Release {
    pub fn revision_of(&self, service: &str) -> Option<&ServiceRevision> {
        self.revisions.iter().find(|r| r.service == service)
    }
}

/// A release of `staging` with image `img-N`, for the crate's unit tests.
#[cfg(test)]
pub(crate) fn test_release(number: u64, outcome: Outcome) -> Release {
    Release {
        number,
        environment: "staging".to_owned(),
        image: ImageRef {
            reference: format!("img-{number}"),
            digest: format!("sha256:{number}"),
            tags: Vec::new(),
        },
        meta: ReleaseMeta {
            commit: "abc".to_owned(),
            version: None,
            author: "test".to_owned(),
            created_at: chrono::Utc::now(),
        },
        revisions: Vec::new(),
        outcome,
        detail: None,
        rollback_of: None,
        schema_version: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_of_tagged_pinned_and_local_images() {
        let repo = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/kaapi-repo";
        assert_eq!(repository_of(&format!("{repo}:latest")), repo);
        assert_eq!(repository_of(&format!("{repo}@sha256:abc")), repo);
        assert_eq!(
            repository_of("localhost:5000/kaapi"),
            "localhost:5000/kaapi"
        );
        assert_eq!(
            repository_of("localhost:5000/kaapi:v1"),
            "localhost:5000/kaapi"
        );
        assert_eq!(repository_of("datadog/agent"), "datadog/agent");
        assert_eq!(repository_of("app-local:release-2"), "app-local");
    }

    #[test]
    fn outcomes_read_back_what_they_write() {
        for outcome in [
            Outcome::InProgress,
            Outcome::Succeeded,
            Outcome::FailedMigration,
            Outcome::RolledBack,
            Outcome::Failed,
            Outcome::Interrupted,
        ] {
            assert_eq!(outcome.as_str().parse::<Outcome>(), Ok(outcome));
        }
        assert!("done".parse::<Outcome>().is_err());
    }
}
