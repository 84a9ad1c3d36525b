//! The local engine: the pipeline on the Docker Engine.

pub mod accessories;
mod accessory_plan;
pub mod accessory_spec;
mod agent_link;
pub mod build_context;
mod build_context_stream;
pub mod build_secrets;
mod buildkit;
mod buildkit_progress;
mod buildkit_solve;
pub mod containers;
pub mod diagnose;
pub mod docker;
pub mod dockerignore;
pub mod down;
pub mod engine;
pub mod exec;
pub mod history;
pub mod image;
pub mod lock;
pub mod logs;
pub mod network;
pub mod plan_view;
pub mod prune;
pub mod revisions;
pub mod scale;
mod scaling_store;
pub mod settle;
pub mod stats;
pub mod task;
pub mod verify;

pub use engine::DockerEngine;
pub use image::{BuildSpec, DockerImageBuilder};
