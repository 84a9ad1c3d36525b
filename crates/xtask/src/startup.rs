//! CLI start-up: the median wall time of `N` runs of a command (hyperfine is not installed).

use std::time::Duration;

use anyhow::Result;

use crate::ours::Cli;

/// Wall-clock milliseconds of each of `runs` runs of `kaapi-deploy args…`, after one warm-up.
pub async fn time_runs(cli: &Cli<'_>, args: &[&str], runs: usize) -> Result<Vec<f64>> {
    cli.run(args)
        .await?
        .ok(&format!("kaapi-deploy {}", args.join(" ")))?;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let out = cli.run(args).await?;
        samples.push(ms(out.elapsed));
    }
    Ok(samples)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
