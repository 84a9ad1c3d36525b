//! `kaapi-deploy migrate ENV`: only the migrations step, as a one-off task of the image built
//! from the current tree, under the environment's deploy lock. Nothing serving changes.

use std::path::Path;

use kaapi_core::pipeline::{self, MigratePlan, Migrations};

use crate::cli::EnvJsonArgs;
use crate::exit::{CliError, CliResult};
use crate::output::{green, print_diagnoses, print_json, red, ProgressPrinter};
use crate::{engines, gitinfo, project};

use super::ctrl_c;

pub async fn run(config: Option<&Path>, args: &EnvJsonArgs) -> CliResult {
    let target = project::resolve(config, &args.environment)?;
    let Some(migrations) = Migrations::of(target.config()) else {
        return Err(CliError::Usage(format!(
            "{} has no [migrations] command; add one, e.g. [migrations] command = \"alembic upgrade head\"",
            target.path().display()
        )));
    };
    let engine = engines::connect(&target).await?;
    let plan = MigratePlan {
        meta: gitinfo::release_meta(target.dir(), None),
        owner: gitinfo::lock_owner(target.dir()),
        migrations,
    };
    let exit = pipeline::migrate(engine.as_ref(), &plan, &ProgressPrinter::new(), ctrl_c()).await?;
    let command = &plan.migrations.command;
    if args.json {
        print_json(&exit)?;
    } else if exit.exit_code == 0 {
        println!(
            "{} `{}` exited with code 0",
            green("migrated:"),
            command.join(" ")
        );
    } else {
        if let Some(diagnosis) = &exit.diagnosis {
            print_diagnoses(std::slice::from_ref(diagnosis));
        }
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
