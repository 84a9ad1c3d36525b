//! `kaapi-deploy man`: the man page generated from the CLI definition, so it documents every
//! command and flag of this very binary.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::{Cli, ManArgs};
use crate::exit::{CliError, CliResult};

pub fn run(args: &ManArgs) -> CliResult {
    let command = Cli::command();
    match &args.out_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| CliError::Failed(format!("cannot create {}: {e}", dir.display())))?;
            clap_mangen::generate_to(command, dir).map_err(|e| {
                CliError::Failed(format!("cannot write man pages to {}: {e}", dir.display()))
            })?;
            println!("man pages written to {}", dir.display());
            Ok(())
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .map_err(|e| CliError::Failed(format!("cannot render the man page: {e}")))?;
            std::io::stdout()
                .write_all(&page)
                .map_err(|e| CliError::Failed(format!("cannot write the man page: {e}")))
        }
    }
}
