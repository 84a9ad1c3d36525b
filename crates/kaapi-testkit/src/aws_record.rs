//! Records every request an AWS SDK client sends, as AWS receives it: the signing service, the
//! operation and its parameters. The recorder wraps the client's HTTP client, so it sees what
//! really goes on the wire, whether the answer comes from moto or from scripted responses.

use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use serde_json::{Map, Value};

/// One request: `service` is the SigV4 signing name (`ecs`, `logs`, `dynamodb`, `iam`, …),
/// `operation` the API operation (`UpdateService`), or `METHOD /path` for REST APIs whose
/// operation only the route names (Amazon MQ); `params` the JSON or form body as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub service: String,
    pub operation: String,
    pub params: Value,
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{} {}", self.service, self.operation, self.params)
    }
}

/// Shared by every client it wraps; clones see the same calls.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("recorder lock").clone()
    }

    /// `inner`, recording each request before sending it.
    pub fn wrap(&self, inner: SharedHttpClient) -> SharedHttpClient {
        SharedHttpClient::new(RecordingClient {
            inner,
            calls: Arc::clone(&self.calls),
        })
    }

    /// `config` with its requests recorded (plain HTTP: for moto on loopback).
    pub fn sdk_config(&self, config: &aws_config::SdkConfig) -> aws_config::SdkConfig {
        let http = aws_smithy_http_client::Builder::new().build_http();
        config
            .clone()
            .into_builder()
            .http_client(self.wrap(http))
            .build()
    }
}

#[derive(Debug)]
struct RecordingClient {
    inner: SharedHttpClient,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl HttpClient for RecordingClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(RecordingConnector {
            inner: self.inner.http_connector(settings, components),
            calls: Arc::clone(&self.calls),
        })
    }
}

#[derive(Debug)]
struct RecordingConnector {
    inner: SharedHttpConnector,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl HttpConnector for RecordingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let call = parse(&request);
        self.calls.lock().expect("recorder lock").push(call);
        self.inner.call(request)
    }
}

/// The call a request makes. What cannot be read stays visible (`?` service, the raw route) so
/// that a test mapping calls to permissions fails on it instead of skipping it.
fn parse(request: &HttpRequest) -> Call {
    let headers = request.headers();
    let service = headers
        .get("authorization")
        .and_then(signing_name)
        .unwrap_or("?")
        .to_owned();
    let body = request.body().bytes().unwrap_or_default();
    let text = String::from_utf8_lossy(body);
    let form = form_params(&text);
    let path = request
        .uri()
        .split("://")
        .nth(1)
        .map_or(request.uri(), |r| r.find('/').map_or("/", |i| &r[i..]));
    let operation = if let Some(target) = headers.get("x-amz-target") {
        target.rsplit('.').next().unwrap_or(target).to_owned()
    } else if let Some(Value::String(action)) = form.get("Action") {
        action.clone()
    } else if let Some((_, operation)) = path.split_once("/operation/") {
        // Smithy RPC v2 (CloudWatch): /service/NAME/operation/OPERATION
        operation.to_owned()
    } else {
        format!(
            "{} {}",
            request.method(),
            path.split('?').next().unwrap_or(path)
        )
    };
    let params = match serde_json::from_slice::<Value>(body) {
        Ok(json) => json,
        Err(_) if !form.is_empty() => Value::Object(form),
        Err(_) => Value::Null,
    };
    Call {
        service,
        operation,
        params,
    }
}

/// `AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/aws4_request, …` → SERVICE.
fn signing_name(authorization: &str) -> Option<&str> {
    let credential = authorization.split("Credential=").nth(1)?;
    credential.split([',', ' ']).next()?.split('/').nth(3)
}

/// `Action=GetRole&RoleName=x` → {"Action": "GetRole", "RoleName": "x"}.
fn form_params(text: &str) -> Map<String, Value> {
    let mut params = Map::new();
    if text.starts_with('{') {
        return params;
    }
    for pair in text.split('&') {
        if let Some((key, value)) = pair.split_once('=') {
            params.insert(decode(key), Value::String(decode(value)));
        }
    }
    params
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_and_signing_names_are_read() {
        let params = form_params("Action=GetRole&Version=2010-05-08&RoleName=kaapi%2Fdeploy+x");
        assert_eq!(params["Action"], "GetRole");
        assert_eq!(params["RoleName"], "kaapi/deploy x");
        assert_eq!(
            signing_name("AWS4-HMAC-SHA256 Credential=ANOTREAL/20090213/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=x"),
            Some("ecs")
        );
        assert_eq!(decode("100%"), "100%");
    }
}
