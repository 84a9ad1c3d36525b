//! What replicas use: Docker stats (CPU %, memory) per container.

use std::collections::HashMap;

use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::StatsOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;

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

#[cfg(test)]
mod tests {
    use super::*;

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
