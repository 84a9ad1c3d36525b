//! A bounded load generator: GET requests at a fixed rate over a few keep-alive HTTP/1.1
//! connections to one 127.0.0.1 address, each with a short timeout. It counts every request
//! sent and every one that failed (error, timeout or non-2xx), and notes when each app version
//! (from `/version` bodies) was first and last seen, so a switch of traffic can be timed from
//! the client's side.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub addr: SocketAddr,
    pub path: String,
    /// Requests per second, over all connections.
    pub rate: u32,
    pub connections: u32,
    /// Keep going after `finish` until this many requests were sent.
    pub min_requests: u64,
    pub timeout: Duration,
    /// Hard stop, whatever happens.
    pub max_duration: Duration,
}

/// When a version answered, relative to the start of the load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seen {
    pub first: Duration,
    pub last: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    /// Failure kinds (`timeout`, `status 502`, `connect: …`) and their counts.
    pub failures: BTreeMap<String, u64>,
    pub versions: BTreeMap<String, Seen>,
    pub elapsed: Duration,
    pub max_latency: Duration,
    /// When the first and the last failed request were sent, on the load's timeline.
    pub failure_window: Option<(Duration, Duration)>,
}

impl LoadReport {
    pub fn failure_summary(&self) -> String {
        if self.failures.is_empty() {
            return "none".to_owned();
        }
        self.failures
            .iter()
            .map(|(kind, n)| format!("{n}× {kind}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

struct Shared {
    started: Instant,
    stop: AtomicBool,
    sent: AtomicU64,
    report: Mutex<LoadReport>,
}

/// A load running in the background; `finish` stops it (after `min_requests`).
pub struct LoadRun {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl LoadRun {
    pub fn start(config: LoadConfig) -> Self {
        let shared = Arc::new(Shared {
            started: Instant::now(),
            stop: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            report: Mutex::new(LoadReport::default()),
        });
        let connections = config.connections.max(1);
        let period =
            Duration::from_secs_f64(f64::from(connections) / f64::from(config.rate.max(1)));
        let workers = (0..connections)
            .map(|i| {
                let shared = Arc::clone(&shared);
                let config = config.clone();
                // Staggered so the connections do not fire in bursts.
                let offset = period.mul_f64(f64::from(i) / f64::from(connections));
                tokio::spawn(async move { worker(shared, config, period, offset).await })
            })
            .collect();
        Self { shared, workers }
    }

    /// Time since the load started (to place other events on its timeline).
    pub fn now(&self) -> Duration {
        self.shared.started.elapsed()
    }

    /// Asks the workers to stop once `min_requests` were sent, waits, and reports.
    pub async fn finish(self) -> LoadReport {
        self.shared.stop.store(true, Ordering::SeqCst);
        for worker in self.workers {
            let _ = worker.await;
        }
        let mut report = self
            .shared
            .report
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        report.elapsed = self.shared.started.elapsed();
        report
    }
}

enum Answer {
    Ok(Option<String>),
    Failed(String),
}

async fn worker(shared: Arc<Shared>, config: LoadConfig, period: Duration, offset: Duration) {
    let mut sender: Option<SendRequest<Empty<Bytes>>> = None;
    let mut next = tokio::time::Instant::now() + offset;
    loop {
        let stopping = shared.stop.load(Ordering::SeqCst)
            && shared.sent.load(Ordering::SeqCst) >= config.min_requests;
        if stopping || shared.started.elapsed() >= config.max_duration {
            break;
        }
        tokio::time::sleep_until(next).await;
        // A fixed schedule; after a stall, resume from now instead of bursting to catch up.
        next = (next + period).max(tokio::time::Instant::now());
        shared.sent.fetch_add(1, Ordering::SeqCst);
        let sent_at = Instant::now();
        let answer = match tokio::time::timeout(
            config.timeout,
            request(&mut sender, config.addr, &config.path),
        )
        .await
        {
            Ok(answer) => answer,
            Err(_) => {
                // The connection is in an unknown state; open a new one next time.
                sender = None;
                Answer::Failed("timeout".to_owned())
            }
        };
        let latency = sent_at.elapsed();
        let sent_offset = sent_at.saturating_duration_since(shared.started);
        let at = shared.started.elapsed();
        if let Ok(mut report) = shared.report.lock() {
            report.sent += 1;
            report.max_latency = report.max_latency.max(latency);
            match answer {
                Answer::Ok(version) => {
                    report.ok += 1;
                    if let Some(version) = version {
                        let seen = report.versions.entry(version).or_insert(Seen {
                            first: at,
                            last: at,
                        });
                        seen.last = at;
                    }
                }
                Answer::Failed(kind) => {
                    report.failed += 1;
                    let window = report
                        .failure_window
                        .get_or_insert((sent_offset, sent_offset));
                    window.1 = sent_offset;
                    *report.failures.entry(kind).or_insert(0) += 1;
                }
            }
        }
    }
}

async fn request(
    sender: &mut Option<SendRequest<Empty<Bytes>>>,
    addr: SocketAddr,
    path: &str,
) -> Answer {
    if sender.as_ref().is_none_or(|s| s.is_closed()) {
        match connect(addr).await {
            Ok(s) => *sender = Some(s),
            Err(kind) => return Answer::Failed(kind),
        }
    }
    let Some(s) = sender.as_mut() else {
        return Answer::Failed("no connection".to_owned());
    };
    if s.ready().await.is_err() {
        *sender = None;
        return Answer::Failed("connection closed".to_owned());
    }
    let request = match hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
    {
        Ok(r) => r,
        Err(e) => return Answer::Failed(format!("request: {e}")),
    };
    let response = match s.send_request(request).await {
        Ok(r) => r,
        Err(e) => {
            *sender = None;
            return Answer::Failed(classify(&e));
        }
    };
    let status = response.status();
    let body = match response.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            *sender = None;
            return Answer::Failed(format!("body: {}", classify(&e)));
        }
    };
    if !status.is_success() {
        return Answer::Failed(format!("status {}", status.as_u16()));
    }
    Answer::Ok(version_of(&body))
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Empty<Bytes>>, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {}", classify(&e)))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// A short, stable name for a hyper error, so counts group well.
fn classify(error: &hyper::Error) -> String {
    if error.is_incomplete_message() {
        "connection closed mid-response".to_owned()
    } else if error.is_canceled() {
        "canceled".to_owned()
    } else if error.is_closed() {
        "connection closed".to_owned()
    } else if error.is_timeout() {
        "timeout".to_owned()
    } else {
        let text = error.to_string();
        text.split(':').next().unwrap_or("error").trim().to_owned()
    }
}

/// `{"version": "…", …}` from the example backend's `/version`.
fn version_of(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("version")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A keep-alive server: answers `ok_first` requests with 200, then 503.
    async fn server(ok_first: u64) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let served = Arc::new(AtomicU64::new(0));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let served = Arc::clone(&served);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let count = served.fetch_add(1, Ordering::SeqCst);
                        let (status, body) = if count < ok_first {
                            ("200 OK", "{\"version\":\"v1\"}")
                        } else {
                            ("503 Service Unavailable", "{}")
                        };
                        let response = format!(
                            "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if stream.write_all(response.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    fn config(addr: SocketAddr, min_requests: u64) -> LoadConfig {
        LoadConfig {
            addr,
            path: "/version".to_owned(),
            rate: 1000,
            connections: 4,
            min_requests,
            timeout: Duration::from_millis(500),
            max_duration: Duration::from_secs(20),
        }
    }

    #[tokio::test]
    async fn counts_successes_failures_and_versions_at_the_set_rate() {
        let addr = server(300).await;
        let run = LoadRun::start(config(addr, 500));
        let report = run.finish().await;
        assert!(report.sent >= 500, "sent {}", report.sent);
        assert_eq!(report.ok + report.failed, report.sent);
        assert_eq!(report.ok, 300);
        assert_eq!(
            report.failures.get("status 503").copied(),
            Some(report.failed)
        );
        assert!(report.versions.contains_key("v1"));
        // 500 requests at 1000/s: about half a second, not a burst, not a crawl.
        assert!(
            report.elapsed >= Duration::from_millis(400) && report.elapsed < Duration::from_secs(3),
            "took {:?}",
            report.elapsed
        );
    }

    #[tokio::test]
    async fn a_closed_port_counts_as_failed_connects() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let report = LoadRun::start(config(addr, 50)).finish().await;
        assert_eq!(report.ok, 0);
        assert_eq!(report.failed, report.sent);
        assert!(report.failures.keys().all(|k| k.starts_with("connect")));
    }
}
