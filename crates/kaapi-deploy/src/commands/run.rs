//! `kaapi-deploy run ENV [--service S] -- CMD…`: a one-off task of the current release; exits
//! with the command's exit code.

use std::path::Path;

use kaapi_core::engine::TaskOn;

use super::ctrl_c;
use crate::cli::RunArgs;
use crate::exit::{CliError, CliResult};
use crate::output::{print_diagnoses, ProgressPrinter};
use crate::{engines, project};

/// Returns the command's exit code.
pub async fn run(config: Option<&Path>, args: &RunArgs) -> CliResult<i64> {
    let target = project::resolve(config, &args.environment)?;
    let service = project::service_or_web(&target, args.service.as_deref())?;
    let engine = engines::connect(&target).await?;
    let current = engine.current_release().await?.ok_or_else(|| {
        CliError::Failed(format!(
            "nothing is deployed to `{}` yet; run `kaapi-deploy deploy {}` first",
            args.environment, args.environment
        ))
    })?;
    let progress = ProgressPrinter::new();
    let task = engine.run_task(
        TaskOn::Release(&current),
        &service,
        &args.command,
        &progress,
    );
    // Ctrl-C stops the task too, so that none is left running behind the command.
    let exit = tokio::select! {
        exit = task => exit?,
        () = ctrl_c() => {
            engine.stop_tasks().await?;
            return Err(CliError::Failed("interrupted; the one-off task was stopped".to_owned()));
        }
    };
    if let Some(diagnosis) = &exit.diagnosis {
        print_diagnoses(std::slice::from_ref(diagnosis));
    }
    if let Some(reason) = &exit.reason {
        eprintln!("task stopped: {reason}");
    }
    Ok(exit.exit_code)
}
