//! The desired state the agent restores after a restart: one record per environment, written
//! atomically to `{state_dir}/agent-state.json` with mode 0600 (it holds environment values).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::api::EnvironmentSpec;
use super::error::AgentError;

/// What a completed rollout leaves behind for one environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentRecord {
    /// The running release; `ingress_port` is always set here.
    pub spec: EnvironmentSpec,
    pub previous_release: Option<u64>,
    /// By service: the release labels of its serving replicas other than the spec's (warm
    /// replicas a rollback switched back to, replicas a rollout kept unchanged or resized).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub replica_releases: BTreeMap<String, Vec<u64>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    environments: BTreeMap<String, EnvironmentRecord>,
}

pub struct Store {
    path: PathBuf,
    state: Mutex<StateFile>,
}

impl Store {
    pub fn open(state_dir: &Path) -> Result<Self, AgentError> {
        let path = state_dir.join("agent-state.json");
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                AgentError::Invalid(format!(
                    "{} is not valid agent state ({e}); move it away to start from scratch",
                    path.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateFile::default(),
            Err(e) => return Err(AgentError::io("cannot read", &path, e)),
        };
        Ok(Store {
            path,
            state: Mutex::new(state),
        })
    }

    pub fn records(&self) -> BTreeMap<String, EnvironmentRecord> {
        self.lock().environments.clone()
    }

    pub fn record(&self, environment: &str) -> Option<EnvironmentRecord> {
        self.lock().environments.get(environment).cloned()
    }

    pub fn put(&self, record: EnvironmentRecord) -> Result<(), AgentError> {
        let mut state = self.lock();
        state
            .environments
            .insert(record.spec.environment.clone(), record);
        write_private(&self.path, &serde_json::to_vec_pretty(&*state)?)
    }

    pub fn remove(&self, environment: &str) -> Result<(), AgentError> {
        let mut state = self.lock();
        if state.environments.remove(environment).is_some() {
            write_private(&self.path, &serde_json::to_vec_pretty(&*state)?)?;
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StateFile> {
        // The state is plain data: a panic elsewhere cannot leave it half-updated.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The environments whose desired state the agent of `state_dir` keeps (and restores when it
/// starts again).
pub fn stored_environments(state_dir: &Path) -> Result<Vec<String>, AgentError> {
    Ok(Store::open(state_dir)?.records().into_keys().collect())
}

/// Writes `bytes` to `path` privately and atomically (see [`crate::private::write_file`]).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
    Ok(crate::private::write_file(path, bytes)?)
}
