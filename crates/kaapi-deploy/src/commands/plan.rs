//! `kaapi-deploy plan ENV` (and `deploy ENV --dry-run`): what a deploy would change, without
//! changing anything. Exit 0 when nothing would change, [`CHANGES_PENDING`] when something would.

use std::path::Path;
use std::process::ExitCode;

use kaapi_core::engine::ImageSource;
use kaapi_core::pipeline::{self, Migrations, PreviewPlan};
use kaapi_core::plan::DeployPreview;

use crate::exit::{CliResult, CHANGES_PENDING};
use crate::output::{bold, green, print_json, yellow, ProgressPrinter};
use crate::{engines, gitinfo, project};

/// Plans a deploy of `environment` (of `image`, or of a build of the working tree).
pub async fn run(
    config: Option<&Path>,
    environment: &str,
    image: Option<&str>,
    json: bool,
) -> CliResult<ExitCode> {
    let target = project::resolve(config, environment)?;
    let engine = engines::connect(&target).await?;
    let plan = PreviewPlan {
        image: image
            .map(|i| ImageSource::Existing(i.to_owned()))
            .unwrap_or(ImageSource::Build),
        meta: gitinfo::release_meta(target.dir(), gitinfo::release_version(&target)),
        migrations: Migrations::of(target.config()),
    };
    let preview = pipeline::preview(engine.as_ref(), &plan, &ProgressPrinter::new()).await?;
    if json {
        print_json(&preview)?;
    } else {
        print!("{}", render(&preview));
    }
    Ok(if preview.unchanged() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(CHANGES_PENDING)
    })
}

/// The preview for people: the image, one line per change, the migrations.
pub fn render(preview: &DeployPreview) -> String {
    let serving = preview
        .current_release
        .map(|n| format!("release {n} serves now"))
        .unwrap_or_else(|| "nothing serves yet".to_owned());
    let mut text = format!(
        "{} `{}` ({serving})\n",
        bold("plan for"),
        preview.environment
    );
    if preview.unchanged() {
        text.push_str(&format!(
            "{} image {} and every service's settings equal what runs\n",
            green("no changes:"),
            preview.image_after
        ));
        return text;
    }
    let before = preview.image_before.as_deref().unwrap_or("none");
    text.push_str(&format!("image: {before} -> {}\n", preview.image_after));
    text.push_str(&format!("{}\n", yellow("changes:")));
    for change in &preview.changes {
        text.push_str(&format!("  {change}\n"));
    }
    match &preview.migrations {
        Some(command) => text.push_str(&format!(
            "migrations: `{}` runs before the rollout\n",
            command.join(" ")
        )),
        None => text.push_str("migrations: none configured\n"),
    }
    text
}
