//! The per-environment ingress: a reverse proxy on 127.0.0.1:{port} that sends each request to a
//! serving replica of the current release (round robin), counts in-flight requests per replica,
//! and retries once on another replica when an upstream fails before answering. Every answer is
//! counted on the environment's [`Metrics`] (release, status class, latency to the headers).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
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

use super::error::AgentError;
use super::metrics::{Metrics, ReleaseStats, StatusClass};
use super::replica::Replica;

const MAX_REQUEST_BODY: usize = 16 * 1024 * 1024;
/// Like a load balancer's idle timeout: a replica that hangs does not hold a client forever.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

type ProxyBody = BoxBody<Bytes, hyper::Error>;
type UpstreamClient = Client<HttpConnector, Full<Bytes>>;

/// The replicas the ingress may send traffic to; replaced atomically on a switch.
#[derive(Default)]
pub struct Backends {
    replicas: RwLock<Vec<Backend>>,
    next: AtomicUsize,
    /// The environment's counters, attached once when the ingress is given to it.
    metrics: OnceLock<Arc<Metrics>>,
}

/// A replica with the counters of its release, looked up when the set changes, not per request.
struct Backend {
    replica: Arc<Replica>,
    stats: Option<Arc<ReleaseStats>>,
}

impl Backends {
    pub fn set(&self, replicas: Vec<Arc<Replica>>) {
        let metrics = self.metrics.get();
        let backends = replicas
            .into_iter()
            .map(|replica| Backend {
                stats: metrics.map(|m| m.release(replica.release)),
                replica,
            })
            .collect();
        *self
            .replicas
            .write()
            .unwrap_or_else(PoisonError::into_inner) = backends;
    }

    /// Counts this ingress' answers on `metrics` from now on (the first call wins).
    pub fn count_into(&self, metrics: Arc<Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Picks a serving replica (not `avoid` when another one serves) and counts the request
    /// on it before the lock is released, so that a switch never misses an in-flight request.
    fn pick(&self, avoid: Option<&str>) -> Option<InFlight> {
        let replicas = self.replicas.read().unwrap_or_else(PoisonError::into_inner);
        let serving: Vec<&Backend> = replicas.iter().filter(|b| b.replica.is_serving()).collect();
        let preferred: Vec<&Backend> = serving
            .iter()
            .copied()
            .filter(|b| Some(b.replica.name.as_str()) != avoid)
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
        let replica = Arc::clone(&backend.replica);
        replica.begin_request();
        Some(InFlight(replica, backend.stats.clone()))
    }
}

/// Counts one request on a replica until the response body is finished or dropped; carries the
/// counters of the replica's release.
struct InFlight(Arc<Replica>, Option<Arc<ReleaseStats>>);

/// Marks a response the ingress made itself (no replica answered).
#[derive(Clone, Copy)]
struct AnsweredByIngress;

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end_request();
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

/// A listening ingress; dropping it (or [`Ingress::close`]) stops it.
pub struct Ingress {
    pub port: u16,
    pub backends: Arc<Backends>,
    closed: watch::Sender<bool>,
}

impl Ingress {
    /// Listens on 127.0.0.1:`port` (0: any free port).
    pub async fn open(port: u16) -> Result<Self, AgentError> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| {
            AgentError::Invalid(format!(
                "cannot open the ingress on 127.0.0.1:{port}: {e}; free the port or set another ingress port"
            ))
        })?;
        let port = listener
            .local_addr()
            .map_err(|e| AgentError::Network(format!("cannot read the ingress address: {e}")))?
            .port();
        let backends = Arc::new(Backends::default());
        let (closed, closed_rx) = watch::channel(false);
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        // The timer lets the pool sweep idle connections to replaced replicas (each has its
        // own host port, so it is a new pool key); without it they stay until the agent exits.
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let proxy = Arc::new(Proxy {
            backends: Arc::clone(&backends),
            client,
        });
        tokio::spawn(accept_loop(listener, proxy, closed_rx));
        Ok(Ingress {
            port,
            backends,
            closed,
        })
    }

    pub fn close(&self) {
        let _ = self.closed.send(true);
    }
}

