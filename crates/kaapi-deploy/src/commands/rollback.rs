//! `kaapi-deploy rollback ENV [--to N]`.

use std::path::Path;

use kaapi_core::pipeline;

use super::finish_report;
use crate::cli::RollbackArgs;
use crate::exit::CliResult;
use crate::output::ProgressPrinter;
use crate::{context, engines, gitinfo};

pub async fn run(config: Option<&Path>, args: &RollbackArgs) -> CliResult {
    let loaded = context::load_config(config)?;
    let engine = engines::connect(&loaded, &args.environment).await?;
    let report = pipeline::rollback(
        engine.as_ref(),
        &args.environment,
        args.to,
        &gitinfo::lock_owner(&loaded.dir),
        &gitinfo::release_meta(&loaded.dir, None),
        &ProgressPrinter::new(),
    )
    .await?;
    finish_report(&report, args.json, engine.url())
}
