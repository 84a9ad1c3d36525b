//! `kaapi-deploy deploy ENV`: the whole pipeline.

use std::path::Path;

use kaapi_core::engine::ImageSource;
use kaapi_core::pipeline::{self, DeployPlan};

use super::{ctrl_c, finish_report};
use crate::cli::DeployArgs;
use crate::exit::CliResult;
use crate::output::ProgressPrinter;
use crate::{context, engines, gitinfo};

pub async fn run(config: Option<&Path>, args: &DeployArgs) -> CliResult {
    let loaded = context::load_config(config)?;
    context::environment(&loaded, &args.environment)?;
    let engine = engines::connect(&loaded, &args.environment).await?;
    let plan = DeployPlan {
        environment: args.environment.clone(),
        image: args
            .image
            .clone()
            .map(ImageSource::Existing)
            .unwrap_or(ImageSource::Build),
        meta: gitinfo::release_meta(&loaded.dir, None),
        owner: gitinfo::lock_owner(&loaded.dir),
        migrations: migrations_of(&loaded.config),
    };
    let report =
        pipeline::deploy(engine.as_ref(), &plan, &ProgressPrinter::new(), ctrl_c()).await?;
    finish_report(&report, args.json, engine.url())
}

/// The migrations step of a config: which service runs what.
pub fn migrations_of(config: &kaapi_core::config::Config) -> Option<(String, Vec<String>)> {
    let migrations = config.migrations.as_ref()?;
    let service = config.migrations_service()?;
    Some((service.to_owned(), migrations.command.argv().to_vec()))
}
