//! `kaapi-deploy status ENV [--json]`.

use std::path::Path;

use super::scale;
use crate::cli::EnvJsonArgs;
use crate::exit::CliResult;
use crate::output::{bold, print_json, table};
use crate::{engines, project};

pub async fn run(config: Option<&Path>, args: &EnvJsonArgs) -> CliResult {
    let target = project::resolve(config, &args.environment)?;
    let engine = engines::connect(&target).await?;
    let report = engine.status().await?;
    if args.json {
        return print_json(&report);
    }
    let scaling = engine.scaling_events().await?;
    println!(
        "{} {} (engine {}){}",
        bold("environment"),
        report.environment,
        report.engine,
        report
            .url
            .as_deref()
            .map(|u| format!(" at {u}"))
            .unwrap_or_default()
    );
    let opt = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "-".to_owned());
    for service in &report.services {
        println!();
        println!(
            "{} {}: {}/{} running, {} healthy; release {} (previous {}){}",
            bold("service"),
            service.service,
            service.running,
            service.desired,
            service.healthy,
            opt(service.current_release),
            opt(service.previous_release),
            service
                .rollout
                .as_deref()
                .map(|r| format!("; {r}"))
                .unwrap_or_default(),
        );
        let last_scaled = scaling.iter().rev().find(|e| e.service == service.service);
        if let Some(event) = last_scaled {
            println!(
                "  scaled {} by {} at {}",
                scale::describe(event),
                event.author,
                event.at.format("%Y-%m-%d %H:%M:%S UTC")
            );
        }
        if let (Some(requests), Some(errors)) = (service.requests, service.errors_5xx) {
            println!("  requests {requests}, 5xx {errors}");
        }
        let rows: Vec<Vec<String>> = service
            .replicas
            .iter()
            .map(|r| {
                vec![
                    r.id.clone(),
                    r.state.clone(),
                    match r.healthy {
                        Some(true) => "healthy".to_owned(),
                        Some(false) => "unhealthy".to_owned(),
                        None => "-".to_owned(),
                    },
                    opt(r.release),
                    r.cpu_percent
                        .map(|c| format!("{c:.1}%"))
                        .unwrap_or_else(|| "-".to_owned()),
                    r.memory_bytes
                        .map(|m| format!("{:.1} MiB", m as f64 / 1_048_576.0))
                        .unwrap_or_else(|| "-".to_owned()),
                ]
            })
            .collect();
        if !rows.is_empty() {
            println!(
                "{}",
                table(
                    &["REPLICA", "STATE", "HEALTH", "RELEASE", "CPU", "MEMORY"],
                    &rows
                )
            );
        }
        for event in service.events.iter().take(10) {
            println!("  {} {}", event.at.format("%H:%M:%S"), event.message);
        }
    }
    Ok(())
}
