//! Shared by the agent tests: the example backend images, an in-process agent, a loopback load
//! client, and cleanup of everything a test creates on the Docker Engine.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kaapi_agent::api::{
    EnvironmentSpec, HealthCheckSpec, RolloutMode, RolloutPhase, RolloutState, ServiceSpec,
};
use kaapi_agent::{serve, AgentClient, IngressCommand};
use tokio::task::JoinHandle;

pub const HEALTH_PATH: &str = "/api/v1/utils/health/";

pub struct Images {
    pub v1: String,
    pub v2: String,
    pub broken_health: String,
}

fn backend_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/backend")
}

/// Builds the example backend's static binary and three images once per test binary.
pub fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let dir = backend_dir();
        let status = Command::new(dir.join("build-static.sh"))
            .status()
            .expect("run examples/backend/build-static.sh");
        assert!(status.success(), "build-static.sh failed: {status}");
        Images {
            v1: build_image(&dir, "v1", ""),
            v2: build_image(&dir, "v2", ""),
            broken_health: build_image(&dir, "v3-broken", "health"),
        }
    })
}

fn build_image(dir: &Path, version: &str, broken: &str) -> String {
    docker_build(
        dir,
        &format!("kaapi-agent-test-backend:{version}"),
        &[("APP_VERSION", version), ("BREAK", broken)],
    )
}

