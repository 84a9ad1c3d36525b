//! `kaapi-deploy migrate ENV`: only the migrations step, as a one-off task of the image built
//! from the current tree, under the environment's deploy lock. Nothing serving changes.

use std::path::Path;

use kaapi_core::engine::{Engine, ImageSource};
use kaapi_core::progress::{Event, Phase, Progress};
use kaapi_core::release::{Outcome, Release};

use crate::cli::EnvJsonArgs;
use crate::exit::{CliError, CliResult};
use crate::output::{green, print_json, red, ProgressPrinter};
use crate::{context, engines, gitinfo};

use super::deploy::migrations_of;

pub async fn run(config: Option<&Path>, args: &EnvJsonArgs) -> CliResult {
    let loaded = context::load_config(config)?;
    context::environment(&loaded, &args.environment)?;
    let Some((service, command)) = migrations_of(&loaded.config) else {
        return Err(CliError::Usage(format!(
            "{} has no [migrations] command; add one, e.g. [migrations] command = \"alembic upgrade head\"",
            loaded.path.display()
        )));
    };
    let engine = engines::connect(&loaded, &args.environment).await?;
    let progress = ProgressPrinter::new();
    let token = engine
        .acquire_lock(&gitinfo::lock_owner(&loaded.dir), &progress)
        .await?;
    let result = migrate(
        engine.as_ref(),
        &loaded.dir,
        &args.environment,
        &service,
        &command,
        &progress,
    )
    .await;
    if let Err(e) = engine.release_lock(&token).await {
        progress.warning(format!("could not release the deploy lock: {e}"));
    }
    let exit = result?;
    if args.json {
        print_json(&exit)?;
    } else if exit.exit_code == 0 {
        println!(
            "{} `{}` exited with code 0",
            green("migrated:"),
            command.join(" ")
        );
    } else {
        let reason = exit
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        eprintln!(
            "{} `{}` exited with code {}{reason}; its output is above",
            red("migrations failed:"),
            command.join(" "),
            exit.exit_code
        );
    }
    if exit.exit_code == 0 {
        Ok(())
    } else {
        Err(CliError::Failed(String::new()))
    }
}

async fn migrate(
    engine: &dyn Engine,
    dir: &Path,
    environment: &str,
    service: &str,
    command: &[String],
    progress: &dyn Progress,
) -> CliResult<kaapi_core::engine::TaskExit> {
    let meta = gitinfo::release_meta(dir, None);
    progress.event(Event::PhaseStarted {
        phase: Phase::Build,
    });
    let image = engine
        .prepare_image(&ImageSource::Build, &meta, progress)
        .await?;
    // A transient release (number 0): never recorded, its revision derived from the config.
    let release = Release {
        number: 0,
        environment: environment.to_owned(),
        image,
        meta,
        revisions: Vec::new(),
        outcome: Outcome::InProgress,
        detail: None,
        rollback_of: None,
    };
    progress.event(Event::PhaseStarted {
        phase: Phase::Migrate,
    });
    Ok(engine
        .run_task(&release, service, command, progress)
        .await?)
}
