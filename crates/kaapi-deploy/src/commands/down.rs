//! `kaapi-deploy down ENV [--volumes] [--yes]`: stops and removes what a docker environment
//! runs, under the deploy lock; the release history and the images stay.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use kaapi_core::config::{EngineKind, ResolvedEnvironment};
use kaapi_core::engine::Engine;
use kaapi_core::progress::Progress;
use kaapi_docker::down::DownReport;

use crate::cli::DownArgs;
use crate::exit::{CliError, CliResult};
use crate::output::{bold, print_json, ProgressPrinter};
use crate::{engines, gitinfo, project};

pub async fn run(config: Option<&Path>, args: &DownArgs) -> CliResult {
    let target = project::resolve(config, &args.environment)?;
    if target.env().engine != EngineKind::Docker {
        return Err(not_local(&target));
    }
    if !args.yes && std::io::stdin().is_terminal() && !confirmed(&target, args.volumes)? {
        return Err(CliError::Failed("nothing was removed".to_owned()));
    }
    let engine = engines::connect_docker(&target).await?;
    let progress = ProgressPrinter::new();
    let owner = gitinfo::lock_owner(target.dir());
    let token = engine.acquire_lock(&owner, &progress).await?;
    let result = engine.down(args.volumes, &progress).await;
    if let Err(e) = engine.release_lock(&token).await {
        progress.warning(format!("could not release the deploy lock: {e}"));
    }
    let report = result?;
    if args.json {
        print_json(&report)?;
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

/// ECS environments are torn down with the CloudFormation stack that created them.
fn not_local(target: &ResolvedEnvironment) -> CliError {
    CliError::Usage(format!(
        "`{env}` runs on {engine}: `down` stops local (docker) environments only. On ECS the \
         services belong to the CloudFormation stack made from `kaapi-deploy infra template {env}`: \
         delete that stack (`aws cloudformation delete-stack --stack-name STACK`), or scale its \
         services to 0 in the stack's parameters",
        env = target.name(),
        engine = target.env().engine,
    ))
}

fn confirmed(target: &ResolvedEnvironment, volumes: bool) -> CliResult<bool> {
    let what = if volumes {
        "every container, the network and the volumes (data included)"
    } else {
        "every container and the network (volumes are kept)"
    };
    eprint!(
        "remove {what} of `{}`? The release history stays. [y/N] ",
        target.name()
    );
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::Failed(format!("cannot read the answer: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// The report for people.
pub fn render(report: &DownReport) -> String {
    let mut text = format!("{} `{}`\n", bold("down"), report.environment);
    if report.agent_removed_environment {
        text.push_str("replicas and ingresses removed by the agent\n");
    }
    if report.agent_stopped {
        text.push_str(
            "agent stopped, and its ingress process (they served no other environment)\n",
        );
    } else if !report.agent_still_serves.is_empty() {
        text.push_str(&format!(
            "agent keeps running for {}\n",
            report.agent_still_serves.join(", ")
        ));
    }
    for name in &report.containers {
        text.push_str(&format!("removed container {name}\n"));
    }
    if report.network_removed {
        text.push_str("removed network\n");
    }
    for name in &report.volumes {
        text.push_str(&format!("removed volume {name}\n"));
    }
    text.push_str(
        "release history and images kept: the next deploy starts the environment again\n",
    );
    text
}
