//! `kaapi-deploy scale ENV SERVICE=N…`: new replica counts without a new release.

use std::path::Path;

use kaapi_core::pipeline;
use kaapi_core::scaling::{parse_requests, ScalingEvent};

use super::ctrl_c;
use crate::cli::ScaleArgs;
use crate::exit::{CliError, CliResult};
use crate::output::{green, print_json, ProgressPrinter};
use crate::{engines, gitinfo, project};

pub async fn run(config: Option<&Path>, args: &ScaleArgs) -> CliResult {
    let target = project::resolve(config, &args.environment)?;
    // Bad input fails before anything connects or locks.
    let requests =
        parse_requests(&target, &args.counts).map_err(|e| CliError::Usage(e.to_string()))?;
    let engine = engines::connect(&target).await?;
    let owner = gitinfo::lock_owner(target.dir());
    let events = pipeline::scale(
        engine.as_ref(),
        &requests,
        &owner,
        &ProgressPrinter::new(),
        ctrl_c(),
    )
    .await?;
    if args.json {
        return print_json(&events);
    }
    for event in &events {
        println!("{} {}", green("scaled:"), describe(event));
    }
    Ok(())
}

/// `backend 2 → 3 (release 4)`.
pub fn describe(event: &ScalingEvent) -> String {
    format!(
        "{} {} → {} (release {})",
        event.service, event.from, event.to, event.release
    )
}