/// `docker build -q` of `dir` tagged `tag`; the image ID.
pub fn docker_build(dir: &Path, tag: &str, build_args: &[(&str, &str)]) -> String {
    let mut command = Command::new("docker");
    command.args(["build", "-q", "-t", tag]);
    for (name, value) in build_args {
        command.arg("--build-arg").arg(format!("{name}={value}"));
    }
    let output = command.arg(dir).output().expect("run docker build");
    assert!(
        output.status.success(),
        "docker build failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("image id is text")
        .trim()
        .to_owned()
}

pub use kaapi_testkit::docker;

/// Container ids carrying this environment's labels (and the extra filters).
pub fn containers_of(environment: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "ps".to_owned(),
        "-aq".to_owned(),
        "--no-trunc".to_owned(),
        "--filter".to_owned(),
        format!("label=dev.kaapi.environment={environment}"),
    ];
    for filter in extra {
        args.push("--filter".to_owned());
        args.push((*filter).to_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut ids: Vec<String> = docker(&args).lines().map(str::to_owned).collect();
    ids.sort();
    ids
}

/// A unique app/environment/volume per test, removed from Docker when dropped (even on panic).
pub struct Fixture {
    pub app: String,
    pub environment: String,
    pub volume: String,
    pub state_dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new(name: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let unique = format!(
            "{}{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let environment = format!("{name}{unique}");
        let volume = format!("kaapi-agent-test-{environment}");
        docker(&["volume", "create", &volume]);
        Fixture {
            app: "agenttest".to_owned(),
            environment,
            volume,
            state_dir: tempfile::tempdir().expect("temp state dir"),
        }
    }

    /// Applies the example backend's migrations to the volume (its health needs them).
    pub fn migrate(&self, image: &str) {
        docker(&[
            "run",
            "--rm",
            "-v",
            &format!("{}:/data", self.volume),
            image,
            "/app",
            "migrate",
        ]);
    }

    pub fn spec(&self, release: u64, image: &str, web: u32, workers: u32) -> EnvironmentSpec {
        let health = HealthCheckSpec {
            path: HEALTH_PATH.to_owned(),
            interval_ms: 500,
            timeout_ms: 1000,
            retries: 2,
            start_period_ms: 1000,
        };
        let service = |name: &str, replicas: u32, command: Option<Vec<String>>, port| ServiceSpec {
            name: name.to_owned(),
            image: image.to_owned(),
            command,
            env: BTreeMap::from([("WORKER_INTERVAL_SECS".to_owned(), "1".to_owned())]),
            replicas,
            port,
            health: port.map(|_| health.clone()),
            stop_timeout_secs: 5,
            cpu: Some(256),
            memory_mib: Some(128),
            volumes: vec![format!("{}:/data", self.volume)],
            network: None,
            logs: None,
            revision: None,
        };
        let mut services = vec![service("backend", web, None, Some(8000))];
        if workers > 0 {
            services.push(service(
                "worker",
                workers,
                Some(vec!["/app".to_owned(), "worker".to_owned()]),
                None,
            ));
        }
        EnvironmentSpec {
            app: self.app.clone(),
            environment: self.environment.clone(),
            release,
            ingress_port: None,
            web_service: Some("backend".to_owned()),
            ingresses: Default::default(),
            services,
            keep_warm_ms: 0,
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let ids = containers_of(&self.environment, &[]);
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            let _ = Command::new("docker").args(&args).output();
        }
        let _ = Command::new("docker")
            .args(["volume", "rm", "-f", &self.volume])
            .output();
    }
}

/// Runs the agent in this process on `state_dir` and connects to it.
pub async fn start_agent(state_dir: &Path) -> (JoinHandle<()>, AgentClient) {
    let dir = state_dir.to_owned();
    let task = tokio::spawn(async move {
        // The current executable is this test binary: the ingress runs in this process.
        if let Err(e) = serve(&dir, IngressCommand::InProcess).await {
            panic!("agent failed: {e}");
        }
    });
    let begun = Instant::now();
    while begun.elapsed() < Duration::from_secs(15) {
        if let Some(client) = AgentClient::connect(state_dir)
            .await
            .expect("read agent.json")
        {
            return (task, client);
        }
        assert!(!task.is_finished(), "the agent stopped while starting");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the agent did not answer within 15 s");
}

pub async fn roll_out(client: &AgentClient, spec: &EnvironmentSpec) -> RolloutState {
    roll_out_with(client, spec, RolloutMode::Converge).await
}

pub async fn roll_out_with(
    client: &AgentClient,
    spec: &EnvironmentSpec,
    mode: RolloutMode,
) -> RolloutState {
    let ticket = client.rollout(spec, mode).await.expect("start rollout");
    let state = tokio::time::timeout(
        Duration::from_secs(90),
        client.wait_rollout(&spec.environment, &ticket.id, |m| {
            eprintln!("  rollout: {m}")
        }),
    )
    .await
    .expect("rollout ends within 90 s")
    .expect("poll rollout");
    assert_ne!(state.phase, RolloutPhase::Running);
    state
}

pub async fn ingress_url(client: &AgentClient, environment: &str) -> String {
    client
        .environment(environment)
        .await
        .expect("environment state")
        .expect("environment known")
        .ingress_url
        .expect("ingress url")
}

type TestClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

fn http_client() -> TestClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build_http()
}

/// GET `{url}/version` → the `version` field.
pub async fn version(url: &str) -> String {
    let client = http_client();
    let (status, body) = get(&client, &format!("{url}/version"))
        .await
        .expect("GET /version");
    assert_eq!(status, 200, "GET /version → {status}: {body}");
    version_of(&body)
}

fn version_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("version")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("unparsable: {body}"))
}

async fn get(client: &TestClient, url: &str) -> Result<(u16, String), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let response = tokio::time::timeout(Duration::from_secs(5), client.get(uri))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[derive(Debug, Default)]
pub struct LoadReport {
    pub succeeded: u64,
    pub failed: u64,
    pub failures: Vec<String>,
    /// Responses per version, in the order first seen.
    pub versions: BTreeMap<String, u64>,
    pub last_version: HashMap<usize, String>,
}

/// Keep-alive GET /version requests from `connections` loopback clients until stopped (each
/// client sends at most `max_per_connection`, so the load is bounded).
pub struct Load {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<LoadReport>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    pub fn start(url: &str, connections: usize, max_per_connection: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(LoadReport::default()));
        let tasks = (0..connections)
            .map(|index| {
                let stop = Arc::clone(&stop);
                let report = Arc::clone(&report);
                let url = format!("{url}/version");
                tokio::spawn(async move {
                    let client = http_client();
                    let mut sent = 0;
                    while !stop.load(Ordering::SeqCst) && sent < max_per_connection {
                        sent += 1;
                        let result = get(&client, &url).await;
                        let mut report = report.lock().expect("report lock");
                        match result {
                            Ok((200, body)) => {
                                report.succeeded += 1;
                                let version = version_of(&body);
                                *report.versions.entry(version.clone()).or_default() += 1;
                                report.last_version.insert(index, version);
                            }
                            Ok((status, body)) => {
                                report.failed += 1;
                                if report.failures.len() < 10 {
                                    report.failures.push(format!("{status}: {body}"));
                                }
                            }
                            Err(e) => {
                                report.failed += 1;
                                if report.failures.len() < 10 {
                                    report.failures.push(e);
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            report,
            tasks,
        }
    }

    pub fn succeeded(&self) -> u64 {
        self.report.lock().expect("report lock").succeeded
    }

    /// Lets it run for `duration`, then stops it.
    pub async fn finish_after(self, duration: Duration) -> LoadReport {
        tokio::time::sleep(duration).await;
        self.finish().await
    }

    pub async fn finish(self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.expect("load task");
        }
        let mut report = self.report.lock().expect("report lock");
        std::mem::take(&mut *report)
    }
}

/// Waits until `condition` holds (checked every 200 ms), at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let begun = Instant::now();
    while begun.elapsed() < limit {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what}: not within {limit:?}");
}
