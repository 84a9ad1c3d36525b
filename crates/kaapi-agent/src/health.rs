//! Watches one replica: its container state every half second and, for a web service, an HTTP
//! probe of its health path on 127.0.0.1 at the health check's interval.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::api::HealthCheckSpec;
use super::docker::{ContainerStatus, Containers};
use super::replica::{Health, Replica};

const STATE_TICK: Duration = Duration::from_millis(500);

pub type ProbeClient = Client<HttpConnector, Empty<Bytes>>;

pub fn probe_client() -> ProbeClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(1)
        .build_http()
}

/// What a replica must pass to count as healthy.
#[derive(Debug, Clone)]
pub enum Check {
    /// A worker: running is healthy.
    Running,
    /// A web service without a health check: its port accepts connections.
    Port,
    Http(HealthCheckSpec),
}

/// One probe: `Ok(description)` when healthy, `Err(description)` otherwise, e.g.
/// `GET /api/v1/utils/health/ → 503`.
pub async fn probe(client: &ProbeClient, port: u16, check: &Check) -> Result<String, String> {
    match check {
        Check::Running => Ok("running".to_owned()),
        Check::Port => match tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        {
            Ok(Ok(_)) => Ok(format!("port {port} accepts connections")),
            Ok(Err(e)) => Err(format!("connect to 127.0.0.1:{port} → {e}")),
            Err(_) => Err(format!("connect to 127.0.0.1:{port} → timed out")),
        },
        Check::Http(spec) => {
            let what = format!("GET {}", spec.path);
            let uri = match format!("http://127.0.0.1:{port}{}", spec.path).parse::<hyper::Uri>() {
                Ok(uri) => uri,
                Err(e) => return Err(format!("{what} → invalid path ({e})")),
            };
            let timeout = Duration::from_millis(spec.timeout_ms.max(1));
            match tokio::time::timeout(timeout, client.get(uri)).await {
                Ok(Ok(response)) if response.status().is_success() => {
                    Ok(format!("{what} → {}", response.status().as_u16()))
                }
                Ok(Ok(response)) => Err(format!("{what} → {}", response.status().as_u16())),
                Ok(Err(e)) => Err(format!("{what} → {}", describe(&e))),
                Err(_) => Err(format!("{what} → no answer within {} ms", spec.timeout_ms)),
            }
        }
    }
}

fn describe(e: &hyper_util::client::legacy::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        text = format!("{text}: {inner}");
        source = inner.source();
    }
    text
}

/// Spawns the watcher; it ends when the container stops or the replica is dropped.
pub fn spawn_monitor(
    containers: Containers,
    client: ProbeClient,
    replica: &Arc<Replica>,
    check: Check,
) {
    let weak = Arc::downgrade(replica);
    let handle = tokio::spawn(monitor(containers, client, weak, check));
    replica.set_monitor(handle.abort_handle());
}

async fn monitor(
    containers: Containers,
    client: ProbeClient,
    replica: Weak<Replica>,
    check: Check,
) {
    let (interval, retries, start_period) = match &check {
        Check::Http(spec) => (
            Duration::from_millis(spec.interval_ms.max(100)),
            spec.retries.max(1),
            Duration::from_millis(spec.start_period_ms),
        ),
        Check::Port | Check::Running => (Duration::from_secs(1), 3, Duration::from_secs(5)),
    };
    let mut next_probe = Instant::now();
    let mut failures = 0u32;
    loop {
        let Some((id, port)) = replica
            .upgrade()
            .map(|r| (r.container_id.clone(), r.host_port))
        else {
            return;
        };
        match containers.status(&id).await {
            Ok(ContainerStatus::Running) => {}
            Ok(ContainerStatus::NotStarted) => {}
            Ok(ContainerStatus::Exited(code)) => {
                set(&replica, Health::Exited(code));
                return;
            }
            Ok(ContainerStatus::Vanished) => {
                set(&replica, Health::Vanished);
                return;
            }
            // A Docker hiccup says nothing about the replica: look again next tick.
            Err(_) => {}
        }
        if Instant::now() >= next_probe {
            next_probe = Instant::now() + interval;
            let result = match (&check, port) {
                (Check::Running, _) => Ok("running".to_owned()),
                (_, Some(port)) => probe(&client, port, &check).await,
                (_, None) => Err("no published port".to_owned()),
            };
            let Some(current) = replica.upgrade() else {
                return;
            };
            match result {
                Ok(description) => {
                    failures = 0;
                    current.set_last_probe(description);
                    current.set_health(Health::Healthy);
                }
                Err(description) => {
                    current.set_last_probe(description.clone());
                    let in_start_period = current.health() == Health::Starting
                        && current.started.elapsed() < start_period;
                    if !in_start_period {
                        failures += 1;
                        if failures >= retries {
                            current.set_health(Health::Unhealthy(description));
                        }
                    }
                }
            }
        }
        tokio::time::sleep(STATE_TICK.min(interval)).await;
    }
}

fn set(replica: &Weak<Replica>, health: Health) {
    if let Some(replica) = replica.upgrade() {
        replica.set_health(health);
    }
}
