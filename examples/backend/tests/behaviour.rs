//! Runs the real binary and checks its externally visible behaviour.
//!
//! Every server binds 127.0.0.1 with PORT=0 and reports the port it got on
//! its start line, so tests can run in parallel without port races. Every
//! wait is bounded, and children are killed when a test fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kaapi-example-backend");
const STEP_TIMEOUT: Duration = Duration::from_secs(15);
const HEALTH: &str = "/api/v1/utils/health/";

/// Variables the binary reads; cleared so the caller's shell cannot leak in.
const APP_VARS: &[&str] = &[
    "APP_VERSION",
    "KAAPI_RELEASE",
    "HOSTNAME",
    "BREAK",
    "PORT",
    "BIND_HOST",
    "DATABASE_PATH",
    "WORKER_INTERVAL_SECS",
    "SHUTDOWN_GRACE_SECS",
];

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "kaapi-example-backend-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// A database path whose parent does not exist yet, as in a fresh volume.
    fn db(&self) -> PathBuf {
        self.0.join("data").join("app.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn command(args: &[&str], db: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for var in APP_VARS {
        cmd.env_remove(var);
    }
    cmd.env("BIND_HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("DATABASE_PATH", db);
    cmd.envs(env.iter().copied());
    cmd
}

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs a one-off command to completion, killing it if it hangs.
fn run(args: &[&str], db: &Path, env: &[(&str, &str)]) -> Output {
    let child = command(args, db, env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn binary");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(STEP_TIMEOUT) {
        Ok(result) => {
            let out = result.expect("wait for binary");
            Output {
                status: out.status,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }
        Err(_) => {
            signal(pid, libc::SIGKILL);
            panic!("{args:?} did not finish within {STEP_TIMEOUT:?}");
        }
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

/// A running `serve` or `worker`; killed on drop unless it already exited.
struct Running {
    child: Child,
    lines: Receiver<String>,
}

impl Running {
    fn start(args: &[&str], db: &Path, env: &[(&str, &str)]) -> Running {
        let mut child = command(args, db, env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines }
    }

    /// Starts `serve` and returns it with the port from its start line.
    fn serve(db: &Path, env: &[(&str, &str)]) -> (Running, u16) {
        let mut server = Running::start(&["serve"], db, env);
        let line = server.expect_line("listening on");
        let port = line
            .rsplit_once("(port ")
            .and_then(|(_, rest)| rest.trim_end_matches(')').parse().ok())
            .unwrap_or_else(|| panic!("no port in start line {line:?}"));
        (server, port)
    }

    /// Waits for a stdout line containing `needle` and returns it.
    fn expect_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no stdout line containing {needle:?} within {STEP_TIMEOUT:?}"),
            }
        }
    }

    fn signal(&self, sig: libc::c_int) {
        signal(self.child.id(), sig);
    }

    /// Waits for the process to exit by itself within `limit`.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process still running after {limit:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn connect(port: u16) -> TcpStream {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .expect("write timeout");
    stream
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body {:?} is not JSON: {e}", self.body))
    }
}

/// Reads one response framed by content-length from a kept-alive connection.
fn read_reply(reader: &mut BufReader<TcpStream>) -> Reply {
    read_reply_to(reader, "GET")
}

/// As `read_reply`; a response to HEAD has a content-length but no body.
fn read_reply_to(reader: &mut BufReader<TcpStream>, method: &str) -> Reply {
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("header has a colon");
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut reply = Reply {
        status,
        headers,
        body: String::new(),
    };
    let len: usize = reply
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .expect("content-length header");
    if method == "HEAD" {
        return reply;
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).expect("body");
    reply.body = String::from_utf8(body).expect("UTF-8 body");
    reply
}

fn request(stream: &mut TcpStream, method: &str, path: &str, close: bool) {
    let connection = if close { "close" } else { "keep-alive" };
    let req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: {connection}\r\n\r\n");
    stream.write_all(req.as_bytes()).expect("send request");
}

/// One request on its own connection.
fn get(port: u16, path: &str) -> Reply {
    send(port, "GET", path)
}

