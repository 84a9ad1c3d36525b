//! The dashboard and the agent's metrics on the real Docker Engine: a deploy of the example under
//! a loopback load, the page rendered by headless Chromium while the deploy runs, and `/metrics`
//! counting exactly what the load client sent.

use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use crate::docker_support::{eventually, http_get, Project};

/// Where the test keeps its screenshot (under the build's target directory).
fn output_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&dir).expect("create the screenshot directory");
    dir
}

/// Headless Chromium on `url` with `mode` (`--dump-dom` or `--screenshot=…`); every host but
/// 127.0.0.1 resolves to nothing, so the page must work without a network.
fn chromium(url: &str, mode: &str, profile: &Path) -> String {
    let output = StdCommand::new("timeout")
        .args([
            "90",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1400,1500",
            "--virtual-time-budget=2000",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(mode)
        .arg(url)
        .output()
        .expect("run chromium (install it with scripts/setup-chromium.sh)");
    assert!(
        output.status.success(),
        "chromium {mode} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The agent's `/metrics` (no token needed), as `(requests per class, restarts)` of `local`.
fn ingress_requests(project: &Project) -> u64 {
    let endpoint: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project.state_dir.join("agent.json")).expect("agent.json"),
    )
    .expect("agent.json is JSON");
    let port = u16::try_from(endpoint["port"].as_u64().expect("agent port")).expect("port");
    let (status, body) = http_get(port, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("# TYPE kaapi_ingress_requests_total counter"),
        "{body}"
    );
    assert!(
        body.contains("# TYPE kaapi_ingress_request_duration_seconds histogram"),
        "{body}"
    );
    body.lines()
        .filter(|l| {
            l.starts_with("kaapi_ingress_requests_total{") && l.contains("environment=\"local\"")
        })
        .map(|l| {
            let value = l.rsplit(' ').next().expect("value");
            value.parse::<f64>().expect("numeric") as u64
        })
        .sum()
}

/// Counts `needle` in `text`.
fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

/// The largest `data-points` of the `<path class="{class}" …>` elements.
fn points_of(dom: &str, class: &str) -> u64 {
    dom.split(&format!("<path class=\"{class}\""))
        .skip(1)
        .filter_map(|rest| {
            let after = rest.split("data-points=\"").nth(1)?;
            after.split('"').next()?.parse().ok()
        })
        .max()
        .unwrap_or(0)
}

/// Whether a plot marks where `release` started serving.
fn boundary_of(dom: &str, release: u64) -> bool {
    dom.split("<line class=\"boundary\"")
        .skip(1)
        .filter_map(|rest| rest.split('>').next())
        .any(|line| line.contains(&format!("data-release=\"{release}\"")))
}

struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_dashboard_shows_a_deploy_under_load_with_its_plots_and_metrics_count_every_request() {
    let project = Project::new("dsh");
    project.deploy();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let _dashboard = Background(
        project
            .std_cli(&["dashboard", "local", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the dashboard"),
    );
    assert!(
        eventually(Duration::from_secs(30), || http_get(port, "/api/state")
            .is_ok_and(|(status, _)| status == 200)),
        "the dashboard did not answer"
    );
    let url = format!("http://127.0.0.1:{port}/");
    let profile = tempfile::tempdir().expect("chromium profile dir");

    // Release 2 under a bounded loopback load, while Chromium renders the page.
    let before = ingress_requests(&project);
    let load = project.load();
    std::thread::sleep(Duration::from_secs(3));
    project.configure("2.0.0", "");
    // Release 2's web replicas listen 2 s after they start: a deploy that finishes in about a
    // second would often end before Chromium (a second or two per page) renders it.
    let config = std::fs::read_to_string(&project.config).expect("read deploy.toml");
    let slow = config.replacen("[env]\n", "[env]\nSTARTUP_DELAY_SECS = \"2\"\n", 1);
    assert_ne!(config, slow, "deploy.toml has no [env] table");
    std::fs::write(&project.config, slow).expect("write deploy.toml");
    let mut deploy = Background(
        project
            .std_cli(&["deploy", "local"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the deploy"),
    );
    let started = Instant::now();
    let mut during = None;
    while during.is_none() && started.elapsed() < Duration::from_secs(180) {
        if deploy.0.try_wait().expect("deploy status").is_some() {
            break;
        }
        let dom = chromium(&url, "--dump-dom", profile.path());
        if dom.contains("data-deploy-release=\"2\"") {
            during = Some(dom);
        }
    }
    let screenshot = output_dir().join("dashboard-during-deploy.png");
    if during.is_some() {
        chromium(
            &url,
            &format!("--screenshot={}", screenshot.display()),
            profile.path(),
        );
    }
    let status = deploy.0.wait().expect("wait for the deploy");
    assert!(status.success(), "the deploy of release 2 failed");
    std::thread::sleep(Duration::from_secs(3));
    let result = load.finish();
    std::thread::sleep(Duration::from_millis(300));
    let after = ingress_requests(&project);

    let during = during.expect("Chromium never rendered the page while the deploy ran");
    // The deploy in progress, phase by phase as the deploying process reports them, from the
    // lock and the build on.
    assert!(
        during.contains("Deploy of release 2 in progress"),
        "{during}"
    );
    assert!(count(&during, "data-phase=") >= 4, "{during}");
    for phase in ["lock", "build", "register"] {
        assert!(
            during.contains(&format!("<li class=\"done\" data-phase=\"{phase}\">")),
            "{phase} done: {during}"
        );
    }
    // Plots drawn from the agent's per-second samples of the load.
    assert!(points_of(&during, "requests") >= 3, "{during}");
    assert!(points_of(&during, "p99") >= 3, "{during}");
    // The timeline and the replicas.
    assert!(during.contains("data-release=\"1\""), "{during}");
    assert!(
        during.contains("<td class=\"succeeded\">succeeded</td>"),
        "{during}"
    );
    assert!(during.contains("class=\"replica\""), "{during}");
    let png = std::fs::read(&screenshot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot"
    );

    // Once the deploy of release 2 has ended: its boundary is marked on the plots, no deploy is
    // shown in progress and its duration is known. (Traffic switches before the deploy's own
    // verification ends, so the boundary alone can appear while the deploy still runs.)
    let mut last = String::new();
    let marked = eventually(Duration::from_secs(30), || {
        last = chromium(&url, "--dump-dom", profile.path());
        boundary_of(&last, 2) && !last.contains("data-deploy-release")
    });
    assert!(marked, "{last}");
    assert!(!last.contains("data-deploy-release"), "{last}");
    assert_eq!(
        count(&last, "<td class=\"succeeded\">succeeded</td>"),
        2,
        "{last}"
    );
    chromium(
        &url,
        &format!(
            "--screenshot={}",
            output_dir().join("dashboard-after-deploy.png").display()
        ),
        profile.path(),
    );

    // The ingress counted every request of the load client, plus the deploy's own health
    // verification through the ingress (a few requests).
    assert_eq!(result.failed, 0, "{:?}", result.failures);
    let sent = result.ok + result.failed;
    let counted = after - before;
    assert!(
        counted >= sent && counted <= sent + 5,
        "the ingress counted {counted} requests, the client sent {sent}"
    );
}
