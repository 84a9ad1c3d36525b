//! `kaapi-deploy promote FROM TO`: copy the image FROM serves now into TO's repository by
//! digest (no rebuild) and deploy it there.

use std::path::Path;
use std::sync::Arc;

use kaapi_ci::github;
use kaapi_ci::promote::{self, PromoteError};
use kaapi_core::engine::ImageSource;
use kaapi_core::pipeline::{self, DeployPlan, Migrations};
use kaapi_core::release::ReleaseMeta;

use super::{ctrl_c, finish_report};
use crate::cli::PromoteArgs;
use crate::exit::{CliError, CliResult};
use crate::output::{green, ProgressPrinter};
use crate::{engines, gitinfo, project};

pub async fn run(config: Option<&Path>, args: &PromoteArgs) -> CliResult {
    let loaded = Arc::new(project::load_config(config)?);
    let source_target = project::resolve_in(loaded.clone(), &args.from)?;
    let target = project::resolve_in(loaded.clone(), &args.to)?;
    if args.from == args.to {
        return Err(CliError::Usage(format!(
            "promote copies between two environments; `{}` is given twice",
            args.from
        )));
    }
    let source = engines::connect(&source_target).await?;
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
    let engine = engines::connect(&target).await?;
    let plan = DeployPlan {
        image: ImageSource::Existing(promoted.reference),
        meta: ReleaseMeta {
            commit: release.meta.commit.clone(),
            version: release.meta.version.clone(),
            author: gitinfo::author(&loaded.dir),
            created_at: chrono::Utc::now(),
        },
        owner: gitinfo::lock_owner(&loaded.dir),
        migrations: Migrations::of(&loaded.config),
        force: false,
        services: Vec::new(),
    };
    let report =
        pipeline::deploy(engine.as_ref(), &plan, &ProgressPrinter::new(), ctrl_c()).await?;
    finish_report(&report, false, engine.url())
}
