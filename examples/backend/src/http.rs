//! A small HTTP/1.1 server: one thread per connection, keep-alive, and a
//! graceful shutdown on SIGTERM/SIGINT.
//!
//! std threads instead of an async runtime keep the dependency tree (and the
//! static binary) small; the load this example sees is ~1000 req/s through a
//! proxy that reuses connections, which threads handle easily.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::config::{Break, Config};
use crate::{db, signals};

/// How often a blocked read wakes up to look at the shutdown flag.
const TICK: Duration = Duration::from_millis(200);
/// Idle keep-alive connections are closed after this long. Longer than the
/// usual proxy pool idle timeout, so the proxy closes first and never sends
/// a request on a connection we are closing.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(75);
/// A request must arrive completely within this long after its first byte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_HEAD_BYTES: usize = 32 * 1024;
const MAX_HEADERS: usize = 100;
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Beyond this many open connections new ones get a 503, so a flood cannot
/// exhaust threads or file descriptors.
const MAX_CONNECTIONS: usize = 2048;
const THREAD_STACK: usize = 256 * 1024;

const HEALTH_PATH: &str = "/api/v1/utils/health/";

struct Shared {
    config: Config,
    shutting_down: AtomicBool,
    /// Open connections; the condvar is signalled whenever one closes.
    open: Mutex<usize>,
    closed: Condvar,
}

impl Shared {
    fn open_count(&self) -> MutexGuard<'_, usize> {
        // A panicking connection thread must not take the server down.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stopping(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

/// Decrements the open-connection count when a connection thread ends,
/// including by panic.
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let mut open = self.0.open_count();
        *open = open.saturating_sub(1);
        self.0.closed.notify_all();
    }
}

