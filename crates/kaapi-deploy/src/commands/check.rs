//! `kaapi-deploy check [ENV] [--json]`: validate deploy.toml, then every environment's
//! variables against `.env.example`, then (per engine) the prerequisites a deploy needs.

use std::path::{Path, PathBuf};

use kaapi_core::check::{self, CheckReport, Provision};
use kaapi_core::config::{self, ConfigError, EngineKind, ResolvedEnvironment};
use serde::Serialize;

use crate::cli::CheckArgs;
use crate::exit::{CliError, CliResult};
use crate::output::{self, green, red, yellow};
use crate::project;

/// The JSON form of a report, with its verdict up front.
#[derive(Serialize)]
struct JsonReport<'a> {
    ok: bool,
    errors: usize,
    warnings: usize,
    #[serde(flatten)]
    report: &'a CheckReport,
}

pub async fn run(config: Option<&Path>, args: &CheckArgs) -> CliResult {
    let path = config_path(config)?;
    let loaded = match config::load(&path) {
        Ok(loaded) => loaded,
        Err(error) => return Err(invalid_config(error, &path, args.json)),
    };
    let target = match &args.environment {
        Some(name) => Some(project::resolve_in(loaded.clone(), name)?),
        None => None,
    };
    let mut report = check::check(&loaded, args.environment.as_deref());
    if let Some(target) = target.filter(|_| !args.offline) {
        check_engine_prerequisites(&target, &mut report).await?;
    }
    if args.json {
        output::print_json(&JsonReport {
            ok: report.passed(),
            errors: report.errors(),
            warnings: report.warnings(),
            report: &report,
        })?;
    } else {
        print_text(&report);
    }
    if report.passed() {
        Ok(())
    } else {
        // The findings are the message; main prints nothing more.
        Err(CliError::Failed(String::new()))
    }
}

/// Prerequisites of one environment that only its engine can check, added to the report.
/// On ECS: cluster, repository, task definitions, services, log groups, roles, the GitHub OIDC
/// provider and deploy role, backing services and every referenced secret (names only). They
/// need AWS, so they run only when the environment is named (`check staging`), not for a
/// plain offline `check`. The docker engine needs nothing beyond `check::check`.
async fn check_engine_prerequisites(
    target: &ResolvedEnvironment,
    report: &mut CheckReport,
) -> CliResult {
    if target.env().engine == EngineKind::Docker {
        return Ok(());
    }
    #[cfg(not(feature = "ecs"))]
    {
        let name = target.name();
        let _ = report;
        Err(crate::engines::without_ecs(&format!(
            "checking the AWS prerequisites of `{name}` (`check {name} --offline` skips them)"
        )))
    }
    #[cfg(feature = "ecs")]
    {
        aws_prerequisites(target, report).await
    }
}

#[cfg(feature = "ecs")]
async fn aws_prerequisites(target: &ResolvedEnvironment, report: &mut CheckReport) -> CliResult {
    use kaapi_core::diagnostics::Diagnostic;
    use kaapi_infra::preflight::Status;

    let (path, name) = (target.path(), target.name());
    let aws = kaapi_aws::load(target.env(), None, &kaapi_aws::process_vars()).await?;
    let items = kaapi_infra::preflight::check_prerequisites(target, &aws).await;
    for item in items {
        let message = format!("{}: {}", item.name, item.detail);
        let diagnostic = match item.status {
            Status::Ok => continue,
            Status::Missing => Diagnostic::error(path, message),
            Status::Warning => Diagnostic::warning(path, message),
        };
        let diagnostic = match item.fix {
            Some(fix) => diagnostic.with_hint(fix),
            None => diagnostic,
        };
        report.push(Some(name), diagnostic);
    }
    Ok(())
}

fn config_path(explicit: Option<&Path>) -> CliResult<PathBuf> {
    match explicit {
        Some(path) => Ok(path.to_path_buf()),
        None => {
            let cwd = std::env::current_dir()
                .map_err(|e| CliError::Usage(format!("cannot read the current directory: {e}")))?;
            Ok(config::find_config(&cwd)?)
        }
    }
}

/// An invalid config is exit 2; with `--json` its diagnostics are printed as a report too.
fn invalid_config(error: ConfigError, path: &Path, json: bool) -> CliError {
    let ConfigError::Invalid { diagnostics, .. } = &error else {
        return error.into();
    };
    if !json {
        return error.into();
    }
    let mut report = CheckReport::new(path);
    for diagnostic in diagnostics {
        report.push(None, diagnostic.clone());
    }
    let printed = output::print_json(&JsonReport {
        ok: false,
        errors: report.errors(),
        warnings: report.warnings(),
        report: &report,
    });
    match printed {
        Ok(()) => CliError::Usage(String::new()),
        Err(e) => e,
    }
}

fn print_text(report: &CheckReport) {
    for finding in &report.findings {
        let line = finding.diagnostic.one_line();
        let line = match line.split_once(": ") {
            Some((level, rest)) if finding.diagnostic.is_error() => {
                format!("{} {rest}", red(&format!("{level}:")))
            }
            Some((level, rest)) => format!("{} {rest}", yellow(&format!("{level}:"))),
            None => line,
        };
        println!("{line}");
    }
    for env in &report.environments {
        let errors = report
            .findings
            .iter()
            .filter(|f| f.environment.as_deref() == Some(&env.name) && f.diagnostic.is_error())
            .count();
        let count = |wanted: fn(&Provision) -> bool| {
            env.variables
                .iter()
                .filter(|v| wanted(&v.provision))
                .count()
        };
        let summary = format!(
            "{} values, {} secrets, {} optional, {} missing",
            count(|p| matches!(p, Provision::Value { .. })),
            count(|p| matches!(p, Provision::Secret { .. })),
            count(|p| matches!(p, Provision::Optional)),
            count(|p| matches!(p, Provision::Missing)),
        );
        let verdict = if errors == 0 {
            green("ok")
        } else {
            red(&format!("{errors} error(s)"))
        };
        println!("{} ({}): {verdict}; {summary}", env.name, env.engine);
    }
    let (errors, warnings) = (report.errors(), report.warnings());
    if errors == 0 {
        println!("{} ({warnings} warning(s))", green("check passed"));
    } else {
        println!(
            "{}: {errors} error(s), {warnings} warning(s)",
            red("check failed")
        );
    }
}
