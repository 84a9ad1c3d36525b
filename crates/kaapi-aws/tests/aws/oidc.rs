//! Native GitHub OIDC against a fake token endpoint (a tiny HTTP server on loopback) and moto's
//! STS: the token request carries the audience and the bearer token, and the credentials STS
//! hands out are the ones the next AWS calls use.

use std::sync::{Arc, Mutex};

use kaapi_aws::{load, Vars};
use kaapi_core::config::EnvironmentConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const REQUEST_TOKEN: &str = "request-token-5f1d";
const ROLE: &str = "arn:aws:iam::123456789012:role/kaapi-deploy";

/// What the fake endpoint saw: request line and headers, one string per request.
type Seen = Arc<Mutex<Vec<String>>>;

/// Serves `status` with `body` to every request, recording each request head.
async fn token_endpoint(status: &'static str, body: &'static str) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            record
                .lock()
                .expect("record")
                .push(String::from_utf8_lossy(&head).into_owned());
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    (
        format!("http://127.0.0.1:{port}/_apis/token?api-version=2.0"),
        seen,
    )
}

fn environment() -> EnvironmentConfig {
    toml::from_str(&format!(
        "engine = \"ecs\"\nregion = \"eu-west-1\"\nrole_arn = \"{ROLE}\"\n"
    ))
    .expect("environment")
}

fn vars(token_url: &str, moto: &str) -> Vars {
    [
        ("ACTIONS_ID_TOKEN_REQUEST_URL", token_url),
        ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN),
        ("GITHUB_REPOSITORY", "acme/kaapi"),
        ("GITHUB_RUN_ID", "4242"),
        ("AWS_ENDPOINT_URL", moto),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

#[tokio::test]
async fn the_oidc_token_is_exchanged_and_the_assumed_role_makes_the_next_calls() {
    let moto = kaapi_testkit::moto();
    let (url, seen) =
        token_endpoint("200 OK", r#"{"count":1,"value":"eyJhbGciOi.fake.jwt"}"#).await;

    let sdk = load(&environment(), Some("eu-west-1"), &vars(&url, &moto.url()))
        .await
        .expect("the exchange succeeds");

    let requests = seen.lock().expect("seen").clone();
    assert_eq!(
        requests.len(),
        1,
        "exactly one token request so far: {requests:?}"
    );
    let head = requests[0].to_lowercase();
    assert!(
        head.starts_with("get /_apis/token?api-version=2.0&audience=sts.amazonaws.com http/1.1"),
        "{head}"
    );
    assert!(
        head.contains(&format!("\r\nauthorization: bearer {REQUEST_TOKEN}\r\n")),
        "{head}"
    );

    let sts = aws_sdk_sts::Client::new(&sdk);
    let identity = sts
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity with the assumed credentials");
    assert_eq!(
        identity.arn(),
        Some("arn:aws:sts::123456789012:assumed-role/kaapi-deploy/kaapi-acme-kaapi-4242")
    );
    let again = sts.get_caller_identity().send().await.expect("second call");
    assert_eq!(again.arn(), identity.arn());
    assert_eq!(
        seen.lock().expect("seen").len(),
        1,
        "cached credentials serve the next calls without a new token"
    );
}

#[tokio::test]
async fn a_refused_token_request_fails_early_with_a_hint() {
    let moto = kaapi_testkit::moto();
    let (url, seen) = token_endpoint("403 Forbidden", r#"{"message":"no"}"#).await;

    let error = load(&environment(), Some("eu-west-1"), &vars(&url, &moto.url()))
        .await
        .expect_err("a 403 from the token endpoint is an error");

    let message = error.to_string();
    assert!(message.contains("403"), "{message}");
    assert!(message.contains("id-token: write"), "{message}");
    assert!(
        !message.contains(REQUEST_TOKEN),
        "never print the token: {message}"
    );
    assert_eq!(seen.lock().expect("seen").len(), 1);
}

#[tokio::test]
async fn present_credentials_skip_the_token_endpoint() {
    let moto = kaapi_testkit::moto();
    let (url, seen) = token_endpoint("200 OK", r#"{"value":"x"}"#).await;
    let mut vars = vars(&url, &moto.url());
    vars.insert("AWS_PROFILE".to_owned(), "ci".to_owned());

    load(&environment(), Some("eu-west-1"), &vars)
        .await
        .expect("the standard chain is configured without a network call");

    assert!(seen.lock().expect("seen").is_empty());
}
