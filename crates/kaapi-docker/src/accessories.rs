//! Accessories on the Docker Engine: backing services (database, cache, broker) in containers
//! of their own images on the environment's network, with their name as network alias. A
//! deploy starts the missing ones, recreates only those whose spec changed (volumes kept), and
//! waits until every one is healthy; running, unchanged ones are never touched.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerSummary, EndpointSettings,
    HealthConfig, HealthStatusEnum, HostConfig, NetworkingConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use kaapi_core::engine::{EngineError, EngineResult};
use kaapi_core::progress::Progress;

use crate::accessory_spec::{AccessoryHealth, AccessorySpec, HealthTiming};
use crate::containers::{self, ensure_volumes};
use crate::docker::failed;
use crate::network;
use kaapi_agent::api::{labels, LogLimits};

/// `dev.kaapi.role` of accessory containers (replicas: `replica`, one-off tasks: `task`).
pub const ROLE: &str = "accessory";
/// The fingerprint of the spec a container was created from.
pub const SPEC_LABEL: &str = "dev.kaapi.accessory-spec";

/// The environment an accessory belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub app: &'a str,
    pub environment: &'a str,
    /// Not part of the fingerprint: new limits apply when an accessory is next recreated.
    pub logs: LogLimits,
}

/// What `up` did to one accessory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    /// Its spec changed, so the container was replaced (its volumes kept).
    Recreated,
    /// It existed but was stopped.
    Started,
    Unchanged,
}

/// Makes every accessory run as specified and healthy, in order; fails with the first one that
/// cannot (missing image, taken port, failing health check), naming it and why.
pub async fn up(
    docker: &Docker,
    owner: Owner<'_>,
    specs: &[AccessorySpec],
    progress: &dyn Progress,
) -> EngineResult<Vec<Change>> {
    network::ensure(docker, owner.app, owner.environment).await?;
    let mut changes = Vec::new();
    for spec in specs {
        let change = up_one(docker, owner, spec, progress).await?;
        wait_healthy(docker, spec, progress).await?;
        changes.push(change);
    }
    Ok(changes)
}

async fn up_one(
    docker: &Docker,
    owner: Owner<'_>,
    spec: &AccessorySpec,
    progress: &dyn Progress,
) -> EngineResult<Change> {
    let name = &spec.name;
    let fingerprint = spec.fingerprint();
    let change = match inspect(docker, &spec.container).await? {
        None => Change::Created,
        Some(existing) => {
            let same = existing
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .and_then(|l| l.get(SPEC_LABEL))
                == Some(&fingerprint);
            let running = existing
                .state
                .as_ref()
                .and_then(|s| s.running)
                .unwrap_or(false);
            let short: String = existing.id.unwrap_or_default().chars().take(12).collect();
            match (same, running) {
                (true, true) => {
                    progress.info(format!("accessory `{name}` runs unchanged ({short})"));
                    return Ok(Change::Unchanged);
                }
                (true, false) => {
                    progress.info(format!("accessory `{name}` is stopped; starting it"));
                    start(docker, spec).await?;
                    return Ok(Change::Started);
                }
                (false, _) => {
                    progress.info(format!(
                        "accessory `{name}` changed in the config; recreating its container (volumes are kept)"
                    ));
                    remove(docker, &spec.container).await?;
                    Change::Recreated
                }
            }
        }
    };
    require_image(docker, spec).await?;
    ensure_volumes(docker, owner.app, owner.environment, &spec.volumes).await?;
    let options = CreateContainerOptionsBuilder::default()
        .name(&spec.container)
        .build();
    docker
        .create_container(Some(options), body(owner, spec, &fingerprint))
        .await
        .map_err(|e| failed(&format!("accessory `{name}`: creating its container"), e))?;
    if let Err(e) = start(docker, spec).await {
        // Leave nothing half-made behind; the volumes stay.
        let _ = remove(docker, &spec.container).await;
        return Err(e);
    }
    if change == Change::Created {
        progress.info(format!("accessory `{name}` started ({})", spec.image));
    }
    Ok(change)
}

pub(crate) async fn inspect(
    docker: &Docker,
    container: &str,
) -> EngineResult<Option<ContainerInspectResponse>> {
    match docker
        .inspect_container(container, None::<InspectContainerOptions>)
        .await
    {
        Ok(found) => Ok(Some(found)),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(e) => Err(failed(&format!("inspecting container {container}"), e)),
    }
}

