//! `kaapi-deploy adopt ENV --app APP`: writes deploy.toml from an environment's live ECS
//! services, so that the first deploy changes nothing but the image.

use std::path::PathBuf;

use kaapi_ecs::adopt::{self, AdoptRequest};
use kaapi_ecs::adopt_config::ecs_environment;
use kaapi_ecs::AwsClients;

use crate::cli::AdoptArgs;
use crate::exit::{CliError, CliResult};

pub async fn run(args: &AdoptArgs) -> CliResult {
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(kaapi_core::config::CONFIG_FILE_NAME));
    if output.exists() && !args.force {
        return Err(CliError::Usage(format!(
            "{} exists; write elsewhere with --output PATH (and merge by hand), or replace it with --force",
            output.display()
        )));
    }
    let env = ecs_environment(args.region.as_deref().unwrap_or_default());
    let shared = kaapi_aws::load(&env, args.region.as_deref(), &kaapi_aws::process_vars()).await?;
    let clients = AwsClients::from_sdk_config(shared);
    let request = AdoptRequest {
        app: args.app.clone(),
        environment: args.environment.clone(),
        cluster: args.cluster.clone(),
        services: args.service.clone(),
    };
    let adopted = adopt::adopt(&clients, &request).await?;
    let text = adopted
        .to_toml()
        .map_err(|e| CliError::Failed(format!("cannot write the config: {e}")))?;
    std::fs::write(&output, text)
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", output.display())))?;
    println!(
        "wrote {} with {} service(s) of cluster `{}`",
        output.display(),
        adopted.config.services.len(),
        request.cluster()
    );
    for note in &adopted.notes {
        println!("  note: {note}");
    }
    println!(
        "next: kaapi-deploy check {} --config {}",
        args.environment,
        output.display()
    );
    Ok(())
}
