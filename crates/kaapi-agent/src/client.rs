//! The engine's side of the agent API: find (or start) the agent, roll out, poll, inspect.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

use super::api::{
    AgentEndpoint, EnvironmentSpec, EnvironmentState, MetricsSeries, RolloutMode, RolloutPhase,
    RolloutState, RolloutTicket,
};
use super::error::AgentError;
use super::handshake;
use super::server::ENDPOINT_FILE;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const START_TIMEOUT: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(50);
/// Consecutive failed polls after which the agent counts as gone.
const POLL_FAILURES: u32 = 20;

#[derive(Clone)]
pub struct AgentClient {
    endpoint: AgentEndpoint,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl AgentClient {
    /// The running agent of `state_dir`, or `None` when none answers (no or stale agent.json,
    /// or a listener that cannot prove it is the agent: it is sent nothing but a nonce).
    pub async fn connect(state_dir: &Path) -> Result<Option<Self>, AgentError> {
        match find(state_dir).await? {
            Found::Proven(client) => Ok(Some(*client)),
            Found::Unproven(_) | Found::Nothing => Ok(None),
        }
    }

    /// The running agent, started first when none answers: `{program} agent run --state-dir D`,
    /// detached in its own process group so it outlives the CLI, logging to `D/agent.log`. An
    /// agent of another version is stopped first (its containers keep running and the new agent
    /// adopts them).
    pub async fn ensure_running(state_dir: &Path, program: &Path) -> Result<Self, AgentError> {
        match find(state_dir).await? {
            Found::Proven(client) if client.endpoint.version == handshake::VERSION => {
                return Ok(*client)
            }
            Found::Proven(client) => {
                eprintln!(
                    "restarting the agent: it runs version {}, this is {}",
                    client.endpoint.version,
                    handshake::VERSION
                );
                client.shutdown().await?;
            }
            Found::Unproven(endpoint) => stop_unproven_agent(state_dir, &endpoint).await?,
            Found::Nothing => {}
        }
        crate::private::ensure_dir(state_dir)?;
        let (log, log_path) = crate::agent_log::open(state_dir, crate::agent_log::ROTATE_BYTES)?;
        let log_err = log
            .try_clone()
            .map_err(|e| AgentError::io("cannot open", &log_path, e))?;
        let mut child = {
            use std::os::unix::process::CommandExt;
            std::process::Command::new(program)
                .arg("agent")
                .arg("run")
                .arg("--state-dir")
                .arg(state_dir)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err)
                // Its own process group: Ctrl-C in the CLI's terminal does not reach it.
                .process_group(0)
                .spawn()
                .map_err(|e| AgentError::Start(format!("cannot run {}: {e}", program.display())))?
        };
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if let Some(client) = AgentClient::connect(state_dir).await? {
                return Ok(client);
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Another agent may have won a start race; it answers then.
                if let Some(client) = AgentClient::connect(state_dir).await? {
                    return Ok(client);
                }
                return Err(AgentError::Start(format!(
                    "it exited ({status}); see {}: {}",
                    log_path.display(),
                    last_line(&log_path)
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(AgentError::Start(format!(
            "it did not answer within {} s; see {}",
            START_TIMEOUT.as_secs(),
            log_path.display()
        )))
    }

    fn new(endpoint: AgentEndpoint) -> Self {
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(10))
            .build_http();
        AgentClient { endpoint, http }
    }

    /// Challenges the listener of the endpoint; on a valid proof, the version it answered
    /// replaces the one recorded in agent.json.
    async fn prove(mut self) -> Option<Self> {
        let nonce = handshake::new_nonce();
        let challenge = serde_json::to_vec(&handshake::Challenge {
            nonce: nonce.clone(),
        })
        .ok()?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!(
                "http://127.0.0.1:{}{}",
                self.endpoint.port,
                handshake::PATH
            ))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(challenge)))
            .ok()?;
        let response = self.http.request(request).await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body = response.into_body().collect().await.ok()?.to_bytes();
        let proof: handshake::Proof = serde_json::from_slice(&body).ok()?;
        if !handshake::verify(&self.endpoint.token, self.endpoint.port, &nonce, &proof) {
            return None;
        }
        self.endpoint.version = proof.version;
        Some(self)
    }

    pub fn endpoint(&self) -> &AgentEndpoint {
        &self.endpoint
    }

    pub async fn health(&self) -> Result<(), AgentError> {
        self.call::<serde_json::Value>(Method::GET, "/v1/health", None)
            .await
            .map(|_| ())
    }

    pub async fn rollout(
        &self,
        spec: &EnvironmentSpec,
        mode: RolloutMode,
    ) -> Result<RolloutTicket, AgentError> {
        let path = format!(
            "/v1/environments/{}/rollouts?mode={}",
            segment(&spec.environment)?,
            mode.as_str()
        );
        self.call(Method::PUT, &path, Some(serde_json::to_vec(spec)?))
            .await
    }

    pub async fn rollout_state(&self, env: &str, id: &str) -> Result<RolloutState, AgentError> {
        let path = format!(
            "/v1/environments/{}/rollouts/{}",
            segment(env)?,
            segment(id)?
        );
        self.call(Method::GET, &path, None).await
    }