/// Accessory images are not built here and no registry is assumed: the image must be local.
async fn require_image(docker: &Docker, spec: &AccessorySpec) -> EngineResult<()> {
    match docker.inspect_image(&spec.image).await {
        Ok(_) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Err(EngineError::not_found(format!(
            "accessory `{}`: image {} is not in the local Docker Engine; `docker pull {}` (or build it), then deploy again",
            spec.name, spec.image, spec.image
        ))),
        Err(e) => Err(failed(&format!("accessory `{}`: inspecting image {}", spec.name, spec.image), e)),
    }
}

async fn start(docker: &Docker, spec: &AccessorySpec) -> EngineResult<()> {
    docker
        .start_container(&spec.container, None)
        .await
        .map_err(|e| {
            let message = e.to_string();
            if message.contains("port is already allocated")
                || message.contains("address already in use")
            {
                EngineError::failed(format!(
                    "accessory `{}` cannot start: a port it publishes is taken ({message}); free it or change accessories.{}.ports",
                    spec.name, spec.name
                ))
            } else {
                failed(&format!("accessory `{}`: starting its container", spec.name), e)
            }
        })
}

async fn remove(docker: &Docker, container: &str) -> EngineResult<()> {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(false)
        .build();
    match docker.remove_container(container, Some(options)).await {
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        Err(e) => Err(failed(&format!("removing container {container}"), e)),
    }
}

