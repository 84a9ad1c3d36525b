//! One ingress listener: a reverse proxy on 127.0.0.1:{port} that sends each request to a
//! serving backend of its table (round robin), counts in-flight requests per backend, and
//! retries once on another backend when an upstream fails before answering. A backend whose
//! connection failed is skipped for [`UNREACHABLE_FOR`] (or until the agent pushes it serving
//! again after a pause). Every answer is counted on the listener's [`Metrics`] (release, status
//! class, latency to the headers).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::protocol;
use crate::error::AgentError;
use crate::metrics::{Metrics, ReleaseStats, StatusClass};

const MAX_REQUEST_BODY: usize = 16 * 1024 * 1024;
/// Like a load balancer's idle timeout: a replica that hangs does not hold a client forever.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a backend that refused a connection gets no request (as a passive health check's
/// fail timeout); the agent's probes decide beyond that.
pub const UNREACHABLE_FOR: Duration = Duration::from_secs(2);

type ProxyBody = BoxBody<Bytes, hyper::Error>;
type UpstreamClient = Client<HttpConnector, Full<Bytes>>;

/// What every listener of the process shares: the upstream connection pool and the state of
/// each backend by name (kept across table pushes, so that in-flight counts survive a switch).
pub struct Shared {
    client: UpstreamClient,
    backends: Mutex<HashMap<String, Arc<BackendState>>>,
}

/// The ingress' own view of one backend.
#[derive(Default)]
pub struct BackendState {
    in_flight: AtomicU64,
    unreachable_until: Mutex<Option<Instant>>,
}

impl BackendState {
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }

    fn reachable(&self) -> bool {
        lock(&self.unreachable_until).is_none_or(|until| Instant::now() >= until)
    }

    fn mark_unreachable(&self) {
        *lock(&self.unreachable_until) = Some(Instant::now() + UNREACHABLE_FOR);
    }

    fn clear_unreachable(&self) {
        *lock(&self.unreachable_until) = None;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub fn new() -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        // The timer lets the pool sweep idle connections to replaced replicas (each has its
        // own host port, so it is a new pool key); without it they stay until the process exits.
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Arc::new(Shared {
            client,
            backends: Mutex::new(HashMap::new()),
        })
    }

    fn backend(&self, name: &str) -> Arc<BackendState> {
        Arc::clone(lock(&self.backends).entry(name.to_owned()).or_default())
    }

    /// Requests in flight per backend name (only backends with some).
    pub fn in_flight(&self) -> std::collections::BTreeMap<String, u64> {
        lock(&self.backends)
            .iter()
            .map(|(name, state)| (name.clone(), state.in_flight()))
            .filter(|(_, count)| *count > 0)
            .collect()
    }

    /// Forgets backends no table holds and no request uses.
    fn prune(&self) {
        lock(&self.backends)
            .retain(|_, state| Arc::strong_count(state) > 1 || state.in_flight() > 0);
    }
}

/// The backends a listener may send traffic to; replaced whole on each push.
#[derive(Default)]
struct Table {
    backends: RwLock<Vec<Backend>>,
    next: AtomicUsize,
    metrics: Metrics,
}

/// A backend with the counters of its release, looked up when the table changes, not per
/// request.
struct Backend {
    entry: protocol::Backend,
    state: Arc<BackendState>,
    stats: Arc<ReleaseStats>,
}

impl Backend {
    fn is_serving(&self) -> bool {
        self.entry.serving && self.state.reachable()
    }
}

impl Table {
    /// Picks a serving backend (not `avoid` when another one serves) and counts the request
    /// on it before the lock is released, so that a switch never misses an in-flight request.
    fn pick(&self, avoid: Option<&str>) -> Option<InFlight> {
        let backends = self.backends.read().unwrap_or_else(PoisonError::into_inner);
        let serving: Vec<&Backend> = backends.iter().filter(|b| b.is_serving()).collect();
        let preferred: Vec<&Backend> = serving
            .iter()
            .copied()
            .filter(|b| Some(b.entry.name.as_str()) != avoid)
            .collect();
        let pool = if preferred.is_empty() {
            serving
        } else {
            preferred
        };
        if pool.is_empty() {
            return None;
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed) % pool.len();
        let backend = pool[index];
        backend.state.in_flight.fetch_add(1, Ordering::SeqCst);
        Some(InFlight {
            name: backend.entry.name.clone(),
            port: backend.entry.port,
            state: Arc::clone(&backend.state),
            stats: Arc::clone(&backend.stats),
        })
    }
}

