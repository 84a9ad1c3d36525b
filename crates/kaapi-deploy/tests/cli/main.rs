//! The integration tests of kaapi-deploy: one binary, one module per area.

mod docker_support;
mod docker_warm_rollback;

mod agent_command;
mod agent_handshake;
mod completions;
mod config_init_check;
mod config_malformed;
mod dashboard;
mod docker_accessories;
mod docker_bench;
mod docker_deploy;
mod docker_diagnosis;
mod docker_down;
mod docker_exec;
mod docker_failures;
mod docker_ingresses;
mod docker_lock;
mod docker_migrate;
mod docker_plan;
mod docker_prune;
mod docker_registry;
mod docker_replicas;
mod docker_scale;
mod docker_schema_rollback;
mod faults_agent_kill;
mod faults_docker_restart;
mod faults_killed_cli;
mod faults_malformed_input;
mod faults_replica_kill;
#[cfg(feature = "ecs")]
mod infra_secrets_leak;
mod local_only;
mod soak;
mod state_private;
