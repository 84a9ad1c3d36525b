//! `kaapi-deploy releases ENV [--json]`.

use std::path::Path;

use crate::cli::EnvJsonArgs;
use crate::exit::CliResult;
use crate::output::{print_json, table};
use crate::{engines, project};

pub async fn run(config: Option<&Path>, args: &EnvJsonArgs) -> CliResult {
    let target = project::resolve(config, &args.environment)?;
    let engine = engines::connect(&target).await?;
    let releases = engine.releases().await?;
    if args.json {
        return print_json(&releases);
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
    Ok(())
}

fn short_digest(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    format!("sha256:{}", hex.chars().take(12).collect::<String>())
}
