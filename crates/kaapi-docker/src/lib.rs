//! The local engine: the pipeline on the Docker Engine.

pub mod agent;
