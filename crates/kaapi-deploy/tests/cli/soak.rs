//! Soak: steady loopback load through the ingress while deploys, rollbacks, automatic
//! rollbacks (a release failing its health check), replica kills and agent restarts interleave
//! in a fixed, seeded order. Prints requests sent and failed, the agent's and the ingress'
//! memory over time and what is left behind (containers, images, volumes, container log bytes),
//! and asserts each.
//! Run on demand, not in every CI run (see docs/benchmarks.md, "Soak"):
//!
//!     cargo test --workspace --test cli -- soak:: --ignored --nocapture
//!
//! `KAAPI_SOAK_SECS` (default 900), `KAAPI_SOAK_RPS` (default 40) and `KAAPI_SOAK_SEED`
//! (default 16) shorten it, set its load and reorder its steps. The ingress runs in a process of
//! its own, so the load never pauses: agent restarts (stopped or SIGKILLed) must lose nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::docker_support::{
    agent_pid, docker, eventually, http_get, ingress_pid, Project, LABEL_APP, LABEL_ROLE,
};

const SERVICE: &str = "dev.kaapi.service";
/// Versions cycled through, so the number of distinct builds stays fixed however long it runs.
const VERSIONS: [&str; 3] = ["soak-a", "soak-b", "soak-c"];
const BROKEN: &str = "soak-broken";
const MIB: u64 = 1024 * 1024;

/// The json-file retention of one container's log under the default `container_logs`.
fn log_bytes_kept_per_container() -> u64 {
    let logs = kaapi_core::config::ContainerLogsConfig::default();
    u64::from(logs.max_size_mb) * u64::from(logs.max_files) * MIB
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64: a fixed, seeded order without a dependency.
struct Order(u64);

impl Order {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = usize::try_from(self.next() % (i as u64 + 1)).expect("index fits");
            items.swap(i, j);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    Deploy,
    Rollback,
    AutoRollback,
    KillReplica,
    StopAgent,
    KillAgent,
}

/// Rate-limited load: `rps` requests a second over fresh connections, `GET /version`.
struct SteadyLoad {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl SteadyLoad {
    fn start(port: u16, rps: u64) -> Self {
        const THREADS: u64 = 4;
        let load = SteadyLoad {
            stop: Arc::default(),
            sent: Arc::default(),
            failed: Arc::default(),
            failures: Arc::default(),
            threads: Vec::new(),
        };
        let interval = Duration::from_micros(1_000_000 * THREADS / rps.max(1));
        let threads = (0..THREADS)
            .map(|_| {
                let (stop, sent, failed, failures) = (
                    load.stop.clone(),
                    load.sent.clone(),
                    load.failed.clone(),
                    load.failures.clone(),
                );
                std::thread::spawn(move || {
                    let mut next = Instant::now();
                    while !stop.load(Ordering::SeqCst) {
                        next += interval;
                        sent.fetch_add(1, Ordering::SeqCst);
                        match http_get(port, "/version") {
                            Ok((200, _)) => {}
                            other => {
                                failed.fetch_add(1, Ordering::SeqCst);
                                let mut kept = failures.lock().expect("failures");
                                if kept.len() < 20 {
                                    kept.push(format!("{other:?}"));
                                }
                            }
                        }
                        // Behind schedule (slow answers): start again from now, no burst.
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        } else {
                            next = now;
                        }
                    }
                })
            })
            .collect();
        SteadyLoad { threads, ..load }
    }

    fn finish(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            thread.join().expect("load thread");
        }
        let failures = self.failures.lock().expect("failures").clone();
        (
            self.sent.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
            failures,
        )
    }
}

/// The agent's private memory (heap, stacks): its RSS without the pages mapped from the binary,
/// which a debug build's symbols make large and which grow as more code first runs.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A process' private memory every few seconds, whichever process `pid_of` names at the time
/// (the agent, or the ingress).
struct MemorySampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(f64, u32, u64)>>,
}

