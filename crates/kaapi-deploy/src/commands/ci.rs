//! `kaapi-deploy ci`: deploy from GitHub Actions. The git ref picks the environment (`main` →
//! staging, `vX.Y.Z` → production); a version tag promotes the image the source environment
//! built for the same commit unless `--rebuild`; outputs, summary and annotations go to GitHub.

use std::path::Path;

use kaapi_ci::choice::{build_choice, promotion_source};
use kaapi_ci::decide::{decide, CiDecision};
use kaapi_ci::github::{self, GithubContext, Vars};
use kaapi_ci::run::{report_no_deploy, report_setup_failure, run_ci, CiPlan};
use kaapi_core::config::LoadedConfig;
use kaapi_core::engine::{Engine, ImageSource, LockOwner};
use kaapi_core::pipeline::{DeployPlan, Migrations};
use kaapi_core::release::ReleaseMeta;

use super::ctrl_c;
use crate::cli::CiArgs;
use crate::exit::{CliError, CliResult};
use crate::output::{green, print_diagnoses, red, ProgressPrinter};
use crate::{engines, notify, project};

pub async fn run(config: Option<&Path>, args: &CiArgs) -> CliResult {
    let vars = github::process_vars();
    let ctx = GithubContext::from_vars(&vars).map_err(|e| CliError::Usage(e.to_string()))?;
    let loaded = project::load_config(config)?;
    if let Some(warning) = github::resource_prefix_warning(&vars, &loaded.config.app) {
        println!("{warning}");
    }
    let decision = decide(&loaded.config, &ctx.git_ref);
    let (environment, version) = match decision {
        CiDecision::Deploy {
            environment,
            version,
        } => (environment, version),
        CiDecision::Nothing { ref reason } | CiDecision::Refused { ref reason } => {
            let (code, annotations) = report_no_deploy(&ctx, &decision);
            for annotation in annotations {
                println!("{annotation}");
            }
            if code == 0 {
                println!("nothing to deploy: {reason}");
                return Ok(());
            }
            return Err(CliError::Usage(reason.clone()));
        }
    };
    eprintln!(
        "{} deploying `{environment}` for {} ({})",
        green("ci:"),
        ctx.git_ref,
        ctx.short_sha()
    );
    // Failures before the pipeline starts get an annotation too, so the run page says why.
    let (engine, plan) = match prepare(&loaded, &environment, version, args, &ctx, &vars).await {
        Ok(prepared) => prepared,
        Err(e) => {
            for annotation in report_setup_failure(&ctx, &environment, &e.to_string()) {
                println!("{annotation}");
            }
            return Err(e);
        }
    };
    let target = project::resolve_in(loaded.clone(), &environment)?;
    let run_url = ctx.run_url();
    notify::started(&target, "deploy", &plan.plan.meta, run_url.as_deref()).await;
    let outcome = run_ci(
        engine.as_ref(),
        &plan,
        &ctx,
        &ProgressPrinter::new(),
        ctrl_c(),
    )
    .await;
    for annotation in &outcome.annotations {
        println!("{annotation}");
    }
    if let Some(report) = &outcome.report {
        notify::report(
            &target,
            "deploy",
            report,
            &plan.plan.meta,
            run_url.as_deref(),
        )
        .await;
    }
    match (&outcome.report, &outcome.error) {
        (Some(report), _) if outcome.exit_code == 0 => {
            println!("{} {}", green("deployed:"), report.message);
            if let Some(url) = engine.url() {
                println!("{url}");
            }
            Ok(())
        }
        (Some(report), _) => {
            print_diagnoses(&report.diagnosis);
            eprintln!("{} {}", red("deploy failed:"), report.message);
            Err(CliError::Failed(String::new()))
        }
        (None, Some(error)) => Err(CliError::Failed(error.clone())),
        (None, None) => Err(CliError::Failed("the deploy failed".to_owned())),
    }
}

/// The engine of `environment` and the CI plan for this run.
async fn prepare(
    loaded: &LoadedConfig,
    environment: &str,
    version: Option<String>,
    args: &CiArgs,
    ctx: &GithubContext,
    vars: &Vars,
) -> CliResult<(Box<dyn Engine>, CiPlan)> {
    let (image, image_origin) =
        image_source(loaded, environment, version.is_some(), args, ctx, vars).await?;
    let engine = engines::connect(&project::resolve_in(loaded.clone(), environment)?).await?;
    let plan = CiPlan {
        plan: DeployPlan {
            image,
            meta: ReleaseMeta {
                commit: ctx.short_sha(),
                version,
                author: ctx.actor.clone(),
                created_at: chrono::Utc::now(),
            },
            owner: LockOwner {
                holder: format!("{} via GitHub Actions run {}", ctx.actor, ctx.run_id),
                url: ctx.run_url(),
            },
            migrations: Migrations::of(&loaded.config),
            force: false,
            services: Vec::new(),
        },
        image_origin,
    };
    Ok((engine, plan))
}

/// Build, or (a version tag of an environment that promotes) the source environment's image
/// of the same commit, copied by digest.
async fn image_source(
    loaded: &LoadedConfig,
    environment: &str,
    is_version: bool,
    args: &CiArgs,
    ctx: &GithubContext,
    vars: &Vars,
) -> CliResult<(ImageSource, String)> {
    let config = &loaded.config;
    let Some(from) = promotion_source(config, environment, is_version, args.rebuild) else {
        let choice = build_choice(config, environment, is_version, args.rebuild);
        return Ok((choice.source, choice.origin));
    };
    promoted_image(loaded, environment, &from, ctx, vars).await
}

#[cfg(not(feature = "ecs"))]
async fn promoted_image(
    _loaded: &LoadedConfig,
    environment: &str,
    from: &str,
    _ctx: &GithubContext,
    _vars: &Vars,
) -> CliResult<(ImageSource, String)> {
    Err(engines::without_ecs(&format!(
        "promoting `{from}`'s image into `{environment}`"
    )))
}

/// The source environment's image of this commit, copied by digest into `environment`.
#[cfg(feature = "ecs")]
async fn promoted_image(
    loaded: &LoadedConfig,
    environment: &str,
    from: &str,
    ctx: &GithubContext,
    vars: &Vars,
) -> CliResult<(ImageSource, String)> {
    let config = &loaded.config;
    let source_engine = engines::connect(&project::resolve_in(loaded.clone(), from)?).await?;
    let (choice, promoted) = kaapi_ci::promote::promoted_choice(
        config,
        environment,
        from,
        source_engine.as_ref(),
        &ctx.sha,
        vars,
    )
    .await
    .map_err(|e| CliError::Failed(e.to_string()))?;
    eprintln!(
        "{} {} ({}) as {}",
        green("ci:"),
        choice.origin,
        promoted.digest,
        promoted.reference
    );
    Ok((choice.source, choice.origin))
}
