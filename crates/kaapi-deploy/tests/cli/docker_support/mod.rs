//! Shared by the `docker_*` tests: a throw-away project (a copy of the example backend with a
//! deploy.toml of a unique app on a free ingress port, its own state dir) driven through the
//! real kaapi-deploy binary against the real Docker Engine, and cleaned up afterwards.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use assert_cmd::Command;

pub const LABEL_APP: &str = "dev.kaapi.app";
pub const LABEL_RELEASE: &str = "dev.kaapi.release";
pub const LABEL_ROLE: &str = "dev.kaapi.role";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The example backend's static binary, built once (by its own script) when absent.
fn backend_binary() -> PathBuf {
    static BUILD: Once = Once::new();
    let binary = repo_root().join("examples/backend/dist/kaapi-example-backend");
    BUILD.call_once(|| {
        if !binary.is_file() {
            let status = StdCommand::new(repo_root().join("examples/backend/build-static.sh"))
                .status()
                .expect("run examples/backend/build-static.sh");
            assert!(status.success(), "build-static.sh failed");
        }
    });
    binary
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local addr")
        .port()
}

pub fn docker(args: &[&str]) -> String {
    let output = StdCommand::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The tests of this binary share one Docker Engine; a test that restarts it holds it alone.
static ENGINE: RwLock<()> = RwLock::new(());

/// A test's hold on the Docker Engine, for as long as its project lives.
enum EngineHold {
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    Exclusive(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
}

impl EngineHold {
    fn shared() -> Self {
        Self::Shared(
            ENGINE
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    fn exclusive() -> Self {
        Self::Exclusive(
            ENGINE
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }
}

pub struct Project {
    pub dir: tempfile::TempDir,
    pub app: String,
    pub port: u16,
    pub state_dir: PathBuf,
    pub config: PathBuf,
    /// Extra lines for `[environments.local]` (e.g. a registry).
    pub environment_extra: String,
    /// `keep_warm` of `[environments.local]`: off unless a test is about warm replicas, since
    /// the others check what a rollout leaves.
    pub keep_warm: String,
    _engine: EngineHold,
}

impl Project {
    /// A new project whose app name starts with `hint` (kept short: names end up in container
    /// names and must be ≤ 32 characters).
    pub fn new(hint: &str) -> Self {
        Self::holding(hint, EngineHold::shared())
    }

    /// A project whose test has the Docker Engine to itself (it restarts the engine).
    pub fn with_engine_alone(hint: &str) -> Self {
        Self::holding(hint, EngineHold::exclusive())
    }

    fn holding(hint: &str, engine: EngineHold) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let app = format!(
            "kt-{hint}-{:x}{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        assert!(app.len() <= 32, "app name {app} too long");
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = dir.path().join("backend");
        std::fs::create_dir_all(backend.join("dist")).expect("mkdir backend/dist");
        for file in ["Dockerfile", ".dockerignore"] {
            std::fs::copy(
                repo_root().join("examples/backend").join(file),
                backend.join(file),
            )
            .expect("copy example backend file");
        }
        std::fs::copy(backend_binary(), backend.join("dist/kaapi-example-backend"))
            .expect("copy backend binary");
        // Something .dockerignore must keep out of the context.
        std::fs::write(backend.join("notes.txt"), "not for the image").expect("write");
        std::fs::write(
            dir.path().join("local.env"),
            "SECRET_KEY=test-secret-value-not-printed\n",
        )
        .expect("write local.env");
        let project = Project {
            state_dir: dir.path().join("state"),
            config: dir.path().join("deploy.toml"),
            dir,
            app,
            port: free_port(),
            environment_extra: String::new(),
            keep_warm: "0s".to_owned(),
            _engine: engine,
        };
        project.configure("1.0.0", "");
        project
    }

    /// Rewrites deploy.toml so the next deploy builds `version` (and `BREAK=brk`).
    pub fn configure(&self, version: &str, brk: &str) {
        let text = format!(
            r#"app = "{app}"
secrets = ["SECRET_KEY"]

[env]
WORKER_INTERVAL_SECS = "1"
SHUTDOWN_GRACE_SECS = "5"

[image]
context = "backend"
pre_build = "test -x backend/dist/kaapi-example-backend && echo pre-build ran"
build_args = {{ APP_VERSION = "{version}", BREAK = "{brk}" }}

[migrations]
command = "/app migrate"
timeout = "1m"

[services.backend]
kind = "web"
port = 8000
replicas = 2
command = "/app serve"
stop_timeout = "10s"
volumes = ["data:/data"]
health = {{ path = "/api/v1/utils/health/", interval = "1s", timeout = "900ms", retries = 3, start_period = "3s" }}

[services.worker]
command = "/app worker"
replicas = 1
stop_timeout = "5s"
volumes = ["data:/data"]

[environments.local]
engine = "docker"
ingress_port = {port}
secrets_from = {{ env_file = "local.env" }}
keep_warm = "{keep_warm}"
{extra}
"#,
            app = self.app,
            port = self.port,
            extra = self.environment_extra,
            keep_warm = self.keep_warm,
        );
        std::fs::write(&self.config, text).expect("write deploy.toml");
    }

    /// kaapi-deploy with this project's config and state dir.
    pub fn cli(&self) -> Command {
        let mut command = Command::cargo_bin("kaapi-deploy").expect("kaapi-deploy binary");
        command
            .arg("--config")
            .arg(&self.config)
            .env("KAAPI_STATE_DIR", &self.state_dir)
            .env("NO_COLOR", "1")
            .current_dir(self.dir.path())
            .timeout(Duration::from_secs(240));
        command
    }

    /// The same as a std Command, for tests that run it in the background.
    pub fn std_cli(&self, args: &[&str]) -> StdCommand {
        let mut command = StdCommand::new(assert_cmd::cargo::cargo_bin("kaapi-deploy"));
        command
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("KAAPI_STATE_DIR", &self.state_dir)
            .env("NO_COLOR", "1")
            .current_dir(self.dir.path());
        command
    }

    /// Runs a command, asserting success, and returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.cli().args(args).output().expect("run kaapi-deploy");
        assert!(
            output.status.success(),
            "kaapi-deploy {args:?} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn deploy(&self) -> String {
        self.ok(&["deploy", "local"])
    }

    pub fn releases(&self) -> Vec<serde_json::Value> {
        let text = self.ok(&["releases", "local", "--json"]);
        serde_json::from_str(&text).expect("releases --json is JSON")
    }

    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        http_get(self.port, path)
    }

    /// `APP_VERSION` of whatever answers `/version` through the ingress.
    pub fn serving_version(&self) -> Option<String> {
        let (status, body) = self.get("/version").ok()?;
        if status != 200 {
            return None;
        }
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        json["version"].as_str().map(str::to_owned)
    }

    /// IDs of containers of this app with all the given extra labels (running or not).
    pub fn containers(&self, labels: &[(&str, &str)]) -> Vec<String> {
        let mut args = vec![
            "ps".to_owned(),
            "-aq".to_owned(),
            "--filter".to_owned(),
            format!("label={LABEL_APP}={}", self.app),
        ];
        for (k, v) in labels {
            args.push("--filter".to_owned());
            args.push(format!("label={k}={v}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args).lines().map(str::to_owned).collect()
    }

    pub fn load(&self) -> Load {
        Load::start(self.port)
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.std_cli(&["agent", "stop"]).output();
        // If the agent did not stop on request, stop the process this test started; the
        // ingress keeps serving after `agent stop`, so it is stopped here too.
        for record in ["agent.json", "ingress.json"] {
            if let Some(pid) = recorded_pid(&self.state_dir, record) {
                if Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = StdCommand::new("kill").arg(pid.to_string()).status();
                }
            }
        }
        let ids = self.containers(&[]);
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids.iter().map(String::as_str));
            docker(&args);
        }
        let volumes = docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("label={LABEL_APP}={}", self.app),
        ]);
        for volume in volumes.lines() {
            docker(&["volume", "rm", "-f", volume]);
        }
        // The environment's network, once no container uses it.
        let networks = docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("label={LABEL_APP}={}", self.app),
        ]);
        for network in networks.lines() {
            docker(&["network", "rm", network]);
        }
        // By tag, not by ID: the same build in another test's project has the same image ID,
        // and a forced removal by ID would delete it under that test's feet. Removing a tag
        // deletes the image only once no other tag names it.
        let images = docker(&[
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            &format!("{}-local", self.app),
        ]);
        for tag in images.lines().filter(|t| !t.ends_with(":<none>")) {
            docker(&["rmi", tag]);
        }
    }
}

