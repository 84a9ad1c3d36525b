//! `kaapi-deploy unlock ENV --force`.

use std::path::Path;

use crate::cli::UnlockArgs;
use crate::exit::{CliError, CliResult};
use crate::{engines, project};

pub async fn run(config: Option<&Path>, args: &UnlockArgs) -> CliResult {
    if !args.force {
        return Err(CliError::Usage(format!(
            "unlock removes the lock even if a deploy still runs; confirm with `kaapi-deploy unlock {} --force`",
            args.environment
        )));
    }
    let target = project::resolve(config, &args.environment)?;
    let engine = engines::connect(&target).await?;
    engine.force_unlock().await?;
    println!("environment `{}` unlocked", args.environment);
    Ok(())
}
