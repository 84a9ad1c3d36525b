//! The pure core of kaapi-deploy: the config and its checks, the naming convention,
//! environments and triggers, the pipeline as steps over the [`engine::Engine`] interface, and
//! the release records engines store. No I/O here beyond reading the config file.

pub mod check;
pub mod config;
pub mod diagnosis;
pub mod diagnostics;
pub mod engine;
pub mod envfile;
pub mod interpolate;
pub mod naming;
pub mod notify;
pub mod pipeline;
pub mod plan;
pub mod progress;
pub mod prune;
pub mod release;
pub mod release_history;
pub mod scaffold;
pub mod scaling;
pub mod schema;
pub mod secrets;
pub mod trigger;
pub mod vars;