/// Counts one request on a backend until the response body is finished or dropped; carries the
/// counters of the backend's release.
struct InFlight {
    name: String,
    port: Option<u16>,
    state: Arc<BackendState>,
    stats: Arc<ReleaseStats>,
}

/// Marks a response the ingress made itself (no replica answered).
#[derive(Clone, Copy)]
struct AnsweredByIngress;

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An upstream response body that keeps its request counted until it ends.
struct CountedBody {
    inner: Incoming,
    _in_flight: InFlight,
}

impl Body for CountedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A listening ingress; dropping it (or [`Listener::close`]) stops it.
pub struct Listener {
    pub port: u16,
    /// Who owns it (`environment/service`).
    pub label: String,
    table: Arc<Table>,
    shared: Arc<Shared>,
    closed: watch::Sender<bool>,
}

impl Listener {
    /// Listens on 127.0.0.1:`port` (0: any free port).
    pub async fn open(port: u16, label: &str, shared: &Arc<Shared>) -> Result<Self, AgentError> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| {
            AgentError::Invalid(format!(
                "cannot open the ingress on 127.0.0.1:{port}: {e}; free the port or set another ingress port"
            ))
        })?;
        let port = listener
            .local_addr()
            .map_err(|e| AgentError::Network(format!("cannot read the ingress address: {e}")))?
            .port();
        let table = Arc::new(Table::default());
        let (closed, closed_rx) = watch::channel(false);
        let proxy = Arc::new(Proxy {
            table: Arc::clone(&table),
            client: shared.client.clone(),
        });
        tokio::spawn(accept_loop(listener, proxy, closed_rx));
        Ok(Listener {
            port,
            label: label.to_owned(),
            table,
            shared: Arc::clone(shared),
            closed,
        })
    }

    /// Replaces the table at once: from the moment this returns, no new request goes to a
    /// backend it does not hold as serving.
    pub fn set(&self, entries: Vec<protocol::Backend>) {
        let backends: Vec<Backend> = {
            let previous = self
                .table
                .backends
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            entries
                .into_iter()
                .map(|entry| {
                    let state = self.shared.backend(&entry.name);
                    // Pushed serving again after a pause: the agent's probe vouches for it.
                    let was_serving = previous
                        .iter()
                        .find(|b| b.entry.name == entry.name)
                        .is_some_and(|b| b.entry.serving);
                    if entry.serving && !was_serving {
                        state.clear_unreachable();
                    }
                    Backend {
                        stats: self.table.metrics.release(entry.release),
                        state,
                        entry,
                    }
                })
                .collect()
        };
        *self
            .table
            .backends
            .write()
            .unwrap_or_else(PoisonError::into_inner) = backends;
        self.shared.prune();
    }

    pub fn metrics(&self) -> &Metrics {
        &self.table.metrics
    }

    pub fn close(&self) {
        let _ = self.closed.send(true);
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.close();
    }
}

struct Proxy {
    table: Arc<Table>,
    client: UpstreamClient,
}

async fn accept_loop(listener: TcpListener, proxy: Arc<Proxy>, mut closed: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = closed.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("ingress: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let proxy = Arc::clone(&proxy);
        let mut closed = closed.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let proxy = Arc::clone(&proxy);
                async move { Ok::<_, Infallible>(proxy.handle(request, peer).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = closed.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
                }
            }
        });
    }
}

