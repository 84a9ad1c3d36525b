//! The control protocol between the agent and the ingress process: one JSON request per line on
//! `{state_dir}/ingress.sock` (mode 0600 in the 0700 state directory), one JSON answer per line.
//! Kept small so that it rarely changes: an agent finding an ingress of another [`PROTOCOL`]
//! replaces it (a short outage), so `hello` and its answer keep their shape in every version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::metrics::RawCounts;

/// Bumped only when a request or answer changes shape.
pub const PROTOCOL: u32 = 1;
pub const SOCKET_FILE: &str = "ingress.sock";
/// The running ingress process: [`Record`], private like agent.json.
pub const RECORD_FILE: &str = "ingress.json";
pub const LOCK_FILE: &str = "ingress.lock";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub pid: u32,
    pub protocol: u32,
    pub socket: std::path::PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Hello,
    /// Replaces the whole table of the listener on `port`, opening it first when absent
    /// (`port` 0: on any free port). `label` names its owner (`environment/service`); a
    /// listener of another owner is never taken over.
    Put {
        port: u16,
        label: String,
        backends: Vec<Backend>,
    },
    /// Closes the listener on `port` (its open connections finish gracefully).
    Remove {
        port: u16,
    },
    /// Requests in flight per backend name, across every listener.
    InFlight,
    /// Cumulative counters per listener port and release.
    Counters,
    /// Closes every listener and exits.
    Stop,
}

/// One replica a listener may send traffic to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    /// The replica's container name (unique: it carries a per-environment index).
    pub name: String,
    pub release: u64,
    /// Its published port on 127.0.0.1.
    pub port: Option<u16>,
    /// Healthy and not draining, as the agent sees it.
    pub serving: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Hello(Hello),
    Port {
        port: u16,
    },
    Done,
    InFlight {
        backends: BTreeMap<String, u64>,
    },
    Counters {
        listeners: BTreeMap<u16, Vec<(Option<u64>, RawCounts)>>,
    },
    Error {
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub pid: u32,
    pub protocol: u32,
    /// Open listeners: port and label.
    #[serde(default)]
    pub listeners: BTreeMap<u16, String>,
}
