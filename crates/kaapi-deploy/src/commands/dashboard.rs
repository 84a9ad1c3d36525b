//! `kaapi-deploy dashboard [ENV] [--port P]`: serves the read-only dashboard on 127.0.0.1.

use std::path::Path;

use crate::cli::DashboardArgs;
use crate::dashboard::{self, Watched};
use crate::exit::{CliError, CliResult};
use crate::project;

pub async fn run(config: Option<&Path>, args: &DashboardArgs) -> CliResult {
    let loaded = std::sync::Arc::new(project::load_config(config)?);
    let names: Vec<String> = match &args.environment {
        Some(name) => vec![name.clone()],
        None => loaded.config.environments.keys().cloned().collect(),
    };
    let watched = names
        .iter()
        .map(|name| project::resolve_in(std::sync::Arc::clone(&loaded), name).map(Watched::new))
        .collect::<CliResult<Vec<_>>>()?;
    let listener = dashboard::bind(args.port).await.map_err(|e| {
        CliError::Failed(format!(
            "cannot listen on 127.0.0.1:{}: {e}; free the port or pick another with --port",
            args.port
        ))
    })?;
    let address = listener
        .local_addr()
        .map_err(|e| CliError::Failed(format!("cannot read the dashboard's address: {e}")))?;
    println!("dashboard: http://{address}/ (read-only; Ctrl-C to stop)");
    let state_dir = project::state_dir(&loaded);
    tokio::select! {
        served = dashboard::serve(listener, watched, state_dir) => served
            .map_err(|e| CliError::Failed(format!("the dashboard stopped: {e}"))),
        _ = super::ctrl_c() => Ok(()),
    }
}