/// `GET path` on 127.0.0.1:port over a fresh connection.
pub fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not HTTP: {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// A bounded loopback client: requests `/version` back to back from two threads until
/// stopped (or 5 minutes), counting failures (anything but a 200) and the versions seen.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    pub ok: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
    pub failures: Arc<Mutex<Vec<String>>>,
    pub versions: Arc<Mutex<Vec<String>>>,
}

#[derive(Debug)]
pub struct LoadResult {
    pub ok: u64,
    pub failed: u64,
    pub failures: Vec<String>,
    /// Distinct versions in the order first seen.
    pub versions: Vec<String>,
}

impl Load {
    fn start(port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let versions = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..2)
            .map(|_| {
                let (stop, ok, failed, failures, versions) = (
                    stop.clone(),
                    ok.clone(),
                    failed.clone(),
                    failures.clone(),
                    versions.clone(),
                );
                std::thread::spawn(move || {
                    let started = Instant::now();
                    while !stop.load(Ordering::SeqCst)
                        && started.elapsed() < Duration::from_secs(300)
                    {
                        match http_get(port, "/version") {
                            Ok((200, body)) => {
                                ok.fetch_add(1, Ordering::SeqCst);
                                let version = serde_json::from_str::<serde_json::Value>(&body)
                                    .ok()
                                    .and_then(|j| j["version"].as_str().map(str::to_owned))
                                    .unwrap_or_default();
                                let mut seen = versions.lock().expect("versions");
                                if !seen.contains(&version) {
                                    seen.push(version);
                                }
                            }
                            other => {
                                failed.fetch_add(1, Ordering::SeqCst);
                                failures
                                    .lock()
                                    .expect("failures")
                                    .push(format!("{other:?}"));
                            }
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            })
            .collect();
        Load {
            stop,
            threads,
            ok,
            failed,
            failures,
            versions,
        }
    }

    pub fn finish(self) -> LoadResult {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            thread.join().expect("load thread");
        }
        LoadResult {
            ok: self.ok.load(Ordering::SeqCst),
            failed: self.failed.load(Ordering::SeqCst),
            failures: self.failures.lock().expect("failures").clone(),
            versions: self.versions.lock().expect("versions").clone(),
        }
    }
}

/// The PID of the agent that `agent.json` in `state_dir` names, if any.
pub fn agent_pid(state_dir: &Path) -> Option<u32> {
    recorded_pid(state_dir, "agent.json")
}

/// The PID of the ingress process that `ingress.json` in `state_dir` names, if any.
pub fn ingress_pid(state_dir: &Path) -> Option<u32> {
    recorded_pid(state_dir, "ingress.json")
}

fn recorded_pid(state_dir: &Path, file: &str) -> Option<u32> {
    let text = std::fs::read_to_string(state_dir.join(file)).ok()?;
    let record: serde_json::Value = serde_json::from_str(&text).ok()?;
    record["pid"].as_u64().and_then(|p| u32::try_from(p).ok())
}

/// Waits up to `limit` for `check` to hold.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    check()
}
