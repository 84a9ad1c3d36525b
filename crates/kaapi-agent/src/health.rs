//! Watches one replica: its container state every half second and, for a web service, an HTTP
//! probe on 127.0.0.1 at the health check's interval. A replica not yet healthy is probed every
//! [`STARTUP_PROBE`] so that a rollout switches as soon as it answers; failures still count at
//! the configured interval.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::api::HealthCheckSpec;
use super::docker::{ContainerStatus, Containers};
use super::replica::{Health, Replica};

const STATE_TICK: Duration = Duration::from_millis(500);
/// How often a starting replica is probed until its first healthy answer.
pub const STARTUP_PROBE: Duration = Duration::from_millis(150);
/// The path an application without a health path is asked for; any answer of its own will do.
const ANSWER_PATH: &str = "/";
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

pub type ProbeClient = Client<HttpConnector, Empty<Bytes>>;

pub fn probe_client() -> ProbeClient {
    // Every replica has its own host port, so each is a new pool key: without a timer the pool
    // never sweeps idle connections to replaced replicas and the agent's memory grows with
    // every rollout.
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(1)
        .build_http()
}

/// What a replica must pass to count as healthy.
#[derive(Debug, Clone)]
pub enum Check {
    /// A worker: running is healthy.
    Running,
    /// A web service without a health path: an HTTP request gets an answer from the application.
    /// A TCP connect proves nothing: Docker's proxy accepts it whether or not the app listens.
    Answers,
    Http(HealthCheckSpec),
}

/// One probe: `Ok(description)` when healthy, `Err(description)` otherwise, e.g.
/// `GET /api/v1/utils/health/ → 503`.
pub async fn probe(client: &ProbeClient, port: u16, check: &Check) -> Result<String, String> {
    match check {
        Check::Running => Ok("running".to_owned()),
        Check::Answers => {
            let what = format!("GET {ANSWER_PATH}");
            let uri = match format!("http://127.0.0.1:{port}{ANSWER_PATH}").parse::<hyper::Uri>() {
                Ok(uri) => uri,
                Err(e) => return Err(format!("{what} → invalid address ({e})")),
            };
            match tokio::time::timeout(ANSWER_TIMEOUT, client.get(uri)).await {
                Ok(Ok(response)) if is_gateway_error(response.status()) => Err(format!(
                    "{what} → {} (a proxy's error, not the application's answer)",
                    response.status().as_u16()
                )),
                Ok(Ok(response)) => Ok(format!(
                    "{what} → {} (the application answers)",
                    response.status().as_u16()
                )),
                Ok(Err(e)) => Err(format!("{what} → {}", describe(&e))),
                Err(_) => Err(format!(
                    "{what} → no answer within {} ms",
                    ANSWER_TIMEOUT.as_millis()
                )),
            }
        }
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

/// Answers a proxy gives when the application behind it does not answer.
fn is_gateway_error(status: hyper::StatusCode) -> bool {
    matches!(status.as_u16(), 502..=504)
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
        Check::Answers | Check::Running => (Duration::from_secs(1), 3, Duration::from_secs(5)),
    };
    let mut next_probe = Instant::now();
    // When the next failed probe counts towards `retries`: fast start-up probes must not use
    // up the retries faster than the configured interval would.
    let mut next_counted = Instant::now();
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
        let starting = replica
            .upgrade()
            .is_some_and(|r| r.health() == Health::Starting);
        let pace = if starting {
            STARTUP_PROBE.min(interval)
        } else {
            interval
        };
        let at = Instant::now();
        if at >= next_probe {
            next_probe = at + pace;
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
                    if !in_start_period && at >= next_counted {
                        next_counted = at + interval;
                        failures += 1;
                        if failures >= retries {
                            current.set_health(Health::Unhealthy(description));
                        }
                    }
                }
            }
        }
        tokio::time::sleep(STATE_TICK.min(pace)).await;
    }
}

fn set(replica: &Weak<Replica>, health: Health) {
    if let Some(replica) = replica.upgrade() {
        replica.set_health(health);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A loopback server that answers every connection with `reply` (raw bytes, maybe none)
    /// after reading the request, then closes it.
    async fn server(reply: &'static [u8]) -> u16 {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind loopback");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buffer = [0u8; 1024];
                let _ = stream.read(&mut buffer).await;
                let _ = stream.write_all(reply).await;
            }
        });
        port
    }

    #[tokio::test]
    async fn an_application_answer_of_any_status_is_ready() {
        let port = server(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").await;
        let result = probe(&probe_client(), port, &Check::Answers).await;
        assert_eq!(
            result,
            Ok("GET / → 404 (the application answers)".to_owned())
        );
    }

    #[tokio::test]
    async fn an_accepted_connection_closed_without_an_answer_is_not_ready() {
        let port = server(b"").await;
        let result = probe(&probe_client(), port, &Check::Answers).await;
        assert!(result.is_err(), "{result:?}");
    }

    #[tokio::test]
    async fn a_proxy_error_is_not_ready() {
        let port = server(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n").await;
        let result = probe(&probe_client(), port, &Check::Answers).await;
        assert_eq!(
            result,
            Err("GET / → 502 (a proxy's error, not the application's answer)".to_owned())
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_not_ready() {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind loopback");
        let port = listener.local_addr().expect("address").port();
        drop(listener);
        let result = probe(&probe_client(), port, &Check::Answers).await;
        assert!(result.is_err(), "{result:?}");
    }
}