fn body(owner: Owner<'_>, spec: &AccessorySpec, fingerprint: &str) -> ContainerCreateBody {
    let container_labels = HashMap::from([
        (labels::APP.to_owned(), owner.app.to_owned()),
        (labels::ENVIRONMENT.to_owned(), owner.environment.to_owned()),
        (labels::SERVICE.to_owned(), spec.name.clone()),
        (labels::ROLE.to_owned(), ROLE.to_owned()),
        (SPEC_LABEL.to_owned(), fingerprint.to_owned()),
    ]);
    let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = spec
        .ports
        .iter()
        .map(|(host, container)| {
            (
                format!("{container}/tcp"),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".to_owned()),
                    host_port: Some(host.map(|p| p.to_string()).unwrap_or_default()),
                }]),
            )
        })
        .collect();
    let healthcheck = spec
        .health
        .as_ref()
        .and_then(|(check, timing)| match check {
            AccessoryHealth::Command(argv) => {
                let nanos =
                    |ms: u64| i64::try_from(ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
                let mut test = vec!["CMD".to_owned()];
                test.extend(argv.iter().cloned());
                Some(HealthConfig {
                    test: Some(test),
                    interval: Some(nanos(timing.interval_ms)),
                    timeout: Some(nanos(timing.timeout_ms)),
                    retries: Some(i64::from(timing.retries)),
                    start_period: Some(nanos(timing.start_period_ms)),
                    start_interval: None,
                })
            }
            AccessoryHealth::Http { .. } => None,
        });
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(container_labels),
        exposed_ports: Some(port_bindings.keys().cloned().collect()),
        healthcheck,
        host_config: Some(HostConfig {
            binds: (!spec.volumes.is_empty()).then(|| spec.volumes.clone()),
            port_bindings: Some(port_bindings),
            network_mode: Some(spec.network.clone()),
            log_config: Some(kaapi_agent::container_logs::log_config(owner.logs)),
            // Back after a Docker restart, like compose's backing services.
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                spec.network.clone(),
                EndpointSettings {
                    aliases: Some(vec![spec.name.clone()]),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    }
}

/// Waits until the accessory passes its health check (or just runs, without one).
pub async fn wait_healthy(
    docker: &Docker,
    spec: &AccessorySpec,
    progress: &dyn Progress,
) -> EngineResult<()> {
    let name = &spec.name;
    let Some((check, timing)) = &spec.health else {
        return match running_or_exit(docker, spec).await? {
            None => Ok(()),
            Some(reason) => Err(EngineError::failed(format!("accessory `{name}` {reason}"))),
        };
    };
    let deadline = timing.deadline();
    let started = Instant::now();
    let mut last = String::from("no check finished yet");
    let mut failures = 0;
    loop {
        if let Some(reason) = running_or_exit(docker, spec).await? {
            return Err(EngineError::failed(format!("accessory `{name}` {reason}")));
        }
        let verdict = match check {
            AccessoryHealth::Command(_) => docker_health(docker, spec).await?,
            AccessoryHealth::Http { path, port } => {
                http_health(docker, spec, path, *port, timing).await?
            }
        };
        match verdict {
            Verdict::Healthy => {
                progress.info(format!("accessory `{name}` is healthy"));
                return Ok(());
            }
            Verdict::Unhealthy(reason) => {
                return Err(EngineError::failed(format!(
                    "accessory `{name}` failed its health check: {reason}"
                )))
            }
            Verdict::Failing(reason) => {
                last = reason;
                if started.elapsed() >= Duration::from_millis(timing.start_period_ms) {
                    failures += 1;
                }
            }
            Verdict::Pending => {}
        }
        let http_gave_up =
            matches!(check, AccessoryHealth::Http { .. }) && failures >= timing.retries;
        if http_gave_up || started.elapsed() > deadline {
            return Err(EngineError::failed(format!(
                "accessory `{name}` did not become healthy within {}s: {last}",
                started.elapsed().as_secs()
            )));
        }
        let pause = match check {
            AccessoryHealth::Command(_) => Duration::from_millis(250),
            AccessoryHealth::Http { .. } => Duration::from_millis(timing.interval_ms),
        };
        tokio::time::sleep(pause).await;
    }
}

enum Verdict {
    Healthy,
    /// The engine gave up on it (Docker marked it unhealthy).
    Unhealthy(String),
    /// One check failed; more may follow.
    Failing(String),
    Pending,
}

/// `None` while the container runs; otherwise why it does not.
async fn running_or_exit(docker: &Docker, spec: &AccessorySpec) -> EngineResult<Option<String>> {
    let Some(found) = inspect(docker, &spec.container).await? else {
        return Ok(Some(
            "has no container (removed while starting?)".to_owned(),
        ));
    };
    let state = found.state.unwrap_or_default();
    if state.running == Some(true) {
        return Ok(None);
    }
    let tail = last_lines(docker, &spec.container, 5).await;
    Ok(Some(format!(
        "exited with code {}{}",
        state.exit_code.unwrap_or(-1),
        if tail.is_empty() {
            String::new()
        } else {
            format!("; its last output:\n{tail}")
        }
    )))
}

async fn docker_health(docker: &Docker, spec: &AccessorySpec) -> EngineResult<Verdict> {
    let Some(found) = inspect(docker, &spec.container).await? else {
        return Ok(Verdict::Pending);
    };
    let health = found.state.and_then(|s| s.health).unwrap_or_default();
    let last_output = health
        .log
        .as_ref()
        .and_then(|log| log.last())
        .map(|r| {
            format!(
                "`{}` exited {}: {}",
                spec.health
                    .as_ref()
                    .map(|(c, _)| match c {
                        AccessoryHealth::Command(argv) => argv.join(" "),
                        AccessoryHealth::Http { path, .. } => path.clone(),
                    })
                    .unwrap_or_default(),
                r.exit_code.unwrap_or(-1),
                r.output.as_deref().unwrap_or("").trim()
            )
        })
        .unwrap_or_else(|| "no check finished yet".to_owned());
    Ok(match health.status {
        Some(HealthStatusEnum::HEALTHY) => Verdict::Healthy,
        Some(HealthStatusEnum::UNHEALTHY) => Verdict::Unhealthy(last_output),
        _ if health.failing_streak.unwrap_or(0) > 0 => Verdict::Failing(last_output),
        _ => Verdict::Pending,
    })
}

async fn http_health(
    docker: &Docker,
    spec: &AccessorySpec,
    path: &str,
    port: u16,
    timing: &HealthTiming,
) -> EngineResult<Verdict> {
    let Some(host_port) = published_port(docker, &spec.container, port).await? else {
        return Ok(Verdict::Failing(format!("port {port} is not published")));
    };
    let url = format!("http://127.0.0.1:{host_port}{path}");
    let timeout = Duration::from_millis(timing.timeout_ms);
    Ok(match crate::verify::get_status(&url, timeout).await {
        Ok(status) if (200..400).contains(&status) => Verdict::Healthy,
        Ok(status) => Verdict::Failing(format!("GET {url} answered {status}")),
        Err(e) => Verdict::Failing(format!("GET {url} failed: {e}")),
    })
}

/// The 127.0.0.1 port a container's `port/tcp` is published on.
pub async fn published_port(
    docker: &Docker,
    container: &str,
    port: u16,
) -> EngineResult<Option<u16>> {
    let Some(found) = inspect(docker, container).await? else {
        return Ok(None);
    };
    Ok(found
        .network_settings
        .and_then(|s| s.ports)
        .and_then(|mut ports| ports.remove(&format!("{port}/tcp")))
        .flatten()
        .unwrap_or_default()
        .iter()
        .find_map(|b| b.host_port.as_deref().and_then(|p| p.parse().ok())))
}

async fn last_lines(docker: &Docker, container: &str, count: usize) -> String {
    let options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .tail(&count.to_string())
        .build();
    let chunks: Vec<_> = docker.logs(container, Some(options)).collect().await;
    chunks
        .into_iter()
        .filter_map(Result::ok)
        .map(|c| c.to_string())
        .collect::<String>()
        .trim_end()
        .to_owned()
}

/// Stops an accessory, keeping its container and volumes (`accessory stop`).
pub async fn stop(docker: &Docker, spec: &AccessorySpec) -> EngineResult<bool> {
    if inspect(docker, &spec.container).await?.is_none() {
        return Ok(false);
    }
    let options = StopContainerOptionsBuilder::default().t(30).build();
    match docker.stop_container(&spec.container, Some(options)).await {
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        }) => Ok(true),
        Err(e) => Err(failed(&format!("stopping accessory `{}`", spec.name), e)),
    }
}

