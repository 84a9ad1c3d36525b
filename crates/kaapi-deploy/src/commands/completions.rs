//! `kaapi-deploy completions SHELL`: a completion script generated from the CLI definition, so
//! it always knows every command and flag of this binary.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{Cli, CompletionsArgs};
use crate::exit::{CliError, CliResult};

pub fn run(args: &CompletionsArgs) -> CliResult {
    let mut command = Cli::command();
    let name = command.get_name().to_owned();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, name.as_str(), &mut script);
    let mut script = String::from_utf8_lossy(&script).into_owned();
    if args.shell == Shell::Bash {
        // clap_complete's bash script spells the states of a hyphenated binary's subcommands
        // two ways (`kaapi__deploy__subcmd__plan` in its dispatch loop, `kaapi__subcmd__deploy…`
        // in its case arms), so no subcommand's flags ever complete; use the loop's spelling.
        script = script.replace(&name.replace('-', "__subcmd__"), &name.replace('-', "__"));
    }
    std::io::stdout()
        .write_all(script.as_bytes())
        .map_err(|e| CliError::Failed(format!("cannot write the completion script: {e}")))
}
