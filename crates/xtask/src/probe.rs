//! One-shot HTTP probes on loopback: a fresh connection per probe, as a health checker does.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The status code of `GET path`, or `None` when nothing answered within `timeout`.
pub async fn status(addr: SocketAddr, path: &str, timeout: Duration) -> Option<u16> {
    tokio::time::timeout(timeout, async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = Vec::with_capacity(64);
        let mut buf = [0u8; 256];
        while !head.windows(2).any(|w| w == b"\r\n") {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            head.extend_from_slice(&buf[..n]);
        }
        // `HTTP/1.1 200 OK`
        let line = String::from_utf8_lossy(&head);
        line.split_whitespace().nth(1)?.parse().ok()
    })
    .await
    .ok()
    .flatten()
}

/// Polls `path` every `every` until it answers 200; the time from `since` to that answer.
pub async fn until_healthy(
    addr: SocketAddr,
    path: &str,
    since: Instant,
    every: Duration,
    limit: Duration,
) -> Result<Duration> {
    loop {
        if status(addr, path, Duration::from_secs(1)).await == Some(200) {
            return Ok(since.elapsed());
        }
        if since.elapsed() > limit {
            bail!("{addr}{path} did not answer 200 within {limit:?}");
        }
        tokio::time::sleep(every).await;
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
