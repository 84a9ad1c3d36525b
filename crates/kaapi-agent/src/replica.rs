//! One running replica as the agent sees it: identity, health, in-flight requests.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::task::AbortHandle;

use super::api::{ReplicaPhase, ReplicaState};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Not healthy yet (web: no successful probe so far).
    Starting,
    Healthy,
    /// Failed `retries` consecutive probes; holds the last probe result.
    Unhealthy(String),
    Exited(Option<i64>),
    Vanished,
}

pub struct Replica {
    pub container_id: String,
    pub name: String,
    pub service: String,
    pub release: u64,
    pub host_port: Option<u16>,
    pub started: Instant,
    /// Requests in flight on it, as the ingress last reported while it drained.
    in_flight: AtomicU64,
    draining: AtomicBool,
    health: Mutex<Health>,
    last_probe: Mutex<Option<String>>,
    monitor: Mutex<Option<AbortHandle>>,
}

impl Replica {
    pub fn new(
        container_id: String,
        name: String,
        service: String,
        release: u64,
        host_port: Option<u16>,
        health: Health,
    ) -> Self {
        Replica {
            container_id,
            name,
            service,
            release,
            host_port,
            started: Instant::now(),
            in_flight: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            health: Mutex::new(health),
            last_probe: Mutex::new(None),
            monitor: Mutex::new(None),
        }
    }

    pub fn health(&self) -> Health {
        lock(&self.health).clone()
    }

    pub fn set_health(&self, health: Health) {
        *lock(&self.health) = health;
    }

    pub fn last_probe(&self) -> Option<String> {
        lock(&self.last_probe).clone()
    }

    pub fn set_last_probe(&self, probe: String) {
        *lock(&self.last_probe) = Some(probe);
    }

    /// Whether the ingress may send it a request (it also skips, for a moment, one that
    /// refused a connection).
    pub fn is_serving(&self) -> bool {
        self.health() == Health::Healthy && !self.draining.load(Ordering::SeqCst)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Back in rotation (a warm replica its release's rollback switches to).
    pub fn resume(&self) {
        self.draining.store(false, Ordering::SeqCst);
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub fn set_in_flight(&self, count: u64) {
        self.in_flight.store(count, Ordering::SeqCst);
    }

    /// Why this replica must be replaced, if it must.
    pub fn failure(&self) -> Option<String> {
        match self.health() {
            Health::Starting | Health::Healthy => None,
            Health::Unhealthy(probe) => Some(format!("failed its health check: {probe}")),
            Health::Exited(Some(code)) => Some(format!("exited (code {code})")),
            Health::Exited(None) => Some("exited".to_owned()),
            Health::Vanished => Some("vanished (container removed)".to_owned()),
        }
    }

    pub fn set_monitor(&self, handle: AbortHandle) {
        *lock(&self.monitor) = Some(handle);
    }

    /// Stops watching it (it is being removed).
    pub fn stop_monitor(&self) {
        if let Some(handle) = lock(&self.monitor).take() {
            handle.abort();
        }
    }

    pub fn to_state(&self) -> ReplicaState {
        let health = self.health();
        let state = if self.draining.load(Ordering::SeqCst) {
            ReplicaPhase::Draining
        } else {
            match health {
                Health::Starting => ReplicaPhase::Starting,
                Health::Healthy | Health::Unhealthy(_) => ReplicaPhase::Running,
                Health::Exited(_) | Health::Vanished => ReplicaPhase::Exited,
            }
        };
        ReplicaState {
            container_id: self.container_id.clone(),
            container_name: self.name.clone(),
            service: self.service.clone(),
            release: self.release,
            state: state.to_owned(),
            healthy: match health {
                Health::Healthy => Some(true),
                Health::Starting => None,
                _ => Some(false),
            },
            host_port: self.host_port,
            in_flight: self.in_flight(),
            warm_until: None,
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop_monitor();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
