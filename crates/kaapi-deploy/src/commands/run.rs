//! `kaapi-deploy run ENV [--service S] -- CMD…`: a one-off task of the current release; exits
//! with the command's exit code.

use std::path::Path;

use crate::cli::RunArgs;
use crate::exit::{CliError, CliResult};
use crate::output::ProgressPrinter;
use crate::{context, engines};

/// Returns the command's exit code.
pub async fn run(config: Option<&Path>, args: &RunArgs) -> CliResult<i64> {
    let loaded = context::load_config(config)?;
    let service = match &args.service {
        Some(s) if loaded.config.services.contains_key(s) => s.clone(),
        Some(s) => {
            return Err(CliError::Usage(format!(
                "no service `{s}` in {}; services: {}",
                loaded.path.display(),
                loaded
                    .config
                    .services
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
        None => loaded
            .config
            .web_service()
            .map(|(n, _)| n.to_owned())
            .or_else(|| loaded.config.services.keys().next().cloned())
            .ok_or_else(|| CliError::Usage("the config has no service".to_owned()))?,
    };
    let engine = engines::connect(&loaded, &args.environment).await?;
    let current = engine.current_release().await?.ok_or_else(|| {
        CliError::Failed(format!(
            "nothing is deployed to `{}` yet; run `kaapi-deploy deploy {}` first",
            args.environment, args.environment
        ))
    })?;
    let exit = engine
        .run_task(&current, &service, &args.command, &ProgressPrinter::new())
        .await?;
    if let Some(reason) = &exit.reason {
        eprintln!("task stopped: {reason}");
    }
    Ok(exit.exit_code)
}