impl MemorySampler {
    fn start(
        state_dir: std::path::PathBuf,
        pid_of: fn(&std::path::Path) -> Option<u32>,
        every: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut samples = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                if let Some((pid, rss)) =
                    pid_of(&state_dir).and_then(|pid| Some((pid, rss_kib(pid)?)))
                {
                    samples.push((started.elapsed().as_secs_f64(), pid, rss));
                }
                let until = Instant::now() + every;
                while Instant::now() < until && !flag.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            samples
        });
        MemorySampler { stop, thread }
    }

    fn finish(self) -> Vec<(f64, u32, u64)> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("memory sampler")
    }
}

fn running(id: &str) -> bool {
    docker(&["inspect", "-f", "{{.State.Running}}", id]).trim() == "true"
}

fn running_web(project: &Project) -> Vec<String> {
    project
        .containers(&[(LABEL_ROLE, "replica"), (SERVICE, "backend")])
        .into_iter()
        .filter(|id| running(id))
        .collect()
}

/// What the project leaves behind: containers, distinct images, image tags, volumes, and the
/// bytes of its containers' json-file logs.
#[derive(Debug, Clone, Copy)]
struct Leftovers {
    containers: usize,
    images: usize,
    tags: usize,
    volumes: usize,
    log_bytes: u64,
}

fn leftovers(project: &Project) -> Leftovers {
    let ids = project.containers(&[]);
    let log_bytes = ids
        .iter()
        .map(|id| {
            let path = docker(&["inspect", "-f", "{{.LogPath}}", id]);
            std::fs::metadata(path.trim()).map_or(0, |m| m.len())
        })
        .sum();
    let repository = format!("{}-local", project.app);
    let images = docker(&["images", "-q", "--no-trunc", &repository]);
    let mut distinct: Vec<&str> = images.lines().collect();
    distinct.sort_unstable();
    distinct.dedup();
    let tags = docker(&["images", "--format", "{{.Tag}}", &repository])
        .lines()
        .count();
    let volumes = docker(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("label={LABEL_APP}={}", project.app),
    ])
    .lines()
    .count();
    Leftovers {
        containers: ids.len(),
        images: distinct.len(),
        tags,
        volumes,
        log_bytes,
    }
}

struct Soak<'a> {
    project: &'a Project,
    version: usize,
    serving: String,
}

impl Soak<'_> {
    fn deploy(&mut self) {
        self.version = (self.version + 1) % VERSIONS.len();
        let version = VERSIONS[self.version];
        self.project.configure(version, "");
        self.project.deploy();
        self.serving = version.to_owned();
        self.expect_serving();
    }

    fn rollback(&mut self) {
        let out = self.project.ok(&["rollback", "local", "--json"]);
        assert!(out.contains("\"outcome\""), "{out}");
        self.serving = self
            .project
            .serving_version()
            .expect("something serves after a rollback");
        assert!(
            VERSIONS.contains(&self.serving.as_str()),
            "{}",
            self.serving
        );
    }

    fn auto_rollback(&mut self) {
        self.project.configure(BROKEN, "health");
        let output = self
            .project
            .cli()
            .args(["deploy", "local"])
            .output()
            .expect("run deploy");
        assert!(
            !output.status.success(),
            "a release failing its health check was deployed"
        );
        self.expect_serving();
    }

    fn kill_replica(&mut self) {
        let before = running_web(self.project);
        let victim = before.first().expect("a running web replica").clone();
        docker(&["kill", &victim]);
        assert!(
            eventually(Duration::from_secs(60), || {
                let ids = running_web(self.project);
                ids.len() == 2 && !ids.contains(&victim)
            }),
            "replica {victim} not replaced within 60 s: {:?}",
            running_web(self.project)
        );
    }

    /// The ingress runs apart from the agent: it keeps serving (under the load) while the
    /// agent is stopped or killed, and the next command starts an agent that adopts it.
    fn restart_agent(&mut self, kill: bool) {
        let pid = agent_pid(&self.project.state_dir).expect("agent.json names the agent");
        if kill {
            let status = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .expect("run kill");
            assert!(status.success(), "kill -KILL {pid}");
        } else {
            self.project.ok(&["agent", "stop"]);
        }
        assert!(
            eventually(Duration::from_secs(15), || rss_kib(pid).is_none()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z"))),
            "agent {pid} still runs"
        );
        self.project.ok(&["status", "local", "--json"]);
        self.expect_serving();
    }

    fn expect_serving(&self) {
        assert!(
            eventually(Duration::from_secs(30), || self
                .project
                .serving_version()
                .as_deref()
                == Some(self.serving.as_str())),
            "expected {} to serve, got {:?}",
            self.serving,
            self.project.serving_version()
        );
    }

    fn run(&mut self, step: Step) {
        match step {
            Step::Deploy => self.deploy(),
            Step::Rollback => self.rollback(),
            Step::AutoRollback => self.auto_rollback(),
            Step::KillReplica => self.kill_replica(),
            Step::StopAgent => self.restart_agent(false),
            Step::KillAgent => self.restart_agent(true),
        }
    }
}