fn send(port: u16, method: &str, path: &str) -> Reply {
    let mut stream = connect(port);
    request(&mut stream, method, path, true);
    read_reply_to(&mut BufReader::new(stream), method)
}

fn schema_version(db: &Path) -> u32 {
    let conn = rusqlite::Connection::open(db).expect("open db");
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("read user_version")
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        out.stdout,
        out.stderr
    );
}

#[test]
fn health_is_503_before_migrate_and_200_after() {
    let tmp = TempDir::new();
    let db = tmp.db();
    let (_server, port) = Running::serve(&db, &[]);

    let before = get(port, HEALTH);
    assert_eq!(before.status, 503);
    assert!(before.json()["detail"].is_string(), "{}", before.body);
    assert!(
        !before.body.contains('\n'),
        "one-line reason: {}",
        before.body
    );
    assert!(!db.exists(), "a health probe must not create the database");

    let out = run(&["migrate"], &db, &[]);
    assert_success(&out);
    assert!(
        out.stdout.contains("applying 0001_create_items"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("applying 0002_add_description"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("database is at version 2"),
        "{}",
        out.stdout
    );

    let after = get(port, HEALTH);
    assert_eq!(after.status, 200);
    assert_eq!(after.body, "true");
    assert_eq!(after.header("content-type"), Some("application/json"));
}

#[test]
fn migrate_is_idempotent() {
    let tmp = TempDir::new();
    let db = tmp.db();
    assert_success(&run(&["migrate"], &db, &[]));
    let again = run(&["migrate"], &db, &[]);
    assert_success(&again);
    assert!(!again.stdout.contains("applying"), "{}", again.stdout);
    assert!(
        again.stdout.contains("database is at version 2"),
        "{}",
        again.stdout
    );
    assert_eq!(schema_version(&db), 2);
}

#[test]
fn version_reports_environment() {
    let tmp = TempDir::new();
    let env = [
        ("APP_VERSION", "1.2.3"),
        ("KAAPI_RELEASE", "r42"),
        ("HOSTNAME", "replica-a"),
    ];
    let (_server, port) = Running::serve(&tmp.db(), &env);
    let reply = get(port, "/version");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        serde_json::json!({"version": "1.2.3", "release": "r42", "replica": "replica-a"})
    );
}

#[test]
fn version_defaults_to_unknown() {
    let tmp = TempDir::new();
    let (_server, port) = Running::serve(&tmp.db(), &[]);
    assert_eq!(
        get(port, "/version").json(),
        serde_json::json!({"version": "unknown", "release": "unknown", "replica": "unknown"})
    );
}

#[test]
fn other_routes() {
    let tmp = TempDir::new();
    let (_server, port) = Running::serve(&tmp.db(), &[("APP_VERSION", "9")]);

    let root = get(port, "/");
    assert_eq!(root.status, 200);
    assert_eq!(root.json()["version"], "9");

    let missing = get(port, "/nope");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json(), serde_json::json!({"detail": "Not Found"}));

    assert_eq!(send(port, "POST", "/version").status, 405);

    let head = send(port, "HEAD", "/version");
    assert_eq!(head.status, 200);
    let full = get(port, "/version").body.len().to_string();
    assert_eq!(head.header("content-length"), Some(full.as_str()));

    // FastAPI redirects the slash-less form of a route defined with one.
    let redirect = get(port, "/api/v1/utils/health?x=1");
    assert_eq!(redirect.status, 307);
    assert_eq!(
        redirect.header("location"),
        Some("/api/v1/utils/health/?x=1")
    );
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let tmp = TempDir::new();
    let (_server, port) = Running::serve(&tmp.db(), &[]);
    let mut stream = connect(port);
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    for _ in 0..100 {
        request(&mut stream, "GET", "/version", false);
        let reply = read_reply(&mut reader);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("connection"), Some("keep-alive"));
    }
    // Pipelined requests are answered in order.
    let both = "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n";
    stream.write_all(both.as_bytes()).expect("pipeline");
    assert_eq!(read_reply(&mut reader).status, 200);
    assert_eq!(read_reply(&mut reader).status, 404);
}

