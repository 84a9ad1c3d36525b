//! What the page shows, gathered from the engines and the local agent: one [`Snapshot`] of every
//! environment, serialized as JSON for the page.

use chrono::{DateTime, Utc};
use kaapi_agent::api::{EnvironmentState, MetricsSample, MetricsSeries};
use kaapi_core::engine::{ServiceStatus, Traffic};
use kaapi_core::release::{Outcome, Release};
use serde::Serialize;

use crate::deploy_journal::DeployJournal;

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub generated_at: DateTime<Utc>,
    pub environments: Vec<EnvironmentView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentView {
    pub name: String,
    pub engine: String,
    pub url: Option<String>,
    /// Why part of the view is missing (engine unreachable, no credentials, …).
    pub error: Option<String>,
    pub current_release: Option<u64>,
    /// `healthy`, `degraded`, `down` or `unknown`.
    pub health: &'static str,
    pub services: Vec<ServiceStatus>,
    pub releases: Vec<ReleaseView>,
    pub deploy: Option<DeployView>,
    pub series: Option<MetricsSeries>,
}

/// One line of the release timeline.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseView {
    pub number: u64,
    pub outcome: Outcome,
    pub image: String,
    pub commit: String,
    pub version: Option<String>,
    pub author: String,
    pub created_at: DateTime<Utc>,
    /// From the deploy's start to its end, when the dashboard saw it end (or so far, while it
    /// runs).
    pub duration_secs: Option<f64>,
    pub rollback_of: Option<u64>,
    pub detail: Option<String>,
}

/// A deploy in progress: its phases and what the rollout said so far.
#[derive(Debug, Clone, Serialize)]
pub struct DeployView {
    /// `None` while the deploy has not registered its release yet (lock, build).
    pub release: Option<u64>,
    pub phases: Vec<PhaseView>,
    pub messages: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseView {
    pub name: String,
    /// `done`, `running`, `failed` or `pending`.
    pub state: &'static str,
}

/// The pipeline's phases as another process can see them: the build is done once the release is
/// registered; the rollout runs while the agent rolls it out; verification follows once it
/// serves.
const PHASES: [&str; 5] = ["build", "register", "migrate", "rollout", "verify"];

/// Where a registered release's deploy stands, from what the agent says.
pub fn deploy_view(
    release: &Release,
    agent: Option<&EnvironmentState>,
    rollout_messages: Vec<String>,
) -> DeployView {
    let rolling_out = !rollout_messages.is_empty();
    let serving = agent.and_then(|a| a.release) == Some(release.number);
    let running = if rolling_out {
        "rollout"
    } else if serving {
        "verify"
    } else {
        "migrate"
    };
    let running_at = PHASES.iter().position(|p| *p == running).unwrap_or(0);
    DeployView {
        release: Some(release.number),
        phases: PHASES
            .iter()
            .enumerate()
            .map(|(index, name)| PhaseView {
                name: (*name).to_owned(),
                state: match index.cmp(&running_at) {
                    std::cmp::Ordering::Less => "done",
                    std::cmp::Ordering::Equal => "running",
                    std::cmp::Ordering::Greater => "pending",
                },
            })
            .collect(),
        messages: rollout_messages,
    }
}

/// The deploy this machine runs now, phase by phase as its own process reports them (the
/// journal), with what the agent's rollout said so far.
pub fn journal_view(
    journal: &DeployJournal,
    release: Option<u64>,
    rollout_messages: Vec<String>,
) -> DeployView {
    DeployView {
        release,
        phases: journal
            .phases
            .iter()
            .map(|phase| PhaseView {
                name: phase.name.clone(),
                state: phase.state.as_str(),
            })
            .collect(),
        messages: rollout_messages,
    }
}

/// A remote engine's traffic in the shape the page plots (no release marks: CloudWatch does
/// not know which release served a minute).
pub fn series_of(environment: &str, traffic: Traffic) -> MetricsSeries {
    MetricsSeries {
        environment: environment.to_owned(),
        period_ms: traffic.period_secs.saturating_mul(1000),
        samples: traffic
            .samples
            .into_iter()
            .map(|s| MetricsSample {
                at: s.at,
                release: None,
                requests: s.requests,
                errors: s.errors,
                p50_ms: s.p50_ms,
                p99_ms: s.p99_ms,
            })
            .collect(),
    }
}

pub fn release_view(release: &Release, duration_secs: Option<f64>) -> ReleaseView {
    let digest = &release.image.digest;
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    ReleaseView {
        number: release.number,
        outcome: release.outcome,
        image: format!("sha256:{}", hex.chars().take(12).collect::<String>()),
        commit: release.meta.commit.clone(),
        version: release.meta.version.clone(),
        author: release.meta.author.clone(),
        created_at: release.meta.created_at,
        duration_secs,
        rollback_of: release.rollback_of,
        detail: release.detail.clone(),
    }
}

/// `healthy` when every service has all its replicas healthy, `down` when nothing runs.
pub fn health_of(services: &[ServiceStatus]) -> &'static str {
    if services.is_empty() {
        return "unknown";
    }
    if services
        .iter()
        .all(|s| s.desired > 0 && s.healthy >= s.desired)
    {
        "healthy"
    } else if services.iter().any(|s| s.running > 0) {
        "degraded"
    } else {
        "down"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kaapi_core::release::{ImageRef, ReleaseMeta};

    fn release(number: u64) -> Release {
        Release {
            number,
            environment: "local".to_owned(),
            image: ImageRef {
                reference: "img".to_owned(),
                digest: "sha256:0123456789abcdef0123".to_owned(),
                tags: vec![],
            },
            meta: ReleaseMeta {
                commit: "abc".to_owned(),
                version: None,
                author: "me".to_owned(),
                created_at: Utc::now(),
            },
            revisions: vec![],
            outcome: Outcome::InProgress,
            detail: None,
            rollback_of: None,
            schema_version: None,
        }
    }

    fn states(view: &DeployView) -> Vec<&str> {
        view.phases.iter().map(|p| p.state).collect()
    }

    #[test]
    fn a_registered_release_migrates_then_rolls_out_then_verifies() {
        let r = release(2);
        assert_eq!(
            states(&deploy_view(&r, None, vec![])),
            ["done", "done", "running", "pending", "pending"]
        );
        assert_eq!(
            states(&deploy_view(&r, None, vec!["started".to_owned()])),
            ["done", "done", "done", "running", "pending"]
        );
        let agent = EnvironmentState {
            environment: "local".to_owned(),
            release: Some(2),
            previous_release: Some(1),
            ingress_url: None,
            desired: Default::default(),
            replicas: vec![],
            warm: vec![],
            events: vec![],
            active_rollout: None,
        };
        assert_eq!(
            states(&deploy_view(&r, Some(&agent), vec![])),
            ["done", "done", "done", "done", "running"]
        );
        assert_eq!(release_view(&r, None).image, "sha256:0123456789ab");
    }
}
