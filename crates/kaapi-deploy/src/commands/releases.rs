//! `kaapi-deploy releases ENV [--json]`.

use std::path::Path;

use kaapi_core::release::Release;
use kaapi_core::scaling::ScalingEvent;

use super::scale;
use crate::cli::EnvJsonArgs;
use crate::exit::{CliError, CliResult};
use crate::output::{print_json, table};
use crate::{engines, project};

pub async fn run(config: Option<&Path>, args: &EnvJsonArgs) -> CliResult {
    let target = project::resolve(config, &args.environment)?;
    let engine = engines::connect(&target).await?;
    let releases = engine.releases().await?;
    let scaling = engine.scaling_events().await?;
    if args.json {
        return print_json(&with_scaling_events(&releases, &scaling)?);
    }
    if releases.is_empty() {
        println!(
            "no releases in `{}` yet; run `kaapi-deploy deploy {}`",
            args.environment, args.environment
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = releases
        .iter()
        .map(|r| {
            let mut outcome = r.outcome.to_string();
            if let Some(of) = r.rollback_of {
                outcome.push_str(&format!(" (rollback to {of})"));
            }
            vec![
                r.number.to_string(),
                outcome,
                short_digest(&r.image.digest),
                r.meta.commit.clone(),
                r.meta.version.clone().unwrap_or_else(|| "-".to_owned()),
                r.schema_version.clone().unwrap_or_else(|| "-".to_owned()),
                r.meta.author.clone(),
                r.meta
                    .created_at
                    .format("%Y-%m-%d %H:%M:%S UTC")
                    .to_string(),
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &["RELEASE", "OUTCOME", "IMAGE", "COMMIT", "VERSION", "SCHEMA", "AUTHOR", "TIME"],
            &rows
        )
    );
    if !scaling.is_empty() {
        println!("\nscaling events:");
        for event in scaling.iter().rev() {
            println!(
                "  {}  {} by {}",
                event.at.format("%Y-%m-%d %H:%M:%S UTC"),
                scale::describe(event),
                event.author
            );
        }
    }
    Ok(())
}

/// Each release as JSON with the scaling events made while it served (`scaling_events`,
/// oldest first).
fn with_scaling_events(
    releases: &[Release],
    scaling: &[ScalingEvent],
) -> Result<Vec<serde_json::Value>, CliError> {
    releases
        .iter()
        .map(|release| {
            let mut value = serde_json::to_value(release)
                .map_err(|e| CliError::Failed(format!("cannot render release: {e}")))?;
            let events: Vec<&ScalingEvent> = scaling
                .iter()
                .filter(|e| e.release == release.number)
                .collect();
            if let Some(object) = value.as_object_mut() {
                object.insert(
                    "scaling_events".to_owned(),
                    serde_json::to_value(events)
                        .map_err(|e| CliError::Failed(format!("cannot render events: {e}")))?,
                );
            }
            Ok(value)
        })
        .collect()
}

fn short_digest(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    format!("sha256:{}", hex.chars().take(12).collect::<String>())
}