#[test]
fn many_concurrent_connections() {
    let tmp = TempDir::new();
    let db = tmp.db();
    assert_success(&run(&["migrate"], &db, &[]));
    let (_server, port) = Running::serve(&db, &[]);
    let clients: Vec<_> = (0..32)
        .map(|i| {
            thread::spawn(move || {
                let mut stream = connect(port);
                let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
                for j in 0..25 {
                    let path = if (i + j) % 2 == 0 { HEALTH } else { "/version" };
                    request(&mut stream, "GET", path, false);
                    assert_eq!(read_reply(&mut reader).status, 200);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client thread");
    }
}

#[test]
fn break_migration_fails_and_leaves_schema_alone() {
    let tmp = TempDir::new();
    let db = tmp.db();
    let broken = [("BREAK", "migration")];

    // Fresh database: nothing may stick, not even the good migrations.
    let out = run(&["migrate"], &db, &broken);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("error"), "{}", out.stderr);
    assert_eq!(schema_version(&db), 0);
    let (server, port) = Running::serve(&db, &[]);
    assert_eq!(get(port, HEALTH).status, 503);
    drop(server);

    // Up-to-date database: the broken release still fails, and its server,
    // which needs the failed migration, stays unhealthy.
    assert_success(&run(&["migrate"], &db, &[]));
    let out = run(&["migrate"], &db, &broken);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(schema_version(&db), 2);
    let (_broken_server, port) = Running::serve(&db, &broken);
    assert_eq!(get(port, HEALTH).status, 503);
}

#[test]
fn break_health_answers_503_after_migrate() {
    let tmp = TempDir::new();
    let db = tmp.db();
    assert_success(&run(&["migrate"], &db, &[("BREAK", "health")]));
    let (_server, port) = Running::serve(&db, &[("BREAK", "health")]);
    let reply = get(port, HEALTH);
    assert_eq!(reply.status, 503);
    assert!(reply.json()["detail"]
        .as_str()
        .is_some_and(|d| d.contains("BREAK=health")));
    assert_eq!(get(port, "/version").status, 200);
}

#[test]
fn break_crash_exits_1() {
    let tmp = TempDir::new();
    let out = run(&["serve"], &tmp.db(), &[("BREAK", "crash")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("BREAK=crash"), "{}", out.stderr);
}

#[test]
fn exit_n_exits_with_n() {
    let tmp = TempDir::new();
    let out = run(&["exit", "3"], &tmp.db(), &[]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(out.stdout.trim(), "exiting with 3");
    assert_eq!(run(&["exit", "0"], &tmp.db(), &[]).status.code(), Some(0));
    assert_eq!(run(&["exit", "x"], &tmp.db(), &[]).status.code(), Some(2));
}

#[test]
fn unknown_command_is_a_usage_error() {
    let tmp = TempDir::new();
    assert_eq!(run(&["frobnicate"], &tmp.db(), &[]).status.code(), Some(2));
}

#[test]
fn sigterm_stops_serve_with_exit_0() {
    let tmp = TempDir::new();
    let (mut server, port) = Running::serve(&tmp.db(), &[]);
    assert_eq!(get(port, "/version").status, 200);
    // An idle keep-alive connection must not hold up the shutdown.
    let _idle = connect(port);
    let started = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server.wait(Duration::from_secs(4));
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn sigint_stops_serve_with_exit_0() {
    let tmp = TempDir::new();
    let (mut server, _port) = Running::serve(&tmp.db(), &[]);
    server.signal(libc::SIGINT);
    assert_eq!(server.wait(Duration::from_secs(4)).code(), Some(0));
}

#[test]
fn sigterm_lets_an_in_flight_request_finish() {
    let tmp = TempDir::new();
    let (mut server, port) = Running::serve(&tmp.db(), &[]);
    let mut stream = connect(port);
    // Half a request is in flight when the signal arrives.
    stream
        .write_all(b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .expect("send head");
    thread::sleep(Duration::from_millis(300));
    server.signal(libc::SIGTERM);
    server.expect_line("received SIGTERM");

    // New connections are refused once shutdown has begun.
    let deadline = Instant::now() + Duration::from_secs(2);
    while TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        thread::sleep(Duration::from_millis(20));
    }

    stream.write_all(b"\r\n").expect("finish request");
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let reply = read_reply(&mut reader);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("connection"), Some("close"));
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).expect("read to close");
    assert!(rest.is_empty());
    let _ = stream.shutdown(Shutdown::Both);
    assert_eq!(server.wait(Duration::from_secs(4)).code(), Some(0));
}

#[test]
fn worker_beats_and_stops_on_sigterm() {
    let tmp = TempDir::new();
    let mut worker = Running::start(&["worker"], &tmp.db(), &[("WORKER_INTERVAL_SECS", "0.1")]);
    worker.expect_line("heartbeat 1");
    worker.expect_line("heartbeat 2");
    let started = Instant::now();
    worker.signal(libc::SIGTERM);
    assert_eq!(worker.wait(Duration::from_secs(3)).code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn worker_interval_defaults_to_2_seconds() {
    let tmp = TempDir::new();
    let mut worker = Running::start(&["worker"], &tmp.db(), &[]);
    let line = worker.expect_line("worker started");
    assert!(line.contains("2s"), "{line}");
}

#[test]
fn migrate_current_prints_the_version_and_down_undoes_migrations_to_it() {
    let tmp = TempDir::new();
    let db = tmp.db();
    let fresh = run(&["migrate", "current"], &db, &[]);
    assert_success(&fresh);
    assert_eq!(fresh.stdout.trim(), "0000");
    assert!(
        !db.exists(),
        "reading the version must not create the database"
    );
    assert_success(&run(&["migrate"], &db, &[]));
    let current = run(&["migrate", "current"], &db, &[]);
    assert_success(&current);
    assert_eq!(current.stdout.trim(), "0002");

    let down = run(&["migrate", "down", "0001"], &db, &[]);
    assert_success(&down);
    assert!(
        down.stdout.contains("reverting 0002_add_description"),
        "{}",
        down.stdout
    );
    assert_eq!(schema_version(&db), 1);
    // The column the down section drops is gone.
    let conn = rusqlite::Connection::open(&db).expect("open db");
    assert!(conn.prepare("SELECT description FROM items").is_err());
    drop(conn);
    // Going "down" to a newer version is refused.
    let up = run(&["migrate", "down", "0002"], &db, &[]);
    assert!(!up.status.success());
    assert!(up.stderr.contains("run migrate"), "{}", up.stderr);
    assert_eq!(schema_version(&db), 1);
}

#[test]
fn migrations_dir_replaces_the_embedded_migrations() {
    let tmp = TempDir::new();
    let db = tmp.db();
    let dir = tmp.0.join("migrations");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for file in ["0001_create_items.sql", "0002_add_description.sql"] {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(file),
            dir.join(file),
        )
        .expect("copy migration");
    }
    std::fs::write(
        dir.join("0003_add_priority.sql"),
        "ALTER TABLE items ADD COLUMN priority INTEGER;\n-- down\nALTER TABLE items DROP COLUMN priority;\n",
    )
    .expect("write 0003");
    let env = [("MIGRATIONS_DIR", dir.to_str().expect("utf-8 path"))];
    assert_success(&run(&["migrate"], &db, &env));
    assert_eq!(
        run(&["migrate", "current"], &db, &env).stdout.trim(),
        "0003"
    );
    // The embedded migrations (two) do not know version 3: they cannot undo it.
    let old = run(&["migrate", "down", "0002"], &db, &[]);
    assert!(!old.status.success());
    assert!(
        old.stderr.contains("newer than this release knows"),
        "{}",
        old.stderr
    );
    assert_success(&run(&["migrate", "down", "0002"], &db, &env));
    assert_eq!(schema_version(&db), 2);
}
