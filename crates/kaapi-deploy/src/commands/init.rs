//! `kaapi-deploy init [--force] [--dir D] [--app NAME]`: write a commented deploy.toml.

use crate::cli::InitArgs;
use crate::exit::{CliError, CliResult};

pub fn run(_args: &InitArgs) -> CliResult {
    Err(CliError::Usage("init: not yet".to_owned()))
}
