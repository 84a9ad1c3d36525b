//! `kaapi-deploy accessory start|stop|restart|logs|status ENV [NAME]`: the backing services
//! (database, cache, broker) of a docker environment, outside a deploy.

use std::io::Write;
use std::path::Path;

use kaapi_core::config::{EngineKind, ResolvedEnvironment};
use kaapi_core::engine::LogQuery;
use kaapi_docker::accessories::{self, Owner};
use kaapi_docker::accessory_spec::{self, AccessorySpec};

use crate::cli::{AccessoryAction, AccessoryArgs};
use crate::exit::{CliError, CliResult};
use crate::output::{self, green, ProgressPrinter};
use crate::project;

pub async fn run(config: Option<&Path>, args: &AccessoryArgs) -> CliResult {
    let target = project::resolve(config, &args.environment)?;
    if target.env().engine != EngineKind::Docker {
        return Err(CliError::Usage(format!(
            "`{}` runs on {}: accessories run on the docker engine only; on ECS use managed services (RDS, ElastiCache, Amazon MQ), which `kaapi-deploy check {}` verifies",
            target.name(),
            target.env().engine,
            target.name()
        )));
    }
    let specs = selected(&target, args.name.as_deref())?;
    let docker = kaapi_docker::docker::connect().await?;
    let owner = Owner {
        app: target.app(),
        environment: target.name(),
        logs: kaapi_docker::revisions::log_limits(&target),
    };
    let progress = ProgressPrinter::new();
    match args.action {
        AccessoryAction::Start => {
            accessories::up(&docker, owner, &specs, &progress).await?;
            for spec in &specs {
                println!("{} accessory `{}` runs", green("ok:"), spec.name);
            }
        }
        AccessoryAction::Stop => {
            for spec in &specs {
                if accessories::stop(&docker, spec).await? {
                    println!(
                        "accessory `{}` stopped (its container and volumes are kept)",
                        spec.name
                    );
                } else {
                    println!("accessory `{}` has no container", spec.name);
                }
            }
        }
        AccessoryAction::Restart => {
            for spec in &specs {
                accessories::restart(&docker, owner, spec, &progress).await?;
                println!("{} accessory `{}` restarted", green("ok:"), spec.name);
            }
        }
        AccessoryAction::Status => status(&docker, &specs, args.json).await?,
        AccessoryAction::Logs => logs(&docker, owner, &specs, args.follow).await?,
    }
    Ok(())
}

/// The named accessory, or every accessory of the environment.
fn selected(target: &ResolvedEnvironment, name: Option<&str>) -> CliResult<Vec<AccessorySpec>> {
    let specs = match name {
        Some(name) => vec![accessory_spec::spec_named(target, name)?],
        None => accessory_spec::specs(target)?,
    };
    if specs.is_empty() {
        return Err(CliError::Usage(format!(
            "environment `{}` has no accessories; add [accessories.NAME] to {}",
            target.name(),
            target.path().display()
        )));
    }
    Ok(specs)
}

async fn status(docker: &bollard::Docker, specs: &[AccessorySpec], json: bool) -> CliResult {
    let mut states = Vec::new();
    for spec in specs {
        states.push(accessories::state(docker, spec).await?);
    }
    if json {
        return output::print_json(&states);
    }
    let rows: Vec<Vec<String>> = states
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.image.clone(),
                s.state.clone(),
                s.health.clone().unwrap_or_else(|| "-".to_owned()),
                s.container_id.clone().unwrap_or_else(|| "-".to_owned()),
                s.ports.join(", "),
                if s.up_to_date { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &[
                "ACCESSORY",
                "IMAGE",
                "STATE",
                "HEALTH",
                "CONTAINER",
                "PORTS",
                "CURRENT"
            ],
            &rows
        )
    );
    Ok(())
}

async fn logs(
    docker: &bollard::Docker,
    owner: Owner<'_>,
    specs: &[AccessorySpec],
    follow: bool,
) -> CliResult {
    let mut containers = Vec::new();
    for spec in specs {
        containers.extend(accessories::listed(docker, owner, &spec.name).await?);
    }
    if containers.is_empty() {
        return Err(CliError::Failed(format!(
            "no accessory container exists yet; start it with `kaapi-deploy accessory start {}`",
            owner.environment
        )));
    }
    let query = LogQuery {
        service: None,
        since: None,
        follow,
    };
    let sink = |line: kaapi_core::engine::LogLine| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{} | {}", line.source, line.line);
    };
    tokio::select! {
        result = kaapi_docker::logs::logs(docker, &containers, &query, &sink) => result?,
        () = super::ctrl_c() => {}
    }
    Ok(())
}
