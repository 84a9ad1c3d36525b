//! Why replicas and one-off tasks failed on the local engine: the agent reports the replicas
//! that failed a rollout (read before it removed them); after a failed verification, the
//! release's live replicas that are not healthy are read here.

use std::collections::HashMap;
use std::sync::Mutex;

use bollard::Docker;
use kaapi_agent::api::{EnvironmentState, FailedReplica};
use kaapi_agent::post_mortem;
use kaapi_core::diagnosis::{Diagnosis, Facts, LOG_LINES};

/// The diagnoses of failed rollouts, by release, until the pipeline asks for them.
#[derive(Debug, Default)]
pub struct FailedRollouts(Mutex<HashMap<u64, Vec<Diagnosis>>>);

impl FailedRollouts {
    pub fn keep(&self, release: u64, failed: &[FailedReplica]) {
        if let Ok(mut kept) = self.0.lock() {
            kept.insert(release, failed.iter().map(of_failed_replica).collect());
        }
    }

    pub fn take(&self, release: u64) -> Option<Vec<Diagnosis>> {
        self.0
            .lock()
            .ok()
            .and_then(|mut kept| kept.remove(&release))
    }
}

pub fn of_failed_replica(failed: &FailedReplica) -> Diagnosis {
    Facts {
        service: failed.service.clone(),
        replica: failed.container_name.clone(),
        reason: failed.reason.clone(),
        exit_code: failed.exit_code,
        oom_killed: failed.oom_killed,
        health_output: failed.last_probe.clone(),
        events: Vec::new(),
        logs: failed.logs.clone(),
    }
    .diagnose()
}

/// The release's replicas the agent does not see healthy, with how they ended and their last
/// lines; when every one looks healthy (the check from outside failed), all of them.
pub async fn live_replicas(
    docker: &Docker,
    state: &EnvironmentState,
    release: u64,
) -> Vec<Diagnosis> {
    let of_release: Vec<_> = state
        .replicas
        .iter()
        .filter(|r| r.release == release)
        .collect();
    let unhealthy: Vec<_> = of_release
        .iter()
        .filter(|r| r.healthy != Some(true))
        .copied()
        .collect();
    let chosen = if unhealthy.is_empty() {
        of_release
    } else {
        unhealthy
    };
    let mut found = Vec::new();
    for replica in chosen {
        let seen = post_mortem::read(docker, &replica.container_id, LOG_LINES).await;
        let reason = match (replica.healthy, seen.exit_code) {
            (_, Some(code)) => format!("exited (code {code})"),
            (Some(false), None) => "failed its health check".to_owned(),
            _ => "the verification from outside failed".to_owned(),
        };
        found.push(
            Facts {
                service: replica.service.clone(),
                replica: replica.container_name.clone(),
                reason,
                exit_code: seen.exit_code,
                oom_killed: seen.oom_killed,
                logs: seen.logs,
                ..Facts::default()
            }
            .diagnose(),
        );
    }
    found
}
