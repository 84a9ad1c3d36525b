//! `kaapi-deploy logs ENV [SERVICE] [--follow] [--since D]`.

use std::io::Write;
use std::path::Path;

use kaapi_core::engine::LogQuery;

use crate::cli::LogsArgs;
use crate::exit::{CliError, CliResult};
use crate::{engines, project};

pub async fn run(config: Option<&Path>, args: &LogsArgs) -> CliResult {
    let target = project::resolve(config, &args.environment)?;
    if let Some(service) = &args.service {
        project::known_service(&target, service)?;
    }
    let since = args
        .since
        .as_deref()
        .map(|s| {
            humantime::parse_duration(s).map_err(|e| {
                CliError::Usage(format!("--since `{s}`: {e}; write it like 10m or 2h"))
            })
        })
        .transpose()?;
    let engine = engines::connect(&target).await?;
    let query = LogQuery {
        service: args.service.clone(),
        since,
        follow: args.follow,
    };
    let sink = |line: kaapi_core::engine::LogLine| {
        let mut out = std::io::stdout().lock();
        let at = line
            .at
            .map(|t| t.format("%H:%M:%S%.3f ").to_string())
            .unwrap_or_default();
        let _ = writeln!(out, "{at}{} | {}", line.source, line.line);
    };
    tokio::select! {
        result = engine.logs(&query, &sink) => result?,
        () = super::ctrl_c() => {}
    }
    Ok(())
}
