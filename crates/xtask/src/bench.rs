//! The benchmark: sets up a throwaway project, measures every scenario `runs` times, prints one
//! markdown table and writes it with the machine description to `docs/benchmarks.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cmd::{self, docker};
use crate::ecs;
use crate::irreducible;
use crate::load::{LoadConfig, LoadReport};
use crate::ours::{Cli, Report, UnderLoad};
use crate::peer::{self, Peer};
use crate::probe;
use crate::project::{Build, Project, ENVIRONMENT};
use crate::startup;
use crate::table::Table;
use crate::BenchArgs;

pub async fn run(args: BenchArgs) -> Result<()> {
    let root = workspace_root();
    let wants = |part: &str| args.parts.iter().any(|p| p == part);
    if args.parts.iter().all(|p| p == "ecs") {
        // Scripted responses on a virtual clock: no Docker, no binary, any build profile.
        let mut table = Table::default();
        measure_ecs(&mut table)?;
        println!("{}", table.to_markdown());
        return Ok(());
    }
    docker(["info", "--format", "{{.ServerVersion}}"])
        .await
        .context("the Docker Engine does not answer; start it (dockerd) and retry")?;
    if wants("peer") {
        peer::ensure_installed().await?;
    }
    ensure_example_binary(&root).await?;
    let bin = if let Some(binary) = &args.binary {
        binary.clone()
    } else if args.no_build {
        release_binary(&root)
    } else {
        build_release_binary(&root).await?
    };

    let app = format!("kbench{}", std::process::id());
    let project = Project::create(&root, &app, probe::free_port()?)?;
    // A private copy: the target dir may be shared, and another build could replace the
    // binary in the middle of the run.
    let private_bin = project.root().join("kaapi-deploy");
    std::fs::copy(&bin, &private_bin)
        .with_context(|| format!("cannot copy {} (build it first)", bin.display()))?;
    let cli = Cli {
        bin: private_bin,
        project: &project,
    };
    let mut table = Table::default();
    let result = measure(&args, &cli, &mut table).await;
    cleanup(&cli).await;
    result?;

    let markdown = document(&args, &bin, &table).await;
    println!("{}", table.to_markdown());
    let out = root.join(&args.out);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, markdown).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

