//! The integration tests of kaapi-agent: one binary, one module per area.

mod agent_support;

mod agent_readiness;
mod agent_recovery;
mod agent_rollout;
mod agent_rollout_cutoff;
mod agent_warm;
