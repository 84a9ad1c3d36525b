//! The long-running agent: keeps replicas alive, health-checks them, and serves the ingress.

pub mod api;
