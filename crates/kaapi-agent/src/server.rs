//! The agent process body: its JSON API on 127.0.0.1 (bearer token), the reconcile loop, the
//! ingress supervisor, and a clean exit on `POST /v1/shutdown`, SIGTERM or SIGINT (containers
//! keep running, and so does the ingress process).
//!
//! `GET /metrics` needs no token: it is read-only, holds no secret (counts per environment,
//! release and service), and the API listens on 127.0.0.1 only; a scraper on this machine reads
//! the port from `agent.json`. Every other route needs the bearer token.

use std::path::Path;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::api::{AgentEndpoint, EnvironmentSpec, RolloutQuery};
use super::error::AgentError;
use super::handshake;
use super::ingress::{IngressCommand, IngressLink};
use super::ingress_sync;
use super::metrics;
use super::private;
use super::reconcile;
use super::rollout::{self, BeginError};
use super::runtime::Agent;
use super::store::{write_private, Store};
use super::warm;

pub const ENDPOINT_FILE: &str = "agent.json";
const LOCK_FILE: &str = "agent.lock";
/// How long a stopping agent waits for cut-off rollouts to close the listeners they opened (a
/// control request is bounded by 5 s).
const ROLLOUT_CLEANUP: std::time::Duration = std::time::Duration::from_secs(10);

struct ApiState {
    agent: Arc<Agent>,
    token: String,
    port: u16,
    /// What the handshake answers (see [`handshake::reported_version`]).
    version: String,
    shutdown: watch::Sender<bool>,
}

/// Stops everything the agent runs when `serve` returns or its future is dropped.
struct StopGuard {
    agent: Arc<Agent>,
    shutdown: watch::Sender<bool>,
}

impl Drop for StopGuard {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.agent.close_all();
    }
}

/// Runs the agent until it is told to stop; its ingress runs as `ingress` says.
pub async fn serve(state_dir: &Path, ingress: IngressCommand) -> Result<(), AgentError> {
    private::ensure_dir(state_dir)?;
    // One agent per state directory: the lock dies with the process, never goes stale.
    let lock_path = state_dir.join(LOCK_FILE);
    let lock = private::open_file(&lock_path, private::Access::ReadWrite)?;
    if lock.try_lock().is_err() {
        return Err(AgentError::Start(format!(
            "another agent already runs for {}; stop it with `kaapi-deploy agent stop`",
            state_dir.display()
        )));
    }

    let containers = super::docker::Containers::connect().await?;
    let store = Store::open(state_dir)?;
    let link = IngressLink::new(state_dir, ingress);
    let agent = Arc::new(Agent::new(containers, store, link));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let guard = StopGuard {
        agent: Arc::clone(&agent),
        shutdown: shutdown.clone(),
    };
    reconcile::restore(&agent).await;

    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| AgentError::Network(format!("cannot listen on 127.0.0.1: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| AgentError::Network(format!("cannot read the API address: {e}")))?
        .port();
    let token = format!("{:032x}", rand::random::<u128>());
    let endpoint = AgentEndpoint {
        pid: std::process::id(),
        port,
        token: token.clone(),
        version: handshake::reported_version(),
    };
    let endpoint_path = state_dir.join(ENDPOINT_FILE);
    write_private(&endpoint_path, &serde_json::to_vec_pretty(&endpoint)?)?;
    eprintln!(
        "agent: listening on 127.0.0.1:{port} (pid {}), state in {}",
        endpoint.pid,
        state_dir.display()
    );

    tokio::spawn(reconcile::run(Arc::clone(&agent), shutdown_rx.clone()));
    tokio::spawn(ingress_sync::run(Arc::clone(&agent), shutdown_rx.clone()));
    tokio::spawn(metrics::run_sampler(
        Arc::clone(&agent),
        shutdown_rx.clone(),
    ));
    let api = Arc::new(ApiState {
        agent: Arc::clone(&agent),
        token,
        port,
        version: endpoint.version.clone(),
        shutdown: shutdown.clone(),
    });
    let result = axum::serve(listener, router(api))
        .with_graceful_shutdown(stop_requested(shutdown_rx))
        .await
        .map_err(|e| AgentError::Network(format!("the agent API failed: {e}")));

    // A rollout cut off here must close the listeners it opened before this process ends.
    let _ = shutdown.send(true);
    if !rollout::wait_ended(&agent, ROLLOUT_CLEANUP).await {
        eprintln!(
            "agent: a rollout did not end within {} s; the next agent closes what it left open",
            ROLLOUT_CLEANUP.as_secs()
        );
    }
    // Nothing would stop them once the agent is gone.
    warm::remove_all(&agent).await;
    drop(guard);
    // Only remove the endpoint if it is still ours (a newer agent may have replaced it).
    if let Ok(bytes) = std::fs::read(&endpoint_path) {
        if serde_json::from_slice::<AgentEndpoint>(&bytes).is_ok_and(|e| e == endpoint) {
            let _ = std::fs::remove_file(&endpoint_path);
        }
    }
    eprintln!("agent: stopped (containers keep running)");
    drop(lock);
    result
}

async fn stop_requested(mut shutdown: watch::Receiver<bool>) {
    tokio::select! {
        _ = shutdown.wait_for(|stop| *stop) => {}
        _ = stop_signal() => {}
    }
}

/// Resolves on SIGTERM or SIGINT (a process run in a terminal stops cleanly on Ctrl-C too).
pub(crate) async fn stop_signal() {
    use tokio::signal::unix::SignalKind;
    tokio::select! {
        _ = signal(SignalKind::terminate(), "SIGTERM") => eprintln!("SIGTERM received"),
        _ = signal(SignalKind::interrupt(), "SIGINT") => eprintln!("SIGINT received"),
    }
}

/// Resolves when the signal arrives; never when it cannot be watched (said once).
async fn signal(kind: tokio::signal::unix::SignalKind, name: &str) {
    match tokio::signal::unix::signal(kind) {
        Ok(mut signal) => {
            signal.recv().await;
        }
        Err(e) => {
            eprintln!("cannot watch {name}: {e}");
            std::future::pending::<()>().await;
        }
    }
}

fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/environments/{env}/rollouts", put(start_rollout))
        .route("/v1/environments/{env}/rollouts/{id}", get(rollout_state))
        .route(
            "/v1/environments/{env}",
            get(environment_state).delete(remove_environment),
        )
        .route("/v1/shutdown", post(shutdown))
        .route("/v1/environments/{env}/metrics", get(metrics_series))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            authorize,
        ))
        // Added after the token layer, so outside it (see the module doc).
        .route("/metrics", get(prometheus_metrics))
        // Added after the token check: a client proves the agent here before sending the token.
        .route(handshake::PATH, post(answer_handshake))
        .with_state(state)
}

