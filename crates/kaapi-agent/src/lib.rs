//! The long-running agent: keeps replicas alive, health-checks them, and serves the ingress.
//!
//! The engine talks to it through [`AgentClient`]; the CLI runs [`serve`] as
//! `kaapi-deploy agent run --state-dir D`.

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
mod ingress;
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
pub use server::serve;
pub use store::stored_environments;
