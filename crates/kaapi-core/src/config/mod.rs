//! `deploy.toml`: its model, loading with file/line/key diagnostics, and validation.

mod command;
mod duration;
mod load;
mod model;
mod resolved;
mod source_map;
mod validate;

pub use command::CommandLine;
pub use duration::HumanDuration;
pub use load::{find_config, load, parse, ConfigError, LoadedConfig, CONFIG_FILE_NAME};
pub use model::*;
pub use resolved::{ResolvedEnvironment, UnknownEnvironment};
pub use source_map::SourceMap;
pub use validate::{is_valid_name, is_valid_variable_name, validate, ECS_MAX_STOP_TIMEOUT_SECS};
