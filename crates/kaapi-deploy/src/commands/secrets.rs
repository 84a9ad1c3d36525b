//! `kaapi-deploy secrets generate [-n N]` and `secrets push ENV --from FILE`.

use std::path::Path;

use kaapi_core::secrets::generate_token;

use crate::cli::SecretsCommand;
use crate::exit::{CliError, CliResult};

pub async fn run(config: Option<&Path>, command: &SecretsCommand) -> CliResult {
    match command {
        SecretsCommand::Generate { count } => generate(*count),
        #[cfg(feature = "ecs")]
        SecretsCommand::Push { environment, from } => {
            super::secrets_push::run(config, environment, from).await
        }
        #[cfg(not(feature = "ecs"))]
        SecretsCommand::Push { .. } => {
            let _ = config;
            Err(crate::engines::without_ecs("`secrets push`"))
        }
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