pub fn serve(config: &Config) -> ExitCode {
    if config.break_mode == Break::Crash {
        eprintln!("error: deliberately broken release (BREAK=crash): refusing to start");
        return ExitCode::FAILURE;
    }
    // Handlers go in before binding so that an early SIGTERM is not lost.
    let signals = match signals::channel() {
        Ok(rx) => rx,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(delay) = config.startup_delay {
        println!("waiting {delay:?} before listening (STARTUP_DELAY_SECS)");
        std::thread::sleep(delay);
    }
    let addr = SocketAddr::new(config.bind_host, config.port);
    let listener = match TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("error: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = match listener.local_addr() {
        Ok(local) => local,
        Err(e) => {
            eprintln!("error: cannot read listening address: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The real port matters when PORT=0 (tests pick a free one that way).
    println!(
        "kaapi-example-backend {} (release {}) listening on {local} (port {})",
        config.app_version,
        config.release,
        local.port()
    );

    let shared = Arc::new(Shared {
        config: config.clone(),
        shutting_down: AtomicBool::new(false),
        open: Mutex::new(0),
        closed: Condvar::new(),
    });
    let acceptor = Arc::clone(&shared);
    if let Err(e) = thread::Builder::new()
        .name("accept".to_owned())
        .spawn(move || accept_loop(listener, &acceptor))
    {
        eprintln!("error: cannot start accept thread: {e}");
        return ExitCode::FAILURE;
    }

    let signal = match signals.recv() {
        Ok(signal) => signal,
        Err(_) => {
            eprintln!("error: signal thread stopped");
            return ExitCode::FAILURE;
        }
    };
    shared.shutting_down.store(true, Ordering::SeqCst);
    wake_acceptor(local);
    let grace = config.shutdown_grace;
    println!(
        "received {signal}: not accepting new connections, finishing in-flight requests (up to {grace:?})"
    );
    // A second signal means the operator does not want to wait.
    let _ = thread::Builder::new()
        .name("second-signal".to_owned())
        .spawn(move || {
            if let Ok(signal) = signals.recv() {
                eprintln!("received {signal} again: exiting now");
                std::process::exit(1);
            }
        });

    let deadline = Instant::now() + grace;
    let mut open = shared.open_count();
    while *open > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        open = shared
            .closed
            .wait_timeout(open, left)
            .map(|(guard, _)| guard)
            .unwrap_or_else(|poisoned| poisoned.into_inner().0);
    }
    if *open > 0 {
        println!("grace period over, dropping {} open connections", *open);
    }
    println!("shutdown complete");
    ExitCode::SUCCESS
}

/// `accept` blocks, so after setting the shutdown flag we make one
/// connection of our own to wake it up; it then sees the flag and closes the
/// listening socket, so later clients are refused by the kernel.
fn wake_acceptor(local: SocketAddr) {
    let ip = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    // Failure is harmless: connections accepted later are closed unanswered.
    let _ = TcpStream::connect_timeout(&SocketAddr::new(ip, local.port()), TICK);
}

fn accept_loop(listener: TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping() {
            break;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                eprintln!("error: accept failed: {e}");
                // E.g. out of file descriptors: back off instead of spinning.
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        {
            let mut open = shared.open_count();
            if *open >= MAX_CONNECTIONS {
                drop(open);
                reject_overload(stream);
                continue;
            }
            *open += 1;
        }
        let guard = OpenGuard(Arc::clone(shared));
        let spawned = thread::Builder::new()
            .name("conn".to_owned())
            .stack_size(THREAD_STACK)
            .spawn(move || {
                let guard = guard;
                handle_connection(stream, &guard.0);
            });
        if let Err(e) = spawned {
            // The closure (with its guard and stream) was dropped, so the
            // count is already back down and the client sees a reset.
            eprintln!("error: cannot start connection thread: {e}");
        }
    }
    // Dropping the listener closes the socket: no new connections.
}

fn reject_overload(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let response = Response::json(503, &json!({"detail": "too many connections"}));
    let _ = stream.write_all(&response.to_bytes(false, true));
}

/// A parsed request head; the body (never needed by our routes) is skipped.
struct Request {
    method: String,
    target: String,
    keep_alive: bool,
}

enum ReadError {
    /// Answer with this status, then close.
    Reply(u16, &'static str),
    /// Just close: peer gone, timeout, shutdown while idle.
    Close,
}

struct Connection<'a> {
    stream: TcpStream,
    shared: &'a Shared,
    buf: Vec<u8>,
}

fn handle_connection(stream: TcpStream, shared: &Shared) {
    // Small JSON responses: send them now instead of waiting for Nagle.
    let _ = stream.set_nodelay(true);
    if stream.set_read_timeout(Some(TICK)).is_err()
        || stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_err()
    {
        return;
    }
    let mut conn = Connection {
        stream,
        shared,
        buf: Vec::with_capacity(4096),
    };
    loop {
        let (response, keep_alive, head) = match conn.read_request() {
            Ok(request) => {
                let head = request.method == "HEAD";
                let response = route(&request, &shared.config);
                (response, request.keep_alive, head)
            }
            Err(ReadError::Reply(status, detail)) => (
                Response::json(status, &json!({"detail": detail})),
                false,
                false,
            ),
            Err(ReadError::Close) => break,
        };
        // During shutdown the in-flight request is answered, then we close.
        let keep_alive = keep_alive && !shared.stopping();
        if conn
            .stream
            .write_all(&response.to_bytes(head, !keep_alive))
            .is_err()
            || !keep_alive
        {
            break;
        }
    }
    // Close our side cleanly so the client reads the whole last response.
    let _ = conn.stream.shutdown(Shutdown::Write);
}

impl Connection<'_> {
    fn read_request(&mut self) -> Result<Request, ReadError> {
        let mut started = if self.buf.is_empty() {
            None
        } else {
            Some(Instant::now())
        };
        let idle_since = Instant::now();
        let (request, head_len, body_len) = loop {
            if !self.buf.is_empty() {
                if let Some(parsed) = parse_head(&self.buf)? {
                    break parsed;
                }
                if self.buf.len() > MAX_HEAD_BYTES {
                    return Err(ReadError::Reply(431, "Request Header Fields Too Large"));
                }
            }
            self.fill(&mut started, idle_since)?;
        };
        // Skip the body so the next pipelined request starts at buf[0].
        let total = head_len.saturating_add(body_len);
        while self.buf.len() < total {
            self.fill(&mut started, idle_since)?;
        }
        self.buf.drain(..total);
        Ok(request)
    }

    /// Reads more bytes into the buffer, enforcing the idle and request
    /// timeouts and ending idle connections once shutdown has begun.
    fn fill(
        &mut self,
        started: &mut Option<Instant>,
        idle_since: Instant,
    ) -> Result<(), ReadError> {
        let mut chunk = [0u8; 8192];
        loop {
            match started {
                None if self.shared.stopping() => return Err(ReadError::Close),
                None if idle_since.elapsed() > KEEP_ALIVE_TIMEOUT => return Err(ReadError::Close),
                Some(t) if t.elapsed() > REQUEST_TIMEOUT => {
                    return Err(ReadError::Reply(408, "Request Timeout"))
                }
                _ => {}
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ReadError::Close),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    started.get_or_insert_with(Instant::now);
                    return Ok(());
                }
                Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(ReadError::Close),
            }
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Parses a complete request head at the start of `buf`; `Ok(None)` when
/// more bytes are needed. Returns the request, head length and body length.
fn parse_head(buf: &[u8]) -> Result<Option<(Request, usize, usize)>, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ReadError::Reply(431, "Request Header Fields Too Large"))
        }
        Err(_) => return Err(ReadError::Reply(400, "Bad Request")),
    };
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(ReadError::Reply(400, "Bad Request"));
    };

    // HTTP/1.1 keeps the connection open unless told otherwise; 1.0 the reverse.
    let mut keep_alive = minor >= 1;
    let mut body_len: Option<usize> = None;
    for header in req.headers.iter() {
        let value = std::str::from_utf8(header.value).unwrap_or("");
        if header.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        } else if header.name.eq_ignore_ascii_case("content-length") {
            let len: usize = value
                .trim()
                .parse()
                .map_err(|_| ReadError::Reply(400, "Bad Request"))?;
            if body_len.is_some_and(|prev| prev != len) {
                return Err(ReadError::Reply(400, "Bad Request"));
            }
            body_len = Some(len);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // Our routes take no body; rather than decode chunks, refuse.
            return Err(ReadError::Reply(411, "Length Required"));
        }
    }
    let body_len = body_len.unwrap_or(0);
    if body_len > MAX_BODY_BYTES {
        return Err(ReadError::Reply(413, "Request Entity Too Large"));
    }
    let request = Request {
        method: method.to_owned(),
        target: target.to_owned(),
        keep_alive,
    };
    Ok(Some((request, head_len, body_len)))
}

