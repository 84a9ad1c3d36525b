//! `kaapi-deploy secrets push ENV --from FILE`: names only are printed, never values.

use std::path::Path;

use kaapi_infra::secrets_push::{push_secrets, PushError};

use crate::exit::{CliError, CliResult};
use crate::output::yellow;
use crate::project;

pub async fn run(config: Option<&Path>, environment: &str, from: &Path) -> CliResult {
    let target = project::resolve(config, environment)?;
    let aws = kaapi_aws::load(target.env(), None, &kaapi_aws::process_vars()).await?;
    let report = push_secrets(&target, from, &aws)
        .await
        .map_err(|e| match e {
            PushError::Aws { .. } => CliError::Failed(e.to_string()),
            _ => CliError::Usage(e.to_string()),
        })?;
    for name in &report.undeclared {
        eprintln!(
            "{} {name} is not declared in `secrets` of {}; not pushed",
            yellow("warning:"),
            target.path().display()
        );
    }
    for name in &report.absent {
        eprintln!(
            "{} secret {name} is not set in {}; not pushed",
            yellow("warning:"),
            from.display()
        );
    }
    for name in &report.pushed {
        println!("pushed {name}");
    }
    Ok(())
}
