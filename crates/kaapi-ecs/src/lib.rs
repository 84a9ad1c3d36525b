//! The `ecs` engine of kaapi-deploy: the deploy pipeline on AWS ECS and ECR through the
//! official AWS SDK for Rust. See docs/ecs.md.

pub mod adopt;
pub mod adopt_config;
pub mod aws;
mod backoff;
pub mod diagnose;
mod engine;
pub mod error;
pub mod exec;
pub mod history;
pub mod image;
pub mod lock;
pub mod log_groups;
pub mod logs;
pub mod metrics;
mod one_off;
pub mod pacing;
pub mod plan_view;
pub mod prune;
pub mod release_tags;
mod retry;
pub mod revisions;
pub mod rollout;
pub mod scale;
pub mod session;
pub mod settle;
pub mod status;
pub mod target;
pub mod task;
pub mod tuning;
pub mod verify;

pub use aws::AwsClients;
pub use engine::{tuning_for, EcsEngine};
pub use target::Target;
pub use tuning::Tuning;