struct Response {
    status: u16,
    location: Option<String>,
    body: String,
}

impl Response {
    fn json(status: u16, body: &serde_json::Value) -> Response {
        Response {
            status,
            location: None,
            body: body.to_string(),
        }
    }

    fn to_bytes(&self, head_only: bool, close: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            self.status,
            reason(self.status),
            self.body.len()
        );
        if let Some(location) = &self.location {
            out.push_str(&format!("location: {location}\r\n"));
        }
        if self.status == 405 {
            out.push_str("allow: GET, HEAD\r\n");
        }
        out.push_str(if close {
            "connection: close\r\n\r\n"
        } else {
            // Needed by HTTP/1.0 clients; harmless for 1.1.
            "connection: keep-alive\r\n\r\n"
        });
        if !head_only {
            out.push_str(&self.body);
        }
        out.into_bytes()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

fn route(request: &Request, config: &Config) -> Response {
    let (path, query) = match request.target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (request.target.as_str(), None),
    };
    let known =
        matches!(path, "/" | "/version" | HEALTH_PATH) || path == HEALTH_PATH.trim_end_matches('/');
    if !known {
        return Response::json(404, &json!({"detail": "Not Found"}));
    }
    if request.method != "GET" && request.method != "HEAD" {
        return Response::json(405, &json!({"detail": "Method Not Allowed"}));
    }
    match path {
        "/" => Response::json(
            200,
            &json!({
                "message": "Hello from the kaapi-deploy example backend",
                "version": config.app_version,
            }),
        ),
        "/version" => Response::json(
            200,
            &json!({
                "version": config.app_version,
                "release": config.release,
                "replica": config.replica,
            }),
        ),
        HEALTH_PATH => match db::check_health(
            &config.database_path,
            config.break_mode,
            config.migrations_dir.as_deref(),
        ) {
            Ok(()) => Response::json(200, &json!(true)),
            Err(reason) => Response::json(503, &json!({"detail": reason})),
        },
        // Like FastAPI's redirect_slashes: the route is defined with the slash.
        _ => {
            let location = match query {
                Some(query) => format!("{HEALTH_PATH}?{query}"),
                None => HEALTH_PATH.to_owned(),
            };
            Response {
                status: 307,
                location: Some(location),
                body: String::new(),
            }
        }
    }
}
