//! `kaapi-deploy run ENV [--service S] [--release N] -- CMD…`: a one-off task of the current
//! release (or of release N); exits with the command's exit code.

use std::path::Path;

use kaapi_core::engine::{Engine, EngineError, TaskOn};
use kaapi_core::release::Release;

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
    let release = release_to_run(engine.as_ref(), &args.environment, args.release).await?;
    let progress = ProgressPrinter::new();
    let task = engine.run_task(
        TaskOn::Release(&release),
        &service,
        &args.command,
        &progress,
    );
    // Ctrl-C stops the task too, so that none is left running behind the command.
    let exit = tokio::select! {
        exit = task => exit.map_err(|e| on_release(e, args.release))?,
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

/// Release `number` when asked for (an unknown one is a usage error), else the serving one.
async fn release_to_run(
    engine: &dyn Engine,
    environment: &str,
    number: Option<u64>,
) -> CliResult<Release> {
    let Some(number) = number else {
        return engine.current_release().await?.ok_or_else(|| {
            CliError::Failed(format!(
                "nothing is deployed to `{environment}` yet; run `kaapi-deploy deploy {environment}` first"
            ))
        });
    };
    engine
        .releases()
        .await?
        .into_iter()
        .find(|release| release.number == number)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "`{environment}` has no release {number}; `kaapi-deploy releases {environment}` lists them"
            ))
        })
}

/// Names the release asked for when what it needs is gone (a pruned image or revision).
fn on_release(error: EngineError, number: Option<u64>) -> CliError {
    match (error, number) {
        (EngineError::NotFound { message }, Some(number)) => {
            CliError::Failed(format!("cannot run on release {number}: {message}"))
        }
        (error, _) => error.into(),
    }
}
