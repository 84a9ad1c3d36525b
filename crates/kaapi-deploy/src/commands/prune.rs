//! `kaapi-deploy prune ENV [--keep N] [--dry-run]`: removes what no kept release needs.

use std::path::Path;

use kaapi_core::prune::{self, PruneReport};

use crate::cli::PruneArgs;
use crate::exit::CliResult;
use crate::output::{bold, print_json, ProgressPrinter};
use crate::{engines, gitinfo, project};

pub async fn run(config: Option<&Path>, args: &PruneArgs) -> CliResult {
    let target = project::resolve(config, &args.environment)?;
    let engine = engines::connect(&target).await?;
    let owner = gitinfo::lock_owner(target.dir());
    let report = prune::run(
        engine.as_ref(),
        &owner,
        args.keep,
        args.dry_run,
        &ProgressPrinter::new(),
    )
    .await?;
    if args.json {
        print_json(&report)?;
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

/// The report for people: what stays, then one line per removed artifact.
pub fn render(report: &PruneReport) -> String {
    let kept: Vec<String> = report.kept_releases.iter().map(u64::to_string).collect();
    let mut text = format!(
        "{} `{}`: keeping release(s) {}\n",
        bold("prune"),
        report.environment,
        if kept.is_empty() {
            "none".to_owned()
        } else {
            kept.join(", ")
        }
    );
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    if report.removed.is_empty() {
        text.push_str("nothing to remove\n");
    }
    for item in &report.removed {
        let releases: Vec<String> = item.releases.iter().map(u64::to_string).collect();
        text.push_str(&format!(
            "{verb} {} {} (release {})\n",
            item.kind,
            item.id,
            releases.join(", ")
        ));
    }
    text
}
