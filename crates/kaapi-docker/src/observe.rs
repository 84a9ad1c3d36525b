//! Looking at running replicas: Docker stats (CPU %, memory) and merged logs.

use std::collections::HashMap;

use bollard::models::{ContainerStatsResponse, ContainerSummary};
use bollard::query_parameters::{LogsOptionsBuilder, StatsOptionsBuilder};
use bollard::Docker;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use kaapi_core::engine::{EngineResult, LogLine, LogQuery};

use crate::containers::source_name;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub cpu_percent: Option<f64>,
    pub memory_bytes: Option<u64>,
}

/// CPU and memory of each running container, by container ID. Containers that vanish
/// meanwhile are left out.
pub async fn usage(docker: &Docker, ids: &[String]) -> HashMap<String, Usage> {
    let samples = ids.iter().map(|id| async move {
        // Without `one_shot` the engine samples twice, so `precpu_stats` allows a percentage.
        let options = StatsOptionsBuilder::default().stream(false).build();
        let mut stats = docker.stats(id, Some(options));
        let sample = stats.next().await.and_then(Result::ok)?;
        Some((id.clone(), usage_of(&sample)))
    });
    futures_util::future::join_all(samples)
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn usage_of(sample: &ContainerStatsResponse) -> Usage {
    let total = |s: &Option<bollard::models::ContainerCpuStats>| {
        s.as_ref()
            .and_then(|c| c.cpu_usage.as_ref())
            .and_then(|u| u.total_usage)
    };
    let system = |s: &Option<bollard::models::ContainerCpuStats>| {
        s.as_ref().and_then(|c| c.system_cpu_usage)
    };
    let cpus = sample
        .cpu_stats
        .as_ref()
        .and_then(|c| c.online_cpus)
        .unwrap_or(1);
    let cpu_percent = match (
        total(&sample.cpu_stats),
        total(&sample.precpu_stats),
        system(&sample.cpu_stats),
        system(&sample.precpu_stats),
    ) {
        (Some(now), Some(before), Some(sys_now), Some(sys_before)) if sys_now > sys_before => {
            let cpu = now.saturating_sub(before) as f64;
            let sys = (sys_now - sys_before) as f64;
            Some(cpu / sys * f64::from(cpus) * 100.0)
        }
        _ => None,
    };
    // Docker's CLI subtracts the page cache, which the kernel can reclaim.
    let memory_bytes = sample.memory_stats.as_ref().and_then(|m| {
        let cache = m
            .stats
            .as_ref()
            .and_then(|s| {
                s.get("total_inactive_file")
                    .or_else(|| s.get("inactive_file"))
            })
            .copied()
            .unwrap_or(0);
        m.usage.map(|u| u.saturating_sub(cache))
    });
    Usage {
        cpu_percent,
        memory_bytes,
    }
}

/// Sends the log lines of `containers` to `sink`: sorted by time when not following, as they
/// come when following.
pub async fn logs(
    docker: &Docker,
    containers: &[ContainerSummary],
    query: &LogQuery,
    sink: &(dyn Fn(LogLine) + Send + Sync),
) -> EngineResult<()> {
    let since = query
        .since
        .map(|d| Utc::now().timestamp() - i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2))
        .and_then(|t| i32::try_from(t.max(0)).ok());
    let streams = containers.iter().filter_map(|container| {
        let id = container.id.clone()?;
        let source = source_name(container);
        let mut options = LogsOptionsBuilder::default()
            .follow(query.follow)
            .stdout(true)
            .stderr(true)
            .timestamps(true);
        if let Some(since) = since {
            options = options.since(since);
        }
        let chunks = docker.logs(&id, Some(options.build()));
        Some(
            chunks
                .filter_map(|chunk| async move { chunk.ok() })
                .flat_map(move |chunk| {
                    let source = source.clone();
                    let lines: Vec<LogLine> = chunk
                        .to_string()
                        .lines()
                        .filter(|l| !l.is_empty())
                        .map(|l| parse_line(&source, l))
                        .collect();
                    stream::iter(lines)
                })
                .boxed(),
        )
    });
    let mut merged = stream::select_all(streams);
    if query.follow {
        while let Some(line) = merged.next().await {
            sink(line);
        }
    } else {
        let mut lines: Vec<LogLine> = merged.collect().await;
        lines.sort_by_key(|l| l.at);
        for line in lines {
            sink(line);
        }
    }
    Ok(())
}

/// `2024-05-01T10:00:00.123456789Z message` (Docker's `timestamps`) into a line.
fn parse_line(source: &str, raw: &str) -> LogLine {
    let (at, line) = match raw.split_once(' ') {
        Some((stamp, rest)) => match DateTime::parse_from_rfc3339(stamp) {
            Ok(at) => (Some(at.with_timezone(&Utc)), rest),
            Err(_) => (None, raw),
        },
        None => (None, raw),
    };
    LogLine {
        at,
        source: source.to_owned(),
        line: line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_timestamps() {
        let line = parse_line("web/abc", "2024-05-01T10:00:00.123456789Z hello world");
        assert_eq!(line.line, "hello world");
        assert_eq!(line.source, "web/abc");
        assert!(line.at.is_some());
        let plain = parse_line("web/abc", "no stamp here");
        assert_eq!(plain.at, None);
        assert_eq!(plain.line, "no stamp here");
    }

    #[test]
    fn cpu_percent_from_two_samples() {
        let sample: ContainerStatsResponse = serde_json::from_value(serde_json::json!({
            "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
            "memory_stats": {"usage": 5000, "stats": {"total_inactive_file": 1000}}
        }))
        .expect("sample");
        let usage = usage_of(&sample);
        assert_eq!(usage.memory_bytes, Some(4000));
        let cpu = usage.cpu_percent.expect("cpu");
        assert!((cpu - 40.0).abs() < 1e-9, "{cpu}");
    }
}
