//! kaapi-deploy: one binary that builds, pushes, migrates, rolls out, verifies and rolls back a
//! containerized web backend on the local Docker Engine or on AWS ECS.

mod cli;
mod commands;
mod dashboard;
mod deploy_journal;
mod engines;
mod exit;
mod gitinfo;
mod notify;
mod output;
mod project;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use exit::CliResult;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(error) => {
            let message = error.to_string();
            if !message.is_empty() {
                eprintln!("{}", output::red("error:").to_string() + " " + &message);
            }
            ExitCode::from(error.exit_code())
        }
    }
}

async fn dispatch(cli: Cli) -> CliResult<ExitCode> {
    let config = cli.config.as_deref();
    match &cli.command {
        Command::Deploy(args) if args.dry_run => {
            let image = args.image.as_deref();
            return commands::plan::run(config, &args.environment, image, args.json).await;
        }
        Command::Deploy(args) => commands::deploy::run(config, args).await?,
        Command::Plan(args) => {
            let image = args.image.as_deref();
            return commands::plan::run(config, &args.environment, image, args.json).await;
        }
        Command::Rollback(args) => commands::rollback::run(config, args).await?,
        Command::Releases(args) => commands::releases::run(config, args).await?,
        Command::Status(args) => commands::status::run(config, args).await?,
        Command::Dashboard(args) => commands::dashboard::run(config, args).await?,
        Command::Logs(args) => commands::logs::run(config, args).await?,
        Command::Run(args) => {
            let code = commands::run::run(config, args).await?;
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
        }
        Command::Exec(args) => {
            let code = commands::exec::run(config, args).await?;
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
        }
        Command::Prune(args) => commands::prune::run(config, args).await?,
        Command::Scale(args) => commands::scale::run(config, args).await?,
        Command::Down(args) => commands::down::run(config, args).await?,
        Command::Unlock(args) => commands::unlock::run(config, args).await?,
        Command::Completions(args) => commands::completions::run(args)?,
        Command::Man(args) => commands::man_page::run(args)?,
        Command::Accessory(args) => commands::accessory::run(config, args).await?,
        Command::Init(args) => commands::init::run(args)?,
        #[cfg(feature = "ecs")]
        Command::Adopt(args) => commands::adopt::run(args).await?,
        #[cfg(not(feature = "ecs"))]
        Command::Adopt(_) => return Err(engines::without_ecs("`adopt`")),
        Command::Check(args) => commands::check::run(config, args).await?,
        Command::Secrets(command) => commands::secrets::run(config, command).await?,
        Command::Agent(command) => commands::agent::run(config, command).await?,
        Command::Migrate(args) => commands::migrate::run(config, args).await?,
        Command::Ci(args) if args.plan => return commands::ci::plan(config, args).await,
        Command::Ci(args) => commands::ci::run(config, args).await?,
        #[cfg(feature = "ecs")]
        Command::Promote(args) => commands::promote::run(config, args).await?,
        #[cfg(feature = "ecs")]
        Command::Infra(command) => commands::infra::run(config, command).await?,
        #[cfg(not(feature = "ecs"))]
        Command::Promote(_) => return Err(engines::without_ecs("`promote`")),
        #[cfg(not(feature = "ecs"))]
        Command::Infra(_) => return Err(engines::without_ecs("`infra`")),
    }
    Ok(ExitCode::SUCCESS)
}
