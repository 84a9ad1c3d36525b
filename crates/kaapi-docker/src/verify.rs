//! Verifying a deploy from outside: an HTTP GET of the health path through the ingress, with a
//! few retries. Plain HTTP/1.1 over loopback needs no client library.

use std::time::Duration;

use kaapi_core::progress::Progress;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `Ok` on the first 2xx answer; otherwise what the last attempt saw.
pub async fn check(
    url: &str,
    attempts: u32,
    pause: Duration,
    progress: &dyn Progress,
) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 1..=attempts.max(1) {
        match get_status(url, Duration::from_secs(5)).await {
            Ok(status) if (200..300).contains(&status) => {
                progress.info(format!("GET {url} → {status}"));
                return Ok(());
            }
            Ok(status) => last = format!("GET {url} answered {status}"),
            Err(e) => last = format!("GET {url} failed: {e}"),
        }
        if attempt < attempts {
            progress.info(format!("{last}; retrying ({attempt}/{attempts})"));
            tokio::time::sleep(pause).await;
        }
    }
    Err(last)
}

/// The status code of `GET url` (`http://host:port/path` only).
pub async fn get_status(url: &str, timeout: Duration) -> Result<u16, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs can be checked, not {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let exchange = async {
        let mut stream = TcpStream::connect(authority)
            .await
            .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: kaapi-deploy\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("cannot send the request: {e}"))?;
        let mut head = Vec::new();
        let mut buffer = [0u8; 1024];
        while !head.windows(2).any(|w| w == b"\r\n") {
            let n = stream
                .read(&mut buffer)
                .await
                .map_err(|e| format!("cannot read the answer: {e}"))?;
            if n == 0 {
                return Err("the connection closed before an answer".to_owned());
            }
            head.extend_from_slice(&buffer[..n]);
        }
        let line = String::from_utf8_lossy(&head);
        line.split_whitespace()
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| format!("not an HTTP answer: {}", line.lines().next().unwrap_or("")))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {}s", timeout.as_secs()))?
}

#[cfg(test)]
mod tests {
    use kaapi_core::progress::Silent;
    use tokio::net::TcpListener;

    use super::*;

    async fn serve_once(answers: Vec<&'static str>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            for answer in answers {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let mut buffer = [0u8; 1024];
                let _ = socket.read(&mut buffer).await;
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        format!("http://127.0.0.1:{port}/api/v1/utils/health/")
    }

    #[tokio::test]
    async fn retries_until_healthy() {
        let url = serve_once(vec![
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        ])
        .await;
        assert_eq!(
            check(&url, 3, Duration::from_millis(10), &Silent).await,
            Ok(())
        );
    }

    #[tokio::test]
    async fn reports_the_last_failure() {
        let url = serve_once(vec![
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n",
        ])
        .await;
        let error = check(&url, 2, Duration::from_millis(10), &Silent)
            .await
            .expect_err("unhealthy");
        assert!(error.contains("500"), "{error}");
    }

    #[tokio::test]
    async fn a_closed_port_is_a_failure() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let error = get_status(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(2))
            .await
            .expect_err("closed");
        assert!(error.contains("cannot connect"), "{error}");
    }
}