async fn measure(args: &BenchArgs, cli: &Cli<'_>, table: &mut Table) -> Result<()> {
    let wants = |part: &str| args.parts.iter().any(|p| p == part);
    let project = cli.project;
    let load = LoadConfig {
        addr: SocketAddr::from(([127, 0, 0, 1], project.ingress_port)),
        path: "/version".to_owned(),
        rate: args.rate,
        connections: args.connections,
        min_requests: args.requests,
        timeout: Duration::from_secs(1),
        max_duration: Duration::from_secs_f64(
            args.requests as f64 / f64::from(args.rate.max(1)) * 3.0 + 300.0,
        ),
    };

    // The baseline every rollback returns to.
    let mut baseline: Option<(u64, String)> = None;
    if wants("ours") {
        eprintln!("==> baseline deploy");
        project.write_config(&build("bench-0", None))?;
        let report = cli.deploy_ok().await?;
        let release = report
            .release
            .context("the baseline deploy reported no release")?;
        baseline = Some((release, "bench-0".to_owned()));
    }

    let raw_image = format!("{}-raw", project.app);
    let bench_volume = format!("{}-bench-data", project.app);
    let mut compose: Option<Peer> = None;
    if wants("irreducible") || wants("peer") {
        let tag = format!("{raw_image}:bench-0");
        irreducible::build(&project.dir, &tag, "bench-0").await?;
        irreducible::migrated_volume(&tag, &bench_volume).await?;
    }
    if wants("peer") {
        let dir = std::env::temp_dir().join(format!("{}-compose", project.app));
        let image = format!("{raw_image}:bench-0");
        compose = Some(
            Peer::start(
                &dir,
                &format!("{}peer", project.app),
                &image,
                probe::free_port()?,
            )
            .await?,
        );
    }

    let result = async {
        for run in 1..=args.runs {
            let version = format!("bench-{run}");
            eprintln!("==> run {run} of {}", args.runs);
            if let Some((to, old_version)) = &baseline {
                measure_ours(cli, table, &load, &version, *to, old_version).await?;
            }
            if wants("irreducible") {
                measure_irreducible(project, table, &raw_image, &bench_volume, &version).await?;
            }
            if let Some(peer) = &compose {
                let mut peer_load = load.clone();
                peer_load.addr = peer.addr();
                let r = peer.replace_under_load(peer_load).await?;
                table.add(
                    "Peer: `docker-compose up -d --force-recreate` (command)",
                    "s",
                    2,
                    r.command_seconds,
                );
                table.add(
                    "Peer: outage (first to last failed request)",
                    "s",
                    2,
                    r.outage_seconds,
                );
                add_load(table, "Peer: recreate (1 container)", &r.load);
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Some(peer) = &compose {
        peer.remove().await;
    }
    let _ = docker(["volume", "rm", "-f", &bench_volume]).await;
    result?;
    ratios(table);
    if wants("ecs") {
        measure_ecs(table)?;
    }
    if wants("startup") {
        let help = startup::time_runs(cli, &["--help"], args.startup_runs).await?;
        for ms in help {
            table.add("CLI start-up: `kaapi-deploy --help`", "ms", 1, ms);
        }
        if wants("ours") {
            let releases =
                startup::time_runs(cli, &["releases", ENVIRONMENT], args.startup_runs).await?;
            for ms in releases {
                table.add("CLI start-up: `kaapi-deploy releases local`", "ms", 1, ms);
            }
        }
        let note = format!(
            "wall time of each of {} runs after one warm-up",
            args.startup_runs
        );
        table.note("CLI start-up: `kaapi-deploy --help`", "ms", 1, &note);
        if wants("ours") {
            table.note(
                "CLI start-up: `kaapi-deploy releases local`",
                "ms",
                1,
                &note,
            );
        }
    }
    Ok(())
}

const ECS_TIMELINES: usize = 60;

fn measure_ecs(table: &mut Table) -> Result<()> {
    eprintln!("==> ECS rollout wait on {ECS_TIMELINES} scripted timelines");
    let results = ecs::compare(ecs::scenarios(ECS_TIMELINES))?;
    let ours_delay = "ECS: COMPLETED → our rollout wait returns";
    let waiter_delay = "ECS: COMPLETED → `wait services-stable` returns (15 s polls)";
    let ours_calls = "ECS: API calls per rollout, ours";
    let waiter_calls = "ECS: API calls per rollout, update-service + services-stable";
    for r in &results {
        table.add(ours_delay, "s", 2, r.ours.delay);
        table.add(waiter_delay, "s", 2, r.waiter.delay);
        table.add(ours_calls, "", 0, r.ours.calls as f64);
        table.add(waiter_calls, "", 0, r.waiter.calls as f64);
    }
    let mean = |f: fn(&ecs::Comparison) -> f64| {
        results.iter().map(f).sum::<f64>() / results.len().max(1) as f64
    };
    let timelines = format!(
        "{ECS_TIMELINES} scripted timelines (aws-smithy-mocks, virtual clock), 2 services: new tasks run 20–60 s after UpdateService, the web targets turn healthy 10–40 s later and the old ones drain for the deregistration delay (30, 60 or 300 s), old worker tasks stop in 1–15 s, COMPLETED 1–10 s after the old tasks stopped"
    );
    table.note(
        ours_delay,
        "s",
        2,
        &format!("mean {:.2} s; the real engine's roll_out (paced by the deployment: the deregistration delay less 2 s while the web tasks start, asleep until 2 s before the drain can end, then every 4 s; ±10 % jitter); {timelines}", mean(|r| r.ours.delay)),
    );
    table.note(
        waiter_delay,
        "s",
        2,
        &format!("mean {:.2} s; simulated on the same responses: DescribeServices at 0 s, then every 15 s", mean(|r| r.waiter.delay)),
    );
    table.note(
        ours_calls,
        "",
        0,
        &format!(
            "mean {:.1}; DescribeServices + UpdateService; fewer than the waiter on {} of {} timelines, as many on {}",
            mean(|r| r.ours.calls as f64),
            results.iter().filter(|r| r.ours.calls < r.waiter.calls).count(),
            results.len(),
            results.iter().filter(|r| r.ours.calls == r.waiter.calls).count(),
        ),
    );
    table.note(
        waiter_calls,
        "",
        0,
        &format!("mean {:.1}", mean(|r| r.waiter.calls as f64)),
    );
    Ok(())
}

fn build(version: &str, break_mode: Option<&str>) -> Build {
    Build {
        app_version: version.to_owned(),
        break_mode: break_mode.map(str::to_owned),
    }
}

const DEPLOY_NEW: &str = "Deploy, new image";
const REDEPLOY: &str = "Redeploy, unchanged image";

async fn measure_ours(
    cli: &Cli<'_>,
    table: &mut Table,
    load: &LoadConfig,
    version: &str,
    baseline: u64,
    baseline_version: &str,
) -> Result<()> {
    let project = cli.project;
    let deploy = ["deploy", ENVIRONMENT, "--json"];

    eprintln!("    deploy {version} (new image) under load");
    project.write_config(&build(version, None))?;
    let new = cli.under_load(&deploy, load.clone()).await?;
    let report = expect_outcome(&new, "succeeded", "deploy of a new image")?;
    add_phases(table, DEPLOY_NEW, report);
    if let Some(s) = new.first_seen_after_start(version) {
        table.add(
            &format!("{DEPLOY_NEW}: first response from it (client)"),
            "s",
            2,
            s,
        );
    }
    add_load(table, "Ours: deploy (new image)", &new.load);

    eprintln!("    redeploy {version} (unchanged) under load");
    let again = cli.under_load(&deploy, load.clone()).await?;
    let report = expect_outcome(&again, "succeeded", "redeploy of an unchanged image")?;
    add_phases(table, REDEPLOY, report);
    add_load(table, "Ours: redeploy (unchanged)", &again.load);

    eprintln!("    rollback to release {baseline} under load");
    let to = baseline.to_string();
    let back = cli
        .under_load(
            &["rollback", ENVIRONMENT, "--to", &to, "--json"],
            load.clone(),
        )
        .await?;
    let report = expect_outcome(&back, "succeeded", "rollback")?;
    table.add("Rollback: command total", "s", 2, report.total_seconds);
    table.note(
        "Rollback: command total",
        "s",
        2,
        "`rollback --to N --json` total_seconds: lock, switch to the old release's warm web \
         replicas (within `keep_warm` of the deploy it undoes) and start its worker, verify",
    );
    if let Some(s) = back.first_seen_after_start(baseline_version) {
        table.add(
            "Rollback: until traffic is on the old release (client)",
            "s",
            2,
            s,
        );
    }
    if let Some(s) = back.last_seen_after_start(version) {
        table.add(
            "Rollback: last response from the newer release (client)",
            "s",
            2,
            s,
        );
    }
    add_load(table, "Ours: rollback", &back.load);

    eprintln!("    automatic rollback (BREAK=health) under load");
    project.write_config(&build(&format!("{version}-broken"), Some("health")))?;
    let auto = cli.under_load(&deploy, load.clone()).await?;
    let report = expect_outcome(
        &auto,
        "rolled_back",
        "deploy of a release with failing health",
    )?;
    table.add(
        "Automatic rollback (BREAK=health): deploy total",
        "s",
        2,
        report.total_seconds,
    );
    table.add(
        "Automatic rollback (BREAK=health): rollback phase",
        "s",
        2,
        report.phase("rollback"),
    );
    add_load(table, "Ours: automatic rollback", &auto.load);
    project.write_config(&build(version, None))?;
    Ok(())
}

fn expect_outcome<'a>(run: &'a UnderLoad, outcome: &str, what: &str) -> Result<&'a Report> {
    match &run.report {
        Some(report) if report.outcome == outcome => Ok(report),
        Some(report) => bail!(
            "{what}: expected outcome {outcome}, got {} ({}):\n{}",
            report.outcome,
            report.message,
            cmd::tail(&run.output.stderr, 30)
        ),
        None => bail!(
            "{what}: no JSON report (exit {:?}):\n{}",
            run.output.code,
            cmd::tail(&run.output.stderr, 30)
        ),
    }
}

fn add_phases(table: &mut Table, scenario: &str, report: &Report) {
    let named = ["build", "migrate", "rollout", "verify"];
    for phase in named {
        let label = match phase {
            "rollout" => format!("{scenario}: rollout (start + first healthy + switch)"),
            other => format!("{scenario}: {other}"),
        };
        table.add(&label, "s", 2, report.phase(phase));
    }
    let listed: f64 = named.iter().map(|p| report.phase(p)).sum();
    table.add(
        &format!("{scenario}: other (lock, register, record)"),
        "s",
        2,
        (report.total_seconds - listed).max(0.0),
    );
    table.add(&format!("{scenario}: total"), "s", 2, report.total_seconds);
}

fn add_load(table: &mut Table, scenario: &str, load: &LoadReport) {
    let failed = format!("{scenario}: requests failed");
    table.add(
        &format!("{scenario}: requests sent"),
        "",
        0,
        load.sent as f64,
    );
    table.add(&failed, "", 0, load.failed as f64);
    // Keep every run's failure kinds visible, not only the last.
    let previous = table.note_of(&failed);
    let outage = match peer::outage_seconds(load) {
        s if s > 0.0 => format!(", failures over {s:.2} s"),
        _ => String::new(),
    };
    let note = format!(
        "{previous}{}run {}: {}{outage} (achieved {:.0} req/s, max latency {} ms)",
        if previous.is_empty() { "" } else { "; " },
        table.samples(&failed).len(),
        load.failure_summary(),
        load.sent as f64 / load.elapsed.as_secs_f64().max(0.001),
        load.max_latency.as_millis()
    );
    table.note(&failed, "", 0, &note);
}

const RAW_BUILD_NEW: &str = "Floor: `docker build` (new APP_VERSION)";
const RAW_BUILD_CACHED: &str = "Floor: `docker build` (unchanged, cached)";
const RAW_START: &str = "Floor: `docker run` one container → first healthy probe";
const RAW_MIGRATE: &str = "Floor: `docker run` of the migrations command → its exit";

async fn measure_irreducible(
    project: &Project,
    table: &mut Table,
    raw_image: &str,
    volume: &str,
    version: &str,
) -> Result<()> {
    eprintln!("    floor: docker build and docker run alone");
    // A version no deploy built, so the build does the same work as a deploy of a new image.
    let raw_version = format!("{version}-raw");
    let tag = format!("{raw_image}:{raw_version}");
    let seconds = irreducible::build(&project.dir, &tag, &raw_version).await?;
    table.add(RAW_BUILD_NEW, "s", 2, seconds);
    let seconds = irreducible::build(&project.dir, &tag, &raw_version).await?;
    table.add(RAW_BUILD_CACHED, "s", 2, seconds);
    let seconds = irreducible::migrate(&tag, volume).await?;
    table.add(RAW_MIGRATE, "s", 2, seconds);
    let name = format!("{}-floor", project.app);
    let seconds = irreducible::start_until_healthy(&tag, volume, &name).await?;
    table.add(RAW_START, "s", 2, seconds);
    table.note(
        RAW_START,
        "s",
        2,
        "published 127.0.0.1 port, health path polled every 20 ms, migrated volume",
    );
    Ok(())
}

/// total / floor per run, where both were measured in the same run. The floor of a new image:
/// its build, one run of the migrations and one container to its first healthy probe; an
/// unchanged redeploy's target is its cached build plus at most 0.3 s, so that row is a
/// difference.
fn ratios(table: &mut Table) {
    let totals = table.samples(&format!("{DEPLOY_NEW}: total")).to_vec();
    let builds = table.samples(RAW_BUILD_NEW).to_vec();
    let migrations = table.samples(RAW_MIGRATE).to_vec();
    let starts = table.samples(RAW_START).to_vec();
    for (((t, b), m), s) in totals.iter().zip(&builds).zip(&migrations).zip(&starts) {
        table.add(
            "Ratio: deploy (new image) total / (docker build + migrations run + start → healthy)",
            "×",
            2,
            t / (b + m + s),
        );
    }
    let redeploys = table.samples(&format!("{REDEPLOY}: total")).to_vec();
    let cached = table.samples(RAW_BUILD_CACHED).to_vec();
    for (t, b) in redeploys.iter().zip(&cached) {
        table.add(
            "Redeploy (unchanged) total − cached `docker build`",
            "s",
            2,
            t - b,
        );
    }
}

async fn cleanup(cli: &Cli<'_>) {
    let app = &cli.project.app;
    // `down` stops the agent and its ingress process too (`agent stop` leaves the ingress).
    let _ = cli
        .run(&["down", crate::project::ENVIRONMENT, "--volumes", "--yes"])
        .await;
    let label = format!("label=dev.kaapi.app={app}");
    if let Ok(out) = docker(["ps", "-aq", "--filter", &label]).await {
        let ids: Vec<&str> = out.stdout.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = docker(args).await;
        }
    }
    if let Ok(out) = docker(["volume", "ls", "-q"]).await {
        for volume in out.stdout.lines().filter(|v| v.starts_with(app.as_str())) {
            let _ = docker(["volume", "rm", "-f", volume]).await;
        }
    }
    if let Ok(out) = docker(["images", "--format", "{{.Repository}}:{{.Tag}}"]).await {
        for image in out.stdout.lines().filter(|i| i.contains(app.as_str())) {
            let _ = docker(["rmi", "-f", image]).await;
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

fn release_binary(root: &Path) -> PathBuf {
    target_dir(root).join("release/kaapi-deploy")
}

async fn build_release_binary(root: &Path) -> Result<PathBuf> {
    eprintln!("==> cargo build --release -p kaapi-deploy");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    cmd::run(
        &cargo,
        ["build", "--release", "-p", "kaapi-deploy"],
        Some(root),
        &[],
    )
    .await?
    .ok("cargo build --release -p kaapi-deploy")?;
    Ok(release_binary(root))
}

async fn ensure_example_binary(root: &Path) -> Result<()> {
    if root
        .join("examples/backend/dist/kaapi-example-backend")
        .is_file()
    {
        return Ok(());
    }
    eprintln!("==> examples/backend/build-static.sh");
    cmd::run(
        "bash",
        ["examples/backend/build-static.sh"],
        Some(root),
        &[],
    )
    .await?
    .ok("examples/backend/build-static.sh")?;
    Ok(())
}

/// The results page: what was run, on what, and the table.
async fn document(args: &BenchArgs, bin: &Path, table: &Table) -> String {
    let machine = machine().await;
    let mut command = format!(
        "cargo run --release -p xtask -- bench --runs {} --requests {} --rate {} --connections {}",
        args.runs, args.requests, args.rate, args.connections
    );
    if let Some(binary) = &args.binary {
        command.push_str(&format!(" --binary {}", binary.display()));
    }
    // Only the path says how the binary under test was built; xtask knows its own profile.
    let profile = if cfg!(debug_assertions) {
        "a **debug** build of the load client (xtask)"
    } else {
        "the release build of the load client (xtask)"
    };
    format!(
        "# Benchmarks\n\n\
         Produced by `{command}` on {date}, with {profile}, driving `{bin}`.\n\n\
         ## Machine\n\n{machine}\n\n\
         ## Setup\n\n\
         - Local engine, the example backend (`examples/backend`, a FROM scratch image): \
         2 web replicas behind the agent's ingress on 127.0.0.1, 1 worker, migrations on every \
         deploy. A throwaway project (copy of `examples/backend`, unique app name, free ingress \
         port, private `KAAPI_STATE_DIR`).\n\
         - Each run: deploy a new image (changed `APP_VERSION` build arg), redeploy it unchanged, \
         `rollback --to` the baseline release (within `keep_warm = \"5m\"`: its web replicas \
         are still warm, so the rollback is a switch), deploy a release whose health check fails \
         (`BREAK=health`, rolled back automatically); then the floor with plain docker; then the \
         docker-compose peer.\n\
         - Load: {rate} req/s over {connections} keep-alive HTTP/1.1 connections from one client \
         on 127.0.0.1, `GET /version`, 1 s timeout per request, at least {requests} requests per \
         phase (the client keeps sending after the command ends until it has sent them). A \
         request fails on a connection error, a timeout or a non-2xx answer.\n\
         - Health checks as in `examples/deploy.toml`: interval 1 s, timeout 500 ms, 3 retries, \
         start period 3 s. The agent probes a new replica every 150 ms until its first healthy \
         answer, then at the configured interval; the floor polls every 20 ms.\n\
         - Phase seconds come from each command's `--json` report; \"(client)\" rows from the \
         load client's own clock (first/last answer carrying a version).\n\
         - The peer runs one container (a fixed published port cannot be shared by two) of the \
         same image with the same volume and port mapping, recreated by `docker-compose up -d \
         --force-recreate`.\n\n\
         ## Results (median, min–max over {runs} runs)\n\n{table}",
        date = utc_now().await,
        bin = bin.display(),
        rate = args.rate,
        connections = args.connections,
        requests = args.requests,
        runs = args.runs,
        table = table.to_markdown(),
    )
}

async fn machine() -> String {
    let nproc = cmd::run("nproc", Vec::<&str>::new(), None, &[])
        .await
        .map(|o| o.stdout.trim().to_owned())
        .unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    let docker_version = docker([
        "version",
        "--format",
        "{{.Server.Version}} (API {{.Server.APIVersion}})",
    ])
    .await
    .map(|o| o.stdout.trim().to_owned())
    .unwrap_or_default();
    let kernel = cmd::run("uname", ["-r"], None, &[])
        .await
        .map(|o| o.stdout.trim().to_owned())
        .unwrap_or_default();
    format!(
        "- CPUs: {nproc} ({cpu})\n- Memory: {memory}\n- Docker Engine: {docker_version}\n- Kernel: {kernel}"
    )
}

async fn utc_now() -> String {
    cmd::run("date", ["-u", "+%Y-%m-%d %H:%M UTC"], None, &[])
        .await
        .map(|o| o.stdout.trim().to_owned())
        .unwrap_or_default()
}