impl Proxy {
    /// Forwards one request and counts its answer.
    async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
        let started = Instant::now();
        let mut counted_on = None;
        let response = self.forward(request, peer, &mut counted_on).await;
        let status = response.status();
        let class = match response.extensions().get::<AnsweredByIngress>() {
            Some(_) if status == StatusCode::BAD_REQUEST => StatusClass::ClientError,
            Some(_) => StatusClass::IngressError,
            None => StatusClass::of(status.as_u16()),
        };
        match &counted_on {
            Some(stats) => stats.observe(class, started.elapsed()),
            None => self
                .table
                .metrics
                .unrouted()
                .observe(class, started.elapsed()),
        }
        response
    }

    /// `counted_on` gets the counters of the last replica tried.
    async fn forward(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        counted_on: &mut Option<Arc<ReleaseStats>>,
    ) -> Response<ProxyBody> {
        let (parts, body) = request.into_parts();
        let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                return local(
                    StatusCode::BAD_REQUEST,
                    &format!("cannot read the request body: {e}"),
                )
            }
        };
        let idempotent = matches!(
            parts.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::PUT
                | Method::DELETE
                | Method::TRACE
        );
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let mut avoid: Option<String> = None;
        let mut last_error = String::new();
        for _attempt in 0..2 {
            let Some(in_flight) = self.table.pick(avoid.as_deref()) else {
                return local(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no healthy replica is serving this environment right now",
                );
            };
            *counted_on = Some(Arc::clone(&in_flight.stats));
            let Some(port) = in_flight.port else {
                avoid = Some(in_flight.name.clone());
                continue;
            };
            let upstream = match upstream_request(&parts, &path, port, peer, body.clone()) {
                Ok(upstream) => upstream,
                Err(message) => return local(StatusCode::BAD_REQUEST, &message),
            };
            let answer = tokio::time::timeout(UPSTREAM_TIMEOUT, self.client.request(upstream));
            let Ok(answer) = answer.await else {
                return local(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!(
                        "replica {} did not answer within {} s",
                        in_flight.name,
                        UPSTREAM_TIMEOUT.as_secs()
                    ),
                );
            };
            match answer {
                Ok(response) => {
                    let (mut head, incoming) = response.into_parts();
                    strip_hop_by_hop(&mut head.headers);
                    let body = CountedBody {
                        inner: incoming,
                        _in_flight: in_flight,
                    };
                    return Response::from_parts(head, body.boxed());
                }
                Err(e) => {
                    // Nothing reached the replica when the connection failed: any method may
                    // be retried; otherwise only a method that is safe to repeat.
                    let connect_failed = e.is_connect();
                    if connect_failed {
                        in_flight.state.mark_unreachable();
                    }
                    last_error = format!("replica {}: {e}", in_flight.name);
                    avoid = Some(in_flight.name.clone());
                    if !(connect_failed || idempotent) {
                        break;
                    }
                }
            }
        }
        local(
            StatusCode::BAD_GATEWAY,
            &format!("upstream failed: {last_error}"),
        )
    }
}

fn upstream_request(
    parts: &hyper::http::request::Parts,
    path: &str,
    port: u16,
    peer: SocketAddr,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, String> {
    let uri: hyper::Uri = format!("http://127.0.0.1:{port}{path}")
        .parse()
        .map_err(|e| format!("invalid request path {path:?}: {e}"))?;
    let mut builder = Request::builder()
        .method(parts.method.clone())
        .uri(uri)
        .version(hyper::Version::HTTP_11);
    if let Some(headers) = builder.headers_mut() {
        headers.clone_from(&parts.headers);
        strip_hop_by_hop(headers);
        if let Ok(value) = HeaderValue::from_str(&peer.ip().to_string()) {
            headers.insert(HeaderName::from_static("x-forwarded-for"), value);
        }
        headers.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static("http"),
        );
    }
    builder
        .body(Full::new(body))
        .map_err(|e| format!("cannot forward the request: {e}"))
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(name);
    }
}

