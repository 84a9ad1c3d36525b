//! The local engine: the pipeline on the Docker Engine.

mod agent_link;
pub mod containers;
pub mod context;
pub mod docker;
pub mod dockerignore;
pub mod engine;
pub mod image;
pub mod lock;
pub mod observe;
pub mod revisions;
pub mod store;
pub mod task;
pub mod verify;

pub use engine::DockerEngine;
pub use image::{BuildSpec, DockerImageBuilder};