async fn authorize(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), state.token.as_bytes()) => {
            next.run(request).await
        }
        _ => error(StatusCode::UNAUTHORIZED, "missing or wrong agent token"),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn answer_handshake(
    State(state): State<Arc<ApiState>>,
    Json(challenge): Json<handshake::Challenge>,
) -> Response {
    if !handshake::is_valid_nonce(&challenge.nonce) {
        return error(StatusCode::BAD_REQUEST, "the nonce must be 64 hex digits");
    }
    Json(handshake::answer(
        &state.token,
        state.port,
        &challenge.nonce,
        &state.version,
    ))
    .into_response()
}

async fn health() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

async fn start_rollout(
    State(state): State<Arc<ApiState>>,
    UrlPath(env): UrlPath<String>,
    Query(query): Query<RolloutQuery>,
    Json(spec): Json<EnvironmentSpec>,
) -> Response {
    if spec.environment != env {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "the URL names environment `{env}` but the spec is for `{}`",
                spec.environment
            ),
        );
    }
    let shutdown = state.shutdown.subscribe();
    match rollout::begin(Arc::clone(&state.agent), spec, query.mode, shutdown) {
        Ok(ticket) => (StatusCode::ACCEPTED, Json(ticket)).into_response(),
        Err(BeginError::Invalid(message)) => error(StatusCode::BAD_REQUEST, &message),
        Err(BeginError::Busy(message)) => error(StatusCode::CONFLICT, &message),
    }
}

async fn rollout_state(
    State(state): State<Arc<ApiState>>,
    UrlPath((env, id)): UrlPath<(String, String)>,
) -> Response {
    match state.agent.environment(&env).and_then(|e| e.rollout(&id)) {
        Some(rollout) => Json(rollout).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            &format!("no rollout `{id}` of environment `{env}`"),
        ),
    }
}

async fn environment_state(
    State(state): State<Arc<ApiState>>,
    UrlPath(env): UrlPath<String>,
) -> Response {
    let Some(environment) = state.agent.environment(&env) else {
        return error(StatusCode::NOT_FOUND, &format!("no environment `{env}`"));
    };
    match environment.state().await {
        Some(environment) => Json(environment).into_response(),
        None => error(StatusCode::NOT_FOUND, &format!("no environment `{env}`")),
    }
}

async fn remove_environment(
    State(state): State<Arc<ApiState>>,
    UrlPath(env): UrlPath<String>,
) -> Response {
    let agent = &state.agent;
    let Some(environment) = agent.forget(&env) else {
        return StatusCode::NO_CONTENT.into_response();
    };
    environment.close_ingresses(&agent.ingress).await;
    let mut current = environment.current.lock().await;
    let replicas: Vec<_> = std::mem::take(&mut current.replicas)
        .into_values()
        .flatten()
        .collect();
    let app = current
        .spec
        .as_ref()
        .map(|s| s.app.clone())
        .or_else(|| environment.app());
    current.spec = None;
    warm::remove_from(&agent.containers, &mut current).await;
    drop(current);
    agent.discard(&replicas).await;
    // Also whatever a rollout in progress started.
    if let Some(app) = app {
        match agent.containers.list_replicas(&app, &env).await {
            Ok(listed) => {
                for container in listed {
                    agent.containers.remove(&container.id).await;
                }
            }
            Err(e) => return error(StatusCode::BAD_GATEWAY, &e.to_string()),
        }
    }
    if let Err(e) = agent.store.remove(&env) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
    }
    // Nothing left to serve: the ingress process goes too (the next rollout starts one).
    if agent.environments().is_empty() && agent.store.records().is_empty() {
        if let Err(e) = agent.ingress.stop().await {
            return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn shutdown(State(state): State<Arc<ApiState>>) -> Response {
    let _ = state.shutdown.send(true);
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "status": "stopping" })),
    )
        .into_response()
}

async fn metrics_series(
    State(state): State<Arc<ApiState>>,
    UrlPath(env): UrlPath<String>,
) -> Response {
    metrics::refresh(&state.agent).await;
    match state.agent.environment(&env) {
        Some(environment) => Json(environment.metrics.series(&env)).into_response(),
        None => error(StatusCode::NOT_FOUND, &format!("no environment `{env}`")),
    }
}

async fn prometheus_metrics(State(state): State<Arc<ApiState>>) -> Response {
    metrics::refresh(&state.agent).await;
    let environments: Vec<_> = state
        .agent
        .environments()
        .into_iter()
        .map(|e| (e.name.clone(), Arc::clone(&e.metrics)))
        .collect();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(&environments),
    )
        .into_response()
}