impl Drop for Ingress {
    fn drop(&mut self) {
        self.close();
    }
}

struct Proxy {
    backends: Arc<Backends>,
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
                eprintln!("agent: ingress accept failed: {e}");
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
        match (&counted_on, self.backends.metrics.get()) {
            (Some(stats), _) => stats.observe(class, started.elapsed()),
            (None, Some(metrics)) => metrics.unrouted().observe(class, started.elapsed()),
            (None, None) => {}
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
            let Some(in_flight) = self.backends.pick(avoid.as_deref()) else {
                return local(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no healthy replica is serving this environment right now",
                );
            };
            counted_on.clone_from(&in_flight.1);
            let Some(port) = in_flight.0.host_port else {
                avoid = Some(in_flight.0.name.clone());
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
                        in_flight.0.name,
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
                        in_flight.0.mark_unreachable();
                    }
                    last_error = format!("replica {}: {e}", in_flight.0.name);
                    avoid = Some(in_flight.0.name.clone());
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
    use crate::replica::Health;

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

    fn replica(name: &str, port: u16) -> Arc<Replica> {
        Arc::new(Replica::new(
            format!("id-{name}"),
            name.to_owned(),
            "web".to_owned(),
            1,
            Some(port),
            Health::Healthy,
        ))
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
        let ingress = Ingress::open(0).await.expect("open");
        let alive = replica("alive", upstream("alive", Duration::ZERO).await);
        let dead = replica("dead", closed_port().await);
        ingress
            .backends
            .set(vec![Arc::clone(&dead), Arc::clone(&alive)]);
        for _ in 0..6 {
            // Even a POST: nothing reached the dead replica, so it is safe to resend.
            assert_eq!(
                send(ingress.port, Method::POST).await,
                (StatusCode::OK, "alive".to_owned())
            );
        }
        assert!(
            !dead.is_serving(),
            "a replica refusing connections is skipped"
        );
        assert_eq!((dead.in_flight(), alive.in_flight()), (0, 0));
    }

    #[tokio::test]
    async fn no_serving_replica_gives_503_and_a_switch_takes_effect_at_once() {
        let ingress = Ingress::open(0).await.expect("open");
        let (status, body) = send(ingress.port, Method::GET).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("no healthy replica"), "{body}");

        let old = replica("old", upstream("old", Duration::ZERO).await);
        ingress.backends.set(vec![Arc::clone(&old)]);
        assert_eq!(send(ingress.port, Method::GET).await.1, "old");
        let new = replica("new", upstream("new", Duration::ZERO).await);
        ingress.backends.set(vec![new]);
        assert_eq!(send(ingress.port, Method::GET).await.1, "new");
    }

    #[tokio::test]
    async fn in_flight_requests_are_counted_until_their_response_ends() {
        let ingress = Ingress::open(0).await.expect("open");
        let slow = replica("slow", upstream("slow", Duration::from_millis(500)).await);
        ingress.backends.set(vec![Arc::clone(&slow)]);
        let port = ingress.port;
        let request = tokio::spawn(async move { send(port, Method::GET).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(slow.in_flight(), 1);
        assert_eq!(request.await.expect("request task").1, "slow");
        assert_eq!(slow.in_flight(), 0);
    }

    #[tokio::test]
    async fn every_answer_is_counted_on_its_release_and_status_class() {
        let ingress = Ingress::open(0).await.expect("open");
        let metrics = Arc::new(Metrics::default());
        ingress.backends.count_into(Arc::clone(&metrics));
        let (status, _) = send(ingress.port, Method::GET).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let live = replica("live", upstream("live", Duration::ZERO).await);
        ingress.backends.set(vec![live]);
        for _ in 0..3 {
            assert_eq!(send(ingress.port, Method::GET).await.0, StatusCode::OK);
        }
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
        let ingress = Ingress::open(0).await.expect("open");
        let port = ingress.port;
        drop(ingress);
        let mut reopened = None;
        for _ in 0..50 {
            if let Ok(again) = Ingress::open(port).await {
                reopened = Some(again);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(reopened.map(|i| i.port), Some(port));
    }
}