fn local(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "detail": format!("kaapi ingress: {message}") }).to_string();
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.extensions_mut().insert(AnsweredByIngress);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback upstream answering every request with `name`, slowly when asked to.
    async fn upstream(name: &'static str, delay: Duration) -> u16 {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_request| async move {
                        tokio::time::sleep(delay).await;
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(name))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        port
    }

    /// A port nothing listens on.
    async fn closed_port() -> u16 {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        listener.local_addr().expect("addr").port()
    }

    fn backend(name: &str, port: u16) -> protocol::Backend {
        protocol::Backend {
            name: name.to_owned(),
            release: 1,
            port: Some(port),
            serving: true,
        }
    }

    async fn open() -> (Listener, Arc<Shared>) {
        let shared = Shared::new();
        let listener = Listener::open(0, "local/web", &shared).await.expect("open");
        (listener, shared)
    }

    async fn send(port: u16, method: Method) -> (StatusCode, String) {
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let request = Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{port}/x"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let response = client.request(request).await.expect("ingress answers");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_request_to_a_dead_replica_is_retried_on_another_and_the_dead_one_is_avoided() {
        let (ingress, shared) = open().await;
        let alive = backend("alive", upstream("alive", Duration::ZERO).await);
        let dead = backend("dead", closed_port().await);
        ingress.set(vec![dead, alive]);
        for _ in 0..6 {
            // Even a POST: nothing reached the dead replica, so it is safe to resend.
            assert_eq!(
                send(ingress.port, Method::POST).await,
                (StatusCode::OK, "alive".to_owned())
            );
        }
        assert!(
            !shared.backend("dead").reachable(),
            "a replica refusing connections is skipped"
        );
        assert!(shared.in_flight().is_empty(), "{:?}", shared.in_flight());
    }

    #[tokio::test]
    async fn no_serving_replica_gives_503_and_a_switch_takes_effect_at_once() {
        let (ingress, _shared) = open().await;
        let (status, body) = send(ingress.port, Method::GET).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("no healthy replica"), "{body}");

        let old = backend("old", upstream("old", Duration::ZERO).await);
        ingress.set(vec![old.clone()]);
        assert_eq!(send(ingress.port, Method::GET).await.1, "old");
        let new = backend("new", upstream("new", Duration::ZERO).await);
        ingress.set(vec![new.clone()]);
        assert_eq!(send(ingress.port, Method::GET).await.1, "new");
        // Pushed as not serving (unhealthy or draining): no traffic, even as the only one.
        ingress.set(vec![protocol::Backend {
            serving: false,
            ..new
        }]);
        assert_eq!(
            send(ingress.port, Method::GET).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn in_flight_requests_are_counted_until_their_response_ends_even_after_a_switch() {
        let (ingress, shared) = open().await;
        let slow = backend("slow", upstream("slow", Duration::from_millis(500)).await);
        ingress.set(vec![slow]);
        let port = ingress.port;
        let request = tokio::spawn(async move { send(port, Method::GET).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Switched away while the request runs: it is still counted (the agent drains on it).
        ingress.set(vec![backend(
            "fast",
            upstream("fast", Duration::ZERO).await,
        )]);
        assert_eq!(shared.in_flight().get("slow"), Some(&1));
        assert_eq!(request.await.expect("request task").1, "slow");
        assert!(shared.in_flight().is_empty());
    }

    #[tokio::test]
    async fn every_answer_is_counted_on_its_release_and_status_class() {
        let (ingress, _shared) = open().await;
        let (status, _) = send(ingress.port, Method::GET).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        ingress.set(vec![backend(
            "live",
            upstream("live", Duration::ZERO).await,
        )]);
        for _ in 0..3 {
            assert_eq!(send(ingress.port, Method::GET).await.0, StatusCode::OK);
        }
        // What the agent reads and adds to its environment's metrics.
        let metrics = Arc::new(Metrics::default());
        metrics.absorb(ingress.port, &ingress.metrics().raw_counts());
        metrics.absorb(ingress.port, &ingress.metrics().raw_counts());
        let text = crate::metrics::render(&[("local".to_owned(), metrics)]);
        for expected in [
            r#"kaapi_ingress_requests_total{environment="local",release="1",class="2xx"} 3"#,
            r#"kaapi_ingress_requests_total{environment="local",release="1",class="5xx"} 0"#,
            r#"kaapi_ingress_requests_total{environment="local",release="none",class="error"} 1"#,
            r#"kaapi_ingress_request_duration_seconds_count{environment="local",release="1"} 3"#,
        ] {
            assert!(
                text.lines().any(|l| l == expected),
                "{expected} missing in\n{text}"
            );
        }
    }

    #[tokio::test]
    async fn closing_the_ingress_frees_its_port() {
        let (ingress, shared) = open().await;
        let port = ingress.port;
        drop(ingress);
        let mut reopened = None;
        for _ in 0..50 {
            if let Ok(again) = Listener::open(port, "local/web", &shared).await {
                reopened = Some(again);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(reopened.map(|i| i.port), Some(port));
    }
}
