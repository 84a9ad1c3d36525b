//! Project tasks. `cargo run --release -p xtask -- bench` measures deploys, rollbacks, failed
//! requests under load, the plain-docker floor, the docker-compose peer, the ECS wait strategy
//! and CLI start-up, and writes `docs/benchmarks.md`.

mod bench;
mod cmd;
mod ecs;
mod irreducible;
mod load;
mod ours;
mod peer;
mod probe;
mod project;
mod startup;
mod stats;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "xtask", about = "kaapi-deploy project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the benchmark on the local engine and write the results table.
    Bench(BenchArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Runs of every scenario (the table shows median and min–max).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Minimum requests sent during each phase under load.
    #[arg(long, default_value_t = 10_000)]
    pub requests: u64,
    /// Requests per second of the load client.
    #[arg(long, default_value_t = 800)]
    pub rate: u32,
    /// Keep-alive connections of the load client.
    #[arg(long, default_value_t = 8)]
    pub connections: u32,
    /// Runs of each CLI start-up measurement.
    #[arg(long, default_value_t = 20)]
    pub startup_runs: usize,
    /// Markdown file to write (relative to the workspace root).
    #[arg(long, default_value = "docs/benchmarks.md")]
    pub out: PathBuf,
    /// Parts to run, comma-separated: ours, irreducible, peer, ecs, startup. `ecs` alone runs
    /// without Docker and prints its table instead of writing the report.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ours,irreducible,peer,ecs,startup"
    )]
    pub parts: Vec<String>,
    /// Use target/release/kaapi-deploy as it is instead of building it first.
    #[arg(long)]
    pub no_build: bool,
    /// Benchmark this kaapi-deploy binary instead of building target/release/kaapi-deploy.
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