/// Max of the samples whose time falls in `[from, to)` of the run.
fn max_between(samples: &[(f64, u32, u64)], from: f64, to: f64) -> Option<u64> {
    samples
        .iter()
        .filter(|(t, _, _)| *t >= from && *t < to)
        .map(|(_, _, rss)| *rss)
        .max()
}

#[test]
#[ignore = "soak: minutes long, run on demand (see docs/benchmarks.md)"]
fn deploys_rollbacks_and_faults_under_load_lose_nothing_and_leave_nothing() {
    let seconds = setting("KAAPI_SOAK_SECS", 900);
    let rps = setting("KAAPI_SOAK_RPS", 40);
    let seed = setting("KAAPI_SOAK_SEED", 16).max(1);
    println!("soak: {seconds} s, {rps} req/s, seed {seed}");

    let project = Project::new("soak");
    project.configure(VERSIONS[0], "");
    project.deploy();
    let load = SteadyLoad::start(project.port, rps);
    let memory = MemorySampler::start(project.state_dir.clone(), agent_pid, Duration::from_secs(5));
    let ingress_memory = MemorySampler::start(
        project.state_dir.clone(),
        ingress_pid,
        Duration::from_secs(5),
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut soak = Soak {
        project: &project,
        version: 0,
        serving: VERSIONS[0].to_owned(),
    };
    // A rollback needs an earlier release to go back to.
    soak.deploy();

    let mut order = Order(seed);
    let mut done: Vec<(Step, u32)> = Vec::new();
    let mut after_first_cycle = None;
    let mut cycles = 0;
    // Agents restart in the first two thirds only, so that the last third measures one agent
    // process's memory under continuous load, deploys and rollbacks.
    let restarts_until = started + Duration::from_secs(seconds * 2 / 3);
    while Instant::now() < deadline {
        let restart = if cycles % 2 == 0 {
            Step::StopAgent
        } else {
            Step::KillAgent
        };
        let mut steps = [
            Step::Deploy,
            Step::Deploy,
            Step::Rollback,
            Step::AutoRollback,
            Step::KillReplica,
            restart,
        ];
        order.shuffle(&mut steps);
        for step in steps {
            if Instant::now() >= deadline {
                break;
            }
            if matches!(step, Step::StopAgent | Step::KillAgent) && Instant::now() >= restarts_until
            {
                continue;
            }
            let at = Instant::now();
            soak.run(step);
            println!(
                "[{:>6.1}s] {step:?} done in {:.1}s, serving {}",
                started.elapsed().as_secs_f64(),
                at.elapsed().as_secs_f64(),
                soak.serving
            );
            match done.iter_mut().find(|(s, _)| *s == step) {
                Some((_, n)) => *n += 1,
                None => done.push((step, 1)),
            }
        }
        cycles += 1;
        if cycles == 1 {
            after_first_cycle = Some(leftovers(&project));
        }
    }
    // Load on the final state for a moment, then stop.
    std::thread::sleep(Duration::from_secs(5));
    let elapsed = started.elapsed().as_secs_f64();
    let samples = memory.finish();
    let ingress_samples = ingress_memory.finish();
    let (sent, failed, failures) = load.finish();
    let left = leftovers(&project);
    let agent_log = std::fs::metadata(project.state_dir.join("agent.log")).map_or(0, |m| m.len());

    println!("\nsoak finished after {elapsed:.0} s, {cycles} cycles: {done:?}");
    println!("requests sent {sent}, failed {failed}");
    println!("agent private memory, RssAnon (s, pid, KiB):");
    for (t, pid, rss) in &samples {
        println!("  {t:>6.0} {pid:>8} {rss:>8}");
    }
    // Each agent process on its own: RSS at its first sample and its peak.
    let mut agents: Vec<(u32, u64, u64)> = Vec::new();
    for (_, pid, rss) in &samples {
        match agents.iter_mut().find(|(p, _, _)| p == pid) {
            Some((_, _, peak)) => *peak = (*peak).max(*rss),
            None => agents.push((*pid, *rss, *rss)),
        }
    }
    println!("agent processes (pid, first KiB, peak KiB): {agents:?}");
    let ingresses: Vec<u32> =
        ingress_samples
            .iter()
            .map(|(_, pid, _)| *pid)
            .fold(Vec::new(), |mut pids, pid| {
                if !pids.contains(&pid) {
                    pids.push(pid);
                }
                pids
            });
    println!("ingress processes: {ingresses:?} (one: agent restarts leave it running)");
    println!("left behind after one cycle: {after_first_cycle:?}");
    println!("left behind at the end:      {left:?}");
    println!("agent.log: {agent_log} bytes");

    assert!(
        sent > elapsed as u64 * rps / 4,
        "too little traffic to prove anything: {sent} requests"
    );
    assert_eq!(failed, 0, "{failed} of {sent} failed: {failures:?}");
    assert_eq!(
        ingresses.len(),
        1,
        "the ingress was replaced: {ingresses:?}"
    );

    // Memory: after warm-up (the first third: ingress pools, runtime, first rollouts), the last
    // third (one agent process) may exceed the first third's peak by half or 2 MiB, whichever is
    // more, for allocator slack. A leak per request or per rollout grows with time and crosses
    // that (an unswept connection pool grew it by about 4 MiB over the last third); noise does not.
    // The same bound for the ingress process, which carries every request (one process for
    // the whole run: agent restarts leave it running).
    for (who, samples) in [("agent", &samples), ("ingress", &ingress_samples)] {
        let third = elapsed / 3.0;
        let first = max_between(samples, 0.0, third).expect("memory samples in the first third");
        let last = max_between(samples, 2.0 * third, f64::MAX).expect("samples in the last third");
        let bound = first + (first / 2).max(2 * 1024);
        println!(
            "{who} private memory peak: first third {first} KiB, last third {last} KiB, bound {bound} KiB"
        );
        assert!(
            last <= bound,
            "{who} memory grew: {first} KiB -> {last} KiB"
        );
    }

    // Left behind: no more containers than the config's replicas (2 web + 1 worker) or what
    // one cycle left (e.g. a failed release's replicas kept for diagnosis); one image per
    // distinct build; no more volumes than after one cycle; logs within the json-file retention.
    let baseline = after_first_cycle.unwrap_or(left);
    assert!(
        left.containers <= baseline.containers.max(3),
        "containers grew: {baseline:?} -> {left:?}"
    );
    assert!(
        left.images <= VERSIONS.len() + 1,
        "more images than distinct builds: {left:?}"
    );
    // Release tags are kept for the last releases only; each build adds its own tag.
    let kept_tags = usize::try_from(kaapi_docker::engine::KEPT_RELEASE_IMAGES).expect("small");
    assert!(
        left.tags <= kept_tags + VERSIONS.len() + 1,
        "image tags beyond the kept releases: {left:?}"
    );
    assert!(
        left.volumes <= baseline.volumes.max(1),
        "volumes grew: {baseline:?} -> {left:?}"
    );
    assert!(
        left.log_bytes <= left.containers as u64 * log_bytes_kept_per_container(),
        "container logs beyond their retention: {left:?}"
    );
    // The agent rotates its log at 8 MiB when it starts; a soak's lifetime writes far less.
    assert!(
        agent_log <= 64 * MIB,
        "agent.log {agent_log} bytes: not rotated?"
    );
}
