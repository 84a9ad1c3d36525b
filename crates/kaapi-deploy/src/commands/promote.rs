//! `kaapi-deploy promote FROM TO`: copy the image FROM serves now into TO's repository by
//! digest (no rebuild) and deploy it there.

use std::path::Path;

use kaapi_ci::github;
use kaapi_ci::promote::{self, PromoteError};
use kaapi_core::engine::ImageSource;
use kaapi_core::pipeline::{self, DeployPlan};
use kaapi_core::release::ReleaseMeta;

use super::deploy::migrations_of;
use super::{ctrl_c, finish_report};
use crate::cli::PromoteArgs;
use crate::exit::{CliError, CliResult};
use crate::output::{green, ProgressPrinter};
use crate::{context, engines, gitinfo};

pub async fn run(config: Option<&Path>, args: &PromoteArgs) -> CliResult {
    let loaded = context::load_config(config)?;
    context::environment(&loaded, &args.from)?;
    context::environment(&loaded, &args.to)?;
    if args.from == args.to {
        return Err(CliError::Usage(format!(
            "promote copies between two environments; `{}` is given twice",
            args.from
        )));
    }
    let source = engines::connect(&loaded, &args.from).await?;
    let release = source.current_release().await?.ok_or_else(|| {
        CliError::Failed(
            PromoteError::NothingServes {
                environment: args.from.clone(),
            }
            .to_string(),
        )
    })?;
    let vars = github::process_vars();
    let promoted = promote::promote_release_to(&loaded.config, &args.to, &release, &vars)
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let copied = match &promoted.copy {
        Some(copy) => format!(
            "copied ({} blobs uploaded, {} mounted, {} already there)",
            copy.uploaded, copy.mounted, copy.present
        ),
        None => "nothing to copy".to_owned(),
    };
    eprintln!(
        "{} `{}` release {} ({}) → {}: {copied}",
        green("promote:"),
        args.from,
        release.number,
        promoted.digest,
        promoted.reference
    );
    let engine = engines::connect(&loaded, &args.to).await?;
    let plan = DeployPlan {
        environment: args.to.clone(),
        image: ImageSource::Existing(promoted.reference),
        meta: ReleaseMeta {
            commit: release.meta.commit.clone(),
            version: release.meta.version.clone(),
            author: gitinfo::author(&loaded.dir),
            created_at: chrono::Utc::now(),
        },
        owner: gitinfo::lock_owner(&loaded.dir),
        migrations: migrations_of(&loaded.config),
    };
    let report =
        pipeline::deploy(engine.as_ref(), &plan, &ProgressPrinter::new(), ctrl_c()).await?;
    finish_report(&report, false, engine.url())
}
