//! `kaapi-deploy deploy ENV`: the whole pipeline.

use std::path::Path;

use kaapi_core::engine::ImageSource;
use kaapi_core::pipeline::{self, DeployPlan, Migrations};

use super::{ctrl_c, finish_report};
use crate::cli::DeployArgs;
use crate::deploy_journal::Journaled;
use crate::exit::CliResult;
use crate::output::ProgressPrinter;
use crate::{engines, gitinfo, notify, project};

pub async fn run(config: Option<&Path>, args: &DeployArgs) -> CliResult {
    let target = project::resolve(config, &args.environment)?;
    for service in &args.services {
        project::known_service(&target, service)?;
    }
    let engine = engines::connect(&target).await?;
    let plan = DeployPlan {
        image: args
            .image
            .clone()
            .map(ImageSource::Existing)
            .unwrap_or(ImageSource::Build),
        meta: gitinfo::release_meta(target.dir(), gitinfo::release_version(&target)),
        owner: gitinfo::lock_owner(target.dir()),
        migrations: Migrations::of(target.config()),
        force: args.force,
        services: args.services.clone(),
    };
    notify::started(&target, "deploy", &plan.meta, None).await;
    let printer = ProgressPrinter::new();
    let state_dir = project::state_dir(target.loaded());
    let progress = Journaled::new(&printer, &state_dir, target.name(), "deploy");
    let report = pipeline::deploy(engine.as_ref(), &plan, &progress, ctrl_c()).await;
    drop(progress);
    let report = report?;
    notify::report(&target, "deploy", &report, &plan.meta, None).await;
    finish_report(&report, args.json, engine.url())
}
