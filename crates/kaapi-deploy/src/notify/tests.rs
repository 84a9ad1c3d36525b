//! Every webhook format against a real HTTP server on 127.0.0.1 started by the test.

use std::time::{Duration, Instant};

use kaapi_core::notify::{NotificationsConfig, VariableName, WebhookConfig, WebhookFormat};
use kaapi_core::release::Outcome;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;

/// One request as the receiver saw it.
struct Received {
    request_line: String,
    content_type: Option<String>,
    body: serde_json::Value,
}

/// Answers every request with `status` (or never, when `None`) and reports what it received.
async fn receiver(status: Option<u16>) -> (String, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let url = format!(
        "http://{}/hooks/T000/B000/abcdef",
        listener.local_addr().expect("addr")
    );
    let (sender, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let sender = sender.clone();
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buffer = [0u8; 4096];
                let (head, body_start) = loop {
                    let n = socket.read(&mut buffer).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buffer[..n]);
                    if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                        break (String::from_utf8_lossy(&data[..end]).into_owned(), end + 4);
                    }
                };
                let header = |name: &str| {
                    head.lines().find_map(|l| {
                        let (key, value) = l.split_once(':')?;
                        key.eq_ignore_ascii_case(name)
                            .then(|| value.trim().to_owned())
                    })
                };
                let length: usize = header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                while data.len() < body_start + length {
                    let n = socket.read(&mut buffer).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    data.extend_from_slice(&buffer[..n]);
                }
                let body = serde_json::from_slice(&data[body_start..]).unwrap_or_default();
                let _ = sender.send(Received {
                    request_line: head.lines().next().unwrap_or_default().to_owned(),
                    content_type: header("content-type"),
                    body,
                });
                match status {
                    Some(code) => {
                        let answer = format!(
                            "HTTP/1.1 {code} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                        );
                        let _ = socket.write_all(answer.as_bytes()).await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(60)).await,
                }
            });
        }
    });
    (url, received)
}

fn notice() -> Notice {
    Notice {
        action: "deploy".into(),
        environment: "staging".into(),
        outcome: Outcome::RolledBack,
        release: Some(7),
        image: Some("sha256:feed".into()),
        commit: "0123456789ab".into(),
        version: None,
        author: "alice".into(),
        duration_seconds: 31.0,
        message: "rollout failed: backend: replica exited (code 2)".into(),
        diagnosis: Some("backend (kt-1): exited (exit 2); hint: a variable looks missing".into()),
        url: None,
    }
}

fn config(format: &str, timeout: &str) -> NotificationsConfig {
    let text = format!(
        "webhooks = [{{ format = \"{format}\", url_env = \"HOOK_URL\" }}]\ntimeout = \"{timeout}\""
    );
    toml::from_str(&text).expect("notifications config")
}

async fn deliver(format: &str) -> Received {
    let (url, mut received) = receiver(Some(200)).await;
    let warnings = post_all(&config(format, "5s"), &notice(), |name| {
        (name == "HOOK_URL").then(|| url.clone())
    })
    .await;
    assert!(warnings.is_empty(), "{warnings:?}");
    let got = received.recv().await.expect("one request");
    assert_eq!(got.request_line, "POST /hooks/T000/B000/abcdef HTTP/1.1");
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    got
}

#[tokio::test]
async fn slack_gets_a_text_message_with_every_fact() {
    let got = deliver("slack").await;
    let text = got.body["text"].as_str().expect("text field");
    for part in [
        "staging: deploy of release 7 failed and was rolled back",
        "commit 0123456789ab",
        "by alice",
        "in 31s",
        "sha256:feed",
        "why: backend (kt-1): exited (exit 2)",
    ] {
        assert!(text.contains(part), "{part} missing in {text}");
    }
}

#[tokio::test]
async fn discord_gets_its_content_field() {
    let got = deliver("discord").await;
    let content = got.body["content"].as_str().expect("content field");
    assert!(content.contains("release 7"), "{content}");
    assert!(got.body.get("text").is_none());
}

#[tokio::test]
async fn the_generic_receiver_gets_structured_json() {
    let got = deliver("json").await;
    let notice = &got.body["kaapi_deploy"];
    assert_eq!(notice["environment"], "staging");
    assert_eq!(notice["outcome"], "rolled_back");
    assert_eq!(notice["release"], 7);
    assert_eq!(notice["author"], "alice");
    assert_eq!(notice["duration_seconds"], 31.0);
}

#[tokio::test]
async fn a_refusing_receiver_is_a_warning_that_names_the_variable_not_the_url() {
    let (url, _received) = receiver(Some(500)).await;
    let warnings = post_all(&config("slack", "5s"), &notice(), |_| Some(url.clone())).await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("HOOK_URL"), "{}", warnings[0]);
    assert!(warnings[0].contains("500"), "{}", warnings[0]);
    assert!(
        !warnings[0].contains("/hooks/"),
        "the URL leaked: {}",
        warnings[0]
    );
}

#[tokio::test]
async fn a_receiver_that_never_answers_is_given_up_after_the_timeout() {
    let (url, _received) = receiver(None).await;
    let started = Instant::now();
    let warnings = post_all(&config("json", "1s"), &notice(), |_| Some(url.clone())).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the timeout"
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        !warnings[0].contains("/hooks/"),
        "the URL leaked: {}",
        warnings[0]
    );
}

#[tokio::test]
async fn an_unset_variable_skips_that_webhook_with_a_warning() {
    let warnings = post_all(&config("discord", "1s"), &notice(), |_| None).await;
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("HOOK_URL (its webhook URL) is not set"),
        "{}",
        warnings[0]
    );
}

#[test]
fn a_webhook_url_written_in_the_config_is_refused() {
    let text =
        "webhooks = [{ format = \"slack\", url_env = \"https://hooks.slack.com/services/T/B/x\" }]";
    let error = toml::from_str::<NotificationsConfig>(text).expect_err("a URL is refused");
    assert!(error.to_string().contains("not the URL itself"), "{error}");
    let ok = WebhookConfig {
        format: WebhookFormat::Slack,
        url_env: VariableName::try_from("SLACK_WEBHOOK_URL".to_owned()).expect("a name"),
    };
    assert_eq!(ok.url_env.as_str(), "SLACK_WEBHOOK_URL");
}
