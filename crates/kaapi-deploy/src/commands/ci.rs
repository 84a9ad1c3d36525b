//! `kaapi-deploy ci`: deploy from GitHub Actions. The git ref picks the environment (`main` →
//! staging, `vX.Y.Z` → production); a version tag promotes the image the source environment
//! built for the same commit unless `--rebuild`; outputs, summary and annotations go to GitHub.

use std::path::Path;
use std::process::ExitCode;

use kaapi_ci::choice::{build_choice, promotion_source};
use kaapi_ci::decide::{decide, CiDecision};
use kaapi_ci::github::{self, GithubContext, Vars};
use kaapi_ci::run::{report_no_deploy, report_setup_failure, run_ci, CiPlan};
use kaapi_ci::summary;
use kaapi_core::config::LoadedConfig;
use kaapi_core::engine::{Engine, ImageSource, LockOwner};
use kaapi_core::pipeline::{self, DeployPlan, Migrations, PreviewPlan};
use kaapi_core::release::ReleaseMeta;

use super::ctrl_c;
use crate::cli::CiArgs;
use crate::exit::{CliError, CliResult, CHANGES_PENDING};
use crate::output::{green, print_diagnoses, red, ProgressPrinter};
use crate::{engines, notify, project};

/// What this run works on: the GitHub context, the config, and the environment the ref deploys
/// with its version.
struct CiRun {
    vars: Vars,
    ctx: GithubContext,
    loaded: LoadedConfig,
    environment: String,
    version: Option<String>,
}

/// The run the ref asks for; `None` when it deploys nothing (already reported to GitHub).
fn decide_run(config: Option<&Path>) -> CliResult<Option<CiRun>> {
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
                return Ok(None);
            }
            return Err(CliError::Usage(reason.clone()));
        }
    };
    Ok(Some(CiRun {
        vars,
        ctx,
        loaded,
        environment,
        version,
    }))
}

/// The engine and CI plan of `run`; a failure gets an annotation too, so the run page says why.
async fn prepare_reported(run: &CiRun, args: &CiArgs) -> CliResult<(Box<dyn Engine>, CiPlan)> {
    let prepared = prepare(
        &run.loaded,
        &run.environment,
        run.version.clone(),
        args,
        &run.ctx,
        &run.vars,
    )
    .await;
    if let Err(e) = &prepared {
        for annotation in report_setup_failure(&run.ctx, &run.environment, &e.to_string()) {
            println!("{annotation}");
        }
    }
    prepared
}

/// `ci --plan`: what the deploy of this ref would change, with the image it would deploy (for a
/// version tag, the promoted digest), in the step summary. Exit 0: nothing; 3: changes.
pub async fn plan(config: Option<&Path>, args: &CiArgs) -> CliResult<ExitCode> {
    let Some(run) = decide_run(config)? else {
        return Ok(ExitCode::SUCCESS);
    };
    eprintln!(
        "{} planning `{}` for {} ({})",
        green("ci:"),
        run.environment,
        run.ctx.git_ref,
        run.ctx.short_sha()
    );
    let (engine, ci) = prepare_reported(&run, args).await?;
    let preview_plan = PreviewPlan {
        image: ci.plan.image.clone(),
        meta: ci.plan.meta.clone(),
        migrations: ci.plan.migrations.clone(),
    };
    let preview = pipeline::preview(engine.as_ref(), &preview_plan, &ProgressPrinter::new())
        .await
        .inspect_err(|e| {
            for annotation in report_setup_failure(&run.ctx, &run.environment, &e.to_string()) {
                println!("{annotation}");
            }
        })?;
    print!("{}", super::plan::render(&preview));
    let markdown = summary::render_plan(&preview, &ci.image_origin);
    github::write_summary(&run.ctx, &markdown).map_err(|e| CliError::Failed(e.to_string()))?;
    Ok(if preview.unchanged() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(CHANGES_PENDING)
    })
}

pub async fn run(config: Option<&Path>, args: &CiArgs) -> CliResult {
    let Some(run) = decide_run(config)? else {
        return Ok(());
    };
    let (ctx, loaded, environment) = (&run.ctx, &run.loaded, &run.environment);
    eprintln!(
        "{} deploying `{environment}` for {} ({})",
        green("ci:"),
        ctx.git_ref,
        ctx.short_sha()
    );
    let (engine, plan) = prepare_reported(&run, args).await?;
    let target = project::resolve_in(loaded.clone(), environment)?;
    let run_url = ctx.run_url();
    notify::started(&target, "deploy", &plan.plan.meta, run_url.as_deref()).await;
    let outcome = run_ci(
        engine.as_ref(),
        &plan,
        ctx,
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
