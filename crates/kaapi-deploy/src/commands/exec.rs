//! `kaapi-deploy exec ENV [--service S] [--replica N] -- CMD…`: a command in a running replica
//! or task; exits with the command's exit code.

use std::io::IsTerminal;
use std::path::Path;

use kaapi_core::engine::ExecRequest;

use crate::cli::ExecArgs;
use crate::exit::CliResult;
use crate::{engines, project};

/// Returns the command's exit code.
pub async fn run(config: Option<&Path>, args: &ExecArgs) -> CliResult<i64> {
    let target = project::resolve(config, &args.environment)?;
    let service = project::service_or_web(&target, args.service.as_deref())?;
    let engine = engines::connect(&target).await?;
    let request = ExecRequest {
        service: &service,
        replica: args.replica as usize,
        command: &args.command,
        // A TTY only when both ends are terminals, so that piped output stays byte-exact.
        interactive: std::io::stdin().is_terminal() && std::io::stdout().is_terminal(),
    };
    Ok(engine.exec(&request).await?)
}
