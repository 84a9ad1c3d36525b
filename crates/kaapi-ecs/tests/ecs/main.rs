//! The integration tests of kaapi-ecs: one binary, one module per area.

mod support;

mod adopt_on_moto;
mod call_counts;
mod dashboard_history;
mod exec_scripted;
mod iam_conformance;
mod moto_contract;
mod moto_lock;
mod moto_plan;
mod prune_scenario;
mod registry_override;
mod run_release;
mod scale_scenario;
mod scenarios;
mod schema_rollback;
mod settle_scenario;
