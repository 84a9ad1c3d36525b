//! The long-running agent: keeps replicas alive, health-checks them, and drives the ingress
//! process that serves them.
//!
//! The engine talks to it through [`AgentClient`]; the CLI runs [`serve`] as
//! `kaapi-deploy agent run --state-dir D`, and [`serve_ingress`] as
//! `kaapi-deploy agent ingress --state-dir D` (started by the agent).

mod agent_log;
pub mod api;
mod client;
pub mod container;
pub mod container_logs;
mod converge;
mod docker;
mod error;
mod handshake;
mod health;
pub mod ingress;
mod ingress_sync;
mod metrics;
pub mod post_mortem;
pub mod private;
pub mod process;
mod reconcile;
mod replica;
mod rollout;
mod runtime;
mod server;
mod store;
mod warm;

pub use client::AgentClient;
pub use error::AgentError;
pub use ingress::{serve_ingress, IngressCommand};
pub use server::serve;
pub use store::stored_environments;
