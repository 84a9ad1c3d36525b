//! `kaapi-deploy agent run|stop|status`: the local engine's long-running agent, and the ingress
//! process it starts (`agent ingress`, hidden).

use std::path::{Path, PathBuf};

use kaapi_agent::{serve, serve_ingress, AgentClient, IngressCommand};

use crate::cli::AgentCommand;
use crate::exit::{CliError, CliResult};
use crate::project;

pub async fn run(config: Option<&Path>, command: &AgentCommand) -> CliResult {
    match command {
        AgentCommand::Run { state_dir } => {
            // The ingress is this very binary, run with `agent ingress`.
            let program = std::env::current_exe().map_err(|e| {
                CliError::Failed(format!("agent: cannot find its own executable: {e}"))
            })?;
            serve(state_dir, IngressCommand::Program(program))
                .await
                .map_err(|e| CliError::Failed(format!("agent: {e}")))
        }
        AgentCommand::Ingress { state_dir } => serve_ingress(state_dir)
            .await
            .map_err(|e| CliError::Failed(format!("ingress: {e}"))),
        AgentCommand::Stop => {
            let state_dir = state_dir(config)?;
            match connect(&state_dir).await? {
                Some(client) => {
                    let pid = client.endpoint().pid;
                    client
                        .shutdown()
                        .await
                        .map_err(|e| CliError::Failed(format!("cannot stop the agent: {e}")))?;
                    println!(
                        "agent stopped (pid {pid}); its containers keep running and the ingress keeps serving them"
                    );
                }
                None => println!("no agent runs for {}", state_dir.display()),
            }
            Ok(())
        }
        AgentCommand::Status => {
            let state_dir = state_dir(config)?;
            match connect(&state_dir).await? {
                Some(client) => {
                    let endpoint = client.endpoint();
                    println!(
                        "agent runs: pid {}, API on 127.0.0.1:{}, version {}, state in {}",
                        endpoint.pid,
                        endpoint.port,
                        endpoint.version,
                        state_dir.display()
                    );
                }
                None => println!(
                    "no agent runs for {} (a deploy starts one)",
                    state_dir.display()
                ),
            }
            match running_ingress(&state_dir) {
                Some(pid) => println!("ingress runs: pid {pid} (it serves while no agent runs)"),
                None => println!("no ingress runs (the agent starts one for a deploy)"),
            }
            Ok(())
        }
    }
}

/// The ingress process `ingress.json` names, when that pid still runs this directory's ingress.
fn running_ingress(state_dir: &Path) -> Option<u32> {
    let bytes = std::fs::read(state_dir.join(kaapi_agent::ingress::protocol::RECORD_FILE)).ok()?;
    let record: kaapi_agent::ingress::protocol::Record = serde_json::from_slice(&bytes).ok()?;
    kaapi_agent::process::is_ingress_of(record.pid, state_dir).then_some(record.pid)
}

async fn connect(state_dir: &Path) -> CliResult<Option<AgentClient>> {
    AgentClient::connect(state_dir)
        .await
        .map_err(|e| CliError::Failed(format!("cannot reach the agent: {e}")))
}

/// `KAAPI_STATE_DIR` needs no config (so `agent stop` works anywhere); else `.kaapi/` beside
/// the config, as for every other command.
fn state_dir(config: Option<&Path>) -> CliResult<PathBuf> {
    match std::env::var_os("KAAPI_STATE_DIR") {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => Ok(project::state_dir(&project::load_config(config)?)),
    }
}
