//! `kaapi-deploy rollback ENV [--to N]`.

use std::path::Path;

use kaapi_core::pipeline::{self, Migrations, RollbackPlan};

use super::{ctrl_c, finish_report};
use crate::cli::RollbackArgs;
use crate::deploy_journal::Journaled;
use crate::exit::CliResult;
use crate::output::ProgressPrinter;
use crate::{engines, gitinfo, notify, project};

pub async fn run(config: Option<&Path>, args: &RollbackArgs) -> CliResult {
    let target = project::resolve(config, &args.environment)?;
    let engine = engines::connect(&target).await?;
    let plan = RollbackPlan {
        to: args.to,
        meta: gitinfo::release_meta(target.dir(), None),
        owner: gitinfo::lock_owner(target.dir()),
        schema: Migrations::of(target.config()).and_then(|m| m.schema),
        force: args.force,
    };
    notify::started(&target, "rollback", &plan.meta, None).await;
    let printer = ProgressPrinter::new();
    let state_dir = project::state_dir(target.loaded());
    let progress = Journaled::new(&printer, &state_dir, target.name(), "rollback");
    let report = pipeline::rollback(engine.as_ref(), &plan, &progress, ctrl_c()).await;
    drop(progress);
    let report = report?;
    notify::report(&target, "rollback", &report, &plan.meta, None).await;
    finish_report(&report, args.json, engine.url())
}
