//! `kaapi-deploy secrets generate [-n N]` (and, later, `secrets push`).

use kaapi_core::secrets::generate_token;

use crate::cli::SecretsCommand;
use crate::exit::{CliError, CliResult};

pub fn run(command: &SecretsCommand) -> CliResult {
    match command {
        SecretsCommand::Generate { count } => generate(*count),
        SecretsCommand::Push { .. } => Err(CliError::Usage(
            "`secrets push` is not available in this build".to_owned(),
        )),
    }
}

/// Prints `count` tokens, one per line: 32 random bytes each, base64url without padding.
fn generate(count: u32) -> CliResult {
    if count == 0 {
        return Err(CliError::Usage(
            "-n must be 1 or more (the number of tokens to print)".to_owned(),
        ));
    }
    let tokens = (0..count)
        .map(|_| generate_token())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    println!("{}", tokens.join("\n"));
    Ok(())
}
