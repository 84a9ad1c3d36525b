//! One module per command. Engine-independent commands drive `kaapi_core::pipeline` over the
//! engine `engines::connect` builds.

pub mod accessory;
#[cfg(feature = "ecs")]
pub mod adopt;
pub mod agent;
pub mod check;
pub mod ci;
pub mod completions;
pub mod dashboard;
pub mod deploy;
pub mod down;
pub mod exec;
#[cfg(feature = "ecs")]
pub mod infra;
pub mod init;
pub mod init_github;
pub mod logs;
pub mod man_page;
pub mod migrate;
pub mod plan;
#[cfg(feature = "ecs")]
pub mod promote;
pub mod prune;
pub mod releases;
pub mod rollback;
pub mod run;
pub mod scale;
pub mod secrets;
#[cfg(feature = "ecs")]
pub mod secrets_push;
pub mod status;
pub mod unlock;

use kaapi_core::pipeline::DeployReport;

use crate::exit::{CliError, CliResult};
use crate::output::{self, green, red};

/// Prints a deploy or rollback report and turns a failed outcome into exit 1.
pub fn finish_report(report: &DeployReport, json: bool, url: Option<String>) -> CliResult {
    if json {
        output::print_json(report)?;
    } else if report.unchanged {
        println!("{} {}", green("unchanged:"), report.message);
    } else if report.succeeded() {
        println!("{} {}", green("deployed:"), report.message);
        if let Some(url) = url {
            println!("{url}");
        }
        // The automatic prune of `[retention]`, said where the deploy's result is.
        if let Some(pruned) = &report.pruned {
            print!("{}", prune::render(pruned));
        }
    } else {
        output::print_diagnoses(&report.diagnosis);
        eprintln!("{} {}", red("deploy failed:"), report.message);
    }
    if report.succeeded() {
        Ok(())
    } else {
        Err(CliError::Failed(String::new()))
    }
}

/// Resolves when the user presses Ctrl-C (never, if the handler cannot be installed).
pub async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