/// Restarts an accessory's container (same container, same volumes) and waits until healthy.
pub async fn restart(
    docker: &Docker,
    owner: Owner<'_>,
    spec: &AccessorySpec,
    progress: &dyn Progress,
) -> EngineResult<()> {
    if inspect(docker, &spec.container).await?.is_none() {
        up(docker, owner, std::slice::from_ref(spec), progress).await?;
        return Ok(());
    }
    docker
        .restart_container(
            &spec.container,
            None::<bollard::query_parameters::RestartContainerOptions>,
        )
        .await
        .map_err(|e| failed(&format!("restarting accessory `{}`", spec.name), e))?;
    wait_healthy(docker, spec, progress).await
}

/// How one accessory is doing, for `accessory status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccessoryState {
    pub name: String,
    pub image: String,
    pub container_id: Option<String>,
    /// `running`, `exited`, `absent`, …
    pub state: String,
    /// `healthy`, `unhealthy`, `starting`, or none without a Docker health check.
    pub health: Option<String>,
    /// Whether the container was created from the current config.
    pub up_to_date: bool,
    /// `127.0.0.1:HOST->CONTAINER`.
    pub ports: Vec<String>,
}

pub async fn state(docker: &Docker, spec: &AccessorySpec) -> EngineResult<AccessoryState> {
    let found = inspect(docker, &spec.container).await?;
    let Some(found) = found else {
        return Ok(AccessoryState {
            name: spec.name.clone(),
            image: spec.image.clone(),
            container_id: None,
            state: "absent".to_owned(),
            health: None,
            up_to_date: false,
            ports: Vec::new(),
        });
    };
    let up_to_date = found
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .and_then(|l| l.get(SPEC_LABEL))
        == Some(&spec.fingerprint());
    let state = found.state.clone().unwrap_or_default();
    let mut ports = Vec::new();
    for (_, container) in &spec.ports {
        if let Some(host) = published_port(docker, &spec.container, *container).await? {
            ports.push(format!("127.0.0.1:{host}->{container}"));
        }
    }
    Ok(AccessoryState {
        name: spec.name.clone(),
        image: spec.image.clone(),
        container_id: found.id.map(|id| id.chars().take(12).collect()),
        state: state
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".to_owned()),
        health: state
            .health
            .and_then(|h| h.status)
            .filter(|s| *s != HealthStatusEnum::NONE && *s != HealthStatusEnum::EMPTY)
            .map(|s| s.to_string()),
        up_to_date,
        ports,
    })
}

/// The accessory's container as listed, for logs.
pub async fn listed(
    docker: &Docker,
    owner: Owner<'_>,
    name: &str,
) -> EngineResult<Vec<ContainerSummary>> {
    containers::list(
        docker,
        &[
            (labels::APP, owner.app),
            (labels::ENVIRONMENT, owner.environment),
            (labels::ROLE, ROLE),
            (labels::SERVICE, name),
        ],
    )
    .await
}