    /// Polls until the rollout ends, passing each new progress message to `on_message`.
    pub async fn wait_rollout(
        &self,
        env: &str,
        id: &str,
        on_message: impl Fn(&str),
    ) -> Result<RolloutState, AgentError> {
        let mut seen = 0;
        let mut failures = 0;
        loop {
            match self.rollout_state(env, id).await {
                Ok(state) => {
                    failures = 0;
                    for message in state.messages.iter().skip(seen) {
                        on_message(message);
                    }
                    seen = state.messages.len();
                    if state.phase != RolloutPhase::Running {
                        return Ok(state);
                    }
                }
                Err(e @ AgentError::Api { .. }) => return Err(e),
                Err(e) => {
                    failures += 1;
                    if failures >= POLL_FAILURES {
                        return Err(AgentError::Network(format!(
                            "lost the agent while rollout {id} of `{env}` ran: {e}"
                        )));
                    }
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The environment's state, `None` when the agent does not know it.
    pub async fn environment(&self, env: &str) -> Result<Option<EnvironmentState>, AgentError> {
        let path = format!("/v1/environments/{}", segment(env)?);
        match self.call(Method::GET, &path, None).await {
            Ok(state) => Ok(Some(state)),
            Err(AgentError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The environment's recent traffic, `None` when the agent does not know it.
    pub async fn metrics_series(&self, env: &str) -> Result<Option<MetricsSeries>, AgentError> {
        let path = format!("/v1/environments/{}/metrics", segment(env)?);
        match self.call(Method::GET, &path, None).await {
            Ok(series) => Ok(Some(series)),
            Err(AgentError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes every replica of the environment and closes its ingress.
    pub async fn remove_environment(&self, env: &str) -> Result<(), AgentError> {
        let path = format!("/v1/environments/{}", segment(env)?);
        self.send(Method::DELETE, &path, None).await.map(|_| ())
    }

    /// Asks the agent to exit (its containers keep running) and waits until it stopped
    /// answering and, when it is another process, until that process ended (at most 10 s).
    pub async fn shutdown(&self) -> Result<(), AgentError> {
        self.send(Method::POST, "/v1/shutdown", None).await?;
        let asked = Instant::now();
        let own_process = self.endpoint.pid == std::process::id();
        while asked.elapsed() < Duration::from_secs(10) {
            if self.health().await.is_err()
                && (own_process || !crate::process::alive(self.endpoint.pid))
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(AgentError::Network(format!(
            "the agent (pid {}) did not stop within 10 s",
            self.endpoint.pid
        )))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, AgentError> {
        let bytes = self.send(method, path, body).await?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, AgentError> {
        let uri = format!("http://127.0.0.1:{}{path}", self.endpoint.port);
        let request = Request::builder()
            .method(method)
            .uri(&uri)
            .header("authorization", format!("Bearer {}", self.endpoint.token))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| AgentError::Network(format!("cannot build a request to {uri}: {e}")))?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| AgentError::Network(format!("the agent did not answer {path} in time")))?
            .map_err(|e| AgentError::Network(format!("cannot reach the agent at {uri}: {e}")))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| AgentError::Network(format!("cannot read the agent's answer: {e}")))?
            .to_bytes();
        if status.is_success() {
            return Ok(bytes);
        }
        Err(AgentError::Api {
            status: status.as_u16(),
            message: api_message(status, &bytes),
        })
    }
}

fn api_message(status: StatusCode, bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(bytes).trim().to_owned();
            if text.is_empty() {
                status.to_string()
            } else {
                text
            }
        })
}

/// A name that is safe as one URL path segment.
fn segment(name: &str) -> Result<&str, AgentError> {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Ok(name)
    } else {
        Err(AgentError::Invalid(format!(
            "`{name}` is not a valid environment or rollout name; use letters, digits, `-`, `_`, `.`"
        )))
    }
}

/// What agent.json leads to.
enum Found {
    /// A listener that proved it holds the token.
    Proven(Box<AgentClient>),
    /// A live recorded process whose listener did not prove it (an impostor on its port, a
    /// hung agent, or one from before the handshake).
    Unproven(AgentEndpoint),
    Nothing,
}

async fn find(state_dir: &Path) -> Result<Found, AgentError> {
    let path = state_dir.join(ENDPOINT_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Nothing),
        Err(e) => return Err(AgentError::io("cannot read", &path, e)),
    };
    // A half-written or foreign file is as good as none: a new agent replaces it.
    let Ok(endpoint) = serde_json::from_slice::<AgentEndpoint>(&bytes) else {
        return Ok(Found::Nothing);
    };
    if !crate::process::alive(endpoint.pid) {
        return Ok(Found::Nothing);
    }
    let proving = AgentClient::new(endpoint.clone()).prove();
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, proving).await {
        Ok(Some(client)) => Ok(Found::Proven(Box::new(client))),
        _ => Ok(Found::Unproven(endpoint)),
    }
}

/// The recorded process is asked to stop with SIGTERM only when its command line shows it is
/// this directory's agent (it may be one that predates the handshake); any other process (a
/// reused pid) is left alone and simply replaced in agent.json by the new agent.
async fn stop_unproven_agent(state_dir: &Path, endpoint: &AgentEndpoint) -> Result<(), AgentError> {
    if endpoint.pid == std::process::id() || !crate::process::is_agent_of(endpoint.pid, state_dir) {
        return Ok(());
    }
    eprintln!(
        "restarting the agent (pid {}): it does not answer the handshake",
        endpoint.pid
    );
    crate::process::terminate(endpoint.pid)
        .map_err(|e| AgentError::Start(format!("cannot stop agent pid {}: {e}", endpoint.pid)))?;
    let asked = Instant::now();
    while crate::process::alive(endpoint.pid) {
        if asked.elapsed() > START_TIMEOUT {
            return Err(AgentError::Start(format!(
                "the agent (pid {}) did not stop within {} s; stop it with `kill {}`",
                endpoint.pid,
                START_TIMEOUT.as_secs(),
                endpoint.pid
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn last_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_default()
}
