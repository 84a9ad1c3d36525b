//! `DockerEngine`: the pipeline's verbs on the local Docker Engine for one environment. Builds
//! with [`DockerImageBuilder`], records in the embedded [`Store`], runs one-off tasks itself and
//! hands rollouts to the agent, which keeps replicas alive and serves the ingress.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bollard::query_parameters::TagImageOptionsBuilder;
use bollard::Docker;
use kaapi_core::config::ResolvedEnvironment;
use kaapi_core::engine::{
    Engine, EngineError, EngineResult, ExecRequest, ImageBuilder, ImageSource, LockOwner,
    LockToken, LogLine, LogQuery, ReplicaStatus, RolloutOutcome, RunningTasks, ServiceStatus,
    StatusEvent, StatusReport, TaskExit, TaskOn,
};
use kaapi_core::plan::{AccessoryView, ServiceView};
use kaapi_core::progress::Progress;
use kaapi_core::prune::{kept_releases, PruneReport};
use kaapi_core::release::{ImageRef, Outcome, Release, ReleaseMeta};
use kaapi_core::scaling::{kept_count, Kept, ScaleRequest, ScalingEvent};

use crate::accessories;
use crate::accessory_plan;
use crate::accessory_spec;
use crate::agent_link::{self, AgentLink};
use crate::containers::{self, label, source_name};
use crate::diagnose;
use crate::docker::{self, failed};
use crate::down;
use crate::exec;
use crate::history::{Revisions, Store};
use crate::image::{BuildSpec, DockerImageBuilder};
use crate::lock::DeployLock;
use crate::network;
use crate::plan_view;
use crate::prune;
use crate::revisions;
use crate::scale;
use crate::settle;
use crate::task::{self, TaskRequest};
use crate::{logs, stats};
use kaapi_agent::api::{labels, EnvironmentSpec, EnvironmentState, RolloutPhase, ServiceSpec};

/// How many releases' images stay tagged (`{app}-{env}:release-N`) so a rollback needs no
/// registry; older tags are removed, which frees images no recent release uses.
pub const KEPT_RELEASE_IMAGES: u64 = 5;

pub struct DockerEngine {
    target: ResolvedEnvironment,
    state_dir: PathBuf,
    program: PathBuf,
    docker: Docker,
    store: Store,
    tasks: RunningTasks,
    failed_rollouts: diagnose::FailedRollouts,
}

impl DockerEngine {
    /// Connects to the Docker Engine and opens `{state_dir}/releases.db`. `program` is the
    /// kaapi-deploy executable, run as `agent run` when the agent must be started.
    pub async fn connect(
        target: ResolvedEnvironment,
        state_dir: &Path,
        program: &Path,
    ) -> EngineResult<Self> {
        let docker = docker::connect().await?;
        let store = Store::open(state_dir)?;
        Ok(Self {
            target,
            state_dir: state_dir.to_path_buf(),
            program: program.to_path_buf(),
            docker,
            store,
            tasks: RunningTasks::default(),
            failed_rollouts: diagnose::FailedRollouts::default(),
        })
    }

    fn app(&self) -> &str {
        self.target.app()
    }

    fn lock(&self) -> DeployLock<'_> {
        DeployLock::new(&self.store, self.target.name())
    }

    /// Settles unfinished releases from what the agent serves (see [`settle`]); call only when
    /// no live deploy holds the lock.
    fn settle_unfinished(
        &self,
        state: Option<&EnvironmentState>,
        progress: &dyn Progress,
    ) -> EngineResult<()> {
        // While a rollout runs, what it will serve is not known yet.
        let served = state
            .filter(|s| s.active_rollout.is_none())
            .and_then(|s| s.release);
        for settled in settle::settle(&self.store, self.target.name(), served)? {
            progress.warning(format!(
                "release {} was left unfinished; recorded as {} from what the agent serves",
                settled.number,
                settled.outcome.as_str()
            ));
        }
        Ok(())
    }

    /// Whether a deploy that is still running holds the lock (one on another host counts).
    fn lock_held_by_live_deploy(&self) -> EngineResult<bool> {
        Ok(self.lock().holder()?.is_some_and(|row| {
            row.host != crate::lock::host_name() || kaapi_agent::process::alive(row.pid)
        }))
    }

    /// Local repository of the environment's images: `{app}-{env}`.
    fn local_repository(&self) -> String {
        format!("{}-{}", self.app(), self.target.name())
    }

    fn builder(&self) -> EngineResult<DockerImageBuilder> {
        Ok(DockerImageBuilder::new(
            self.docker.clone(),
            BuildSpec::from_config(&self.target)?,
        ))
    }

    /// The local image ID (`sha256:…`) of a reference, refusing images this engine lacks.
    async fn local_image_id(&self, reference: &str) -> EngineResult<String> {
        match self.docker.inspect_image(reference).await {
            Ok(image) => image.id.ok_or_else(|| {
                EngineError::failed(format!("the Docker Engine reports no ID for image {reference}"))
            }),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                Err(EngineError::not_found(format!(
                    "image {reference} is not in the local Docker Engine; build it or `docker pull` it first (rollbacks need the images of recent releases, which kaapi-deploy keeps tagged {}:release-N)",
                    self.local_repository()
                )))
            }
            Err(e) => Err(failed(&format!("inspecting image {reference}"), e)),
        }
    }

    /// Tags the image of release `number` and untags releases older than the kept window.
    async fn keep_release_image(&self, image_id: &str, number: u64, progress: &dyn Progress) {
        let repository = self.local_repository();
        let options = TagImageOptionsBuilder::default()
            .repo(&repository)
            .tag(&format!("release-{number}"))
            .build();
        if let Err(e) = self.docker.tag_image(image_id, Some(options)).await {
            progress.warning(format!(
                "could not tag {image_id} as {repository}:release-{number}: {e}"
            ));
        }
        if number > KEPT_RELEASE_IMAGES {
            let old = format!("{repository}:release-{}", number - KEPT_RELEASE_IMAGES);
            // Removing a tag deletes the image only when nothing else (tag, container) uses it.
            let _ = self
                .docker
                .remove_image(
                    &old,
                    None::<bollard::query_parameters::RemoveImageOptions>,
                    None,
                )
                .await;
        }
    }

    fn task_timeout(&self) -> Option<Duration> {
        self.target
            .config()
            .migrations
            .as_ref()
            .and_then(|m| m.timeout)
            .map(Duration::from)
    }

    /// The specs of a release's services, from its stored revisions.
    fn release_specs(&self, release: &Release) -> EngineResult<Vec<ServiceSpec>> {
        release
            .revisions
            .iter()
            .map(|revision| {
                self.store.revision(&revision.revision)?.ok_or_else(|| {
                    EngineError::not_found(format!(
                        "revision {} of release {} is missing from {}",
                        revision.revision,
                        release.number,
                        self.store.path().display()
                    ))
                })
            })
            .collect()
    }

    /// The spec `service` runs as a one-off task: its revision in a release, or for an image
    /// no release carries yet (`migrate`), derived from the config with that image.
    async fn task_spec(&self, on: TaskOn<'_>, service: &str) -> EngineResult<ServiceSpec> {
        let mut spec = self.stored_task_spec(on, service).await?;
        spec.network = Some(self.network_name());
        spec.logs = Some(revisions::log_limits(&self.target));
        Ok(spec)
    }

    async fn stored_task_spec(&self, on: TaskOn<'_>, service: &str) -> EngineResult<ServiceSpec> {
        let release = match on {
            TaskOn::Release(release) => release,
            TaskOn::Image(image) => {
                let image_id = self.local_image_id(&image.reference).await?;
                let secrets = revisions::read_secrets(&self.target)?;
                return revisions::service_spec(&self.target, service, &image_id, &secrets);
            }
        };
        let revision = release.revision_of(service).ok_or_else(|| {
            EngineError::not_found(format!(
                "release {} has no service `{service}`",
                release.number
            ))
        })?;
        let spec = self.store.revision(&revision.revision)?.ok_or_else(|| {
            EngineError::not_found(format!("revision {} is missing", revision.revision))
        })?;
        self.require_release_image(release, &spec.image).await?;
        Ok(spec)
    }

    /// A release's task needs its image, which `prune` removes from releases beyond the kept
    /// ones (`run --release N` may ask for any of them).
    async fn require_release_image(&self, release: &Release, image_id: &str) -> EngineResult<()> {
        match self.docker.inspect_image(image_id).await {
            Ok(_) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                Err(EngineError::not_found(format!(
                    "the image of release {} ({}) is no longer in the local Docker Engine (pruned, or removed by hand); run on a release whose image is kept, or build that release's commit again and tag the image {}",
                    release.number, release.image.reference, release.image.reference
                )))
            }
            Err(e) => Err(failed(
                &format!("inspecting image {image_id} of release {}", release.number),
                e,
            )),
        }
    }

    /// The environment's Docker network, where accessories answer by name.
    fn network_name(&self) -> String {
        network::network_name(self.app(), self.target.name())
    }

    fn accessory_owner(&self) -> accessories::Owner<'_> {
        accessories::Owner {
            app: self.app(),
            environment: self.target.name(),
            logs: revisions::log_limits(&self.target),
        }
    }

    /// Stops and removes what the environment runs locally: the agent forgets it (replicas,
    /// ingresses; the agent itself exits when it serves nothing else), then every container
    /// left with its labels (one-off tasks, accessories) and its network; with
    /// `remove_volumes`, its volumes too. The history and the images stay. Call under the
    /// deploy lock.
    pub async fn down(
        &self,
        remove_volumes: bool,
        progress: &dyn Progress,
    ) -> EngineResult<down::DownReport> {
        let environment = self.target.name();
        // Read before anything goes: the volumes the current release mounts.
        let mut known_volumes = BTreeSet::new();
        if remove_volumes {
            if let Some(current) = self.current_release().await? {
                for spec in self.release_specs(&current)? {
                    known_volumes.extend(down::bind_volumes(&spec.volumes));
                }
            }
        }
        let others: Vec<String> = self
            .target
            .config()
            .environments
            .keys()
            .filter(|name| name.as_str() != environment)
            .cloned()
            .collect();
        let agent =
            agent_link::remove_environment(&self.state_dir, &self.program, environment, &others)
                .await?;
        if agent.removed_environment {
            progress.info(format!(
                "the agent removed the replicas and ingresses of `{environment}`"
            ));
        }
        let containers =
            down::remove_containers(&self.docker, self.app(), environment, remove_volumes).await?;
        let network_removed = down::remove_network(&self.docker, &self.network_name()).await?;
        let volumes = if remove_volumes {
            down::remove_volumes(&self.docker, self.app(), environment, known_volumes).await?
        } else {
            Vec::new()
        };
        Ok(down::DownReport {
            environment: environment.to_owned(),
            agent_removed_environment: agent.removed_environment,
            agent_stopped: agent.stopped,
            agent_still_serves: agent.still_serves,
            containers,
            network_removed,
            volumes,
        })
    }

    /// The Docker Engine this engine talks to (`accessory` commands use it directly).
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The desired state the agent gets for `release`.
    pub fn environment_spec(&self, release: &Release) -> EngineResult<EnvironmentSpec> {
        let mut services = self.release_specs(release)?;
        for (spec, revision) in services.iter_mut().zip(&release.revisions) {
            spec.network = Some(self.network_name());
            spec.logs = Some(revisions::log_limits(&self.target));
            spec.revision = Some(revision.revision.clone());
        }
        let web_service = services
            .iter()
            .find(|s| s.port.is_some())
            .map(|s| s.name.clone());
        let ingress_port = self.ingress_port()?;
        // The other web services' ingresses (validated: services with a port).
        let ingresses = self
            .target
            .env()
            .ingress_ports
            .iter()
            .filter(|(name, _)| {
                services
                    .iter()
                    .any(|s| &s.name == *name && s.port.is_some())
            })
            .map(|(name, port)| (name.clone(), *port))
            .collect();
        Ok(EnvironmentSpec {
            app: self.app().to_owned(),
            environment: self.target.name().to_owned(),
            release: release.number,
            ingress_port,
            web_service,
            ingresses,
            services,
            keep_warm_ms: u64::try_from(self.target.env().keep_warm().as_millis())
                .unwrap_or(u64::MAX),
        })
    }

    /// Records a release with `revisions` and keeps its image from being pruned.
    async fn insert_release(
        &self,
        image: &ImageRef,
        meta: &ReleaseMeta,
        image_id: &str,
        revisions: &Revisions,
        progress: &dyn Progress,
    ) -> EngineResult<Release> {
        let release = self
            .store
            .insert_release(self.target.name(), image, meta, revisions)?;
        self.keep_release_image(image_id, release.number, progress)
            .await;
        let revisions: Vec<&str> = release
            .revisions
            .iter()
            .map(|r| r.revision.as_str())
            .collect();
        progress.info(format!(
            "release {} registered: {}",
            release.number,
            revisions.join(", ")
        ));
        Ok(release)
    }

    /// Gives each service the count it was scaled to while `deploy.toml` still says what it
    /// said then; returns a note for each service whose config changed since (the config wins).
    fn keep_scaled_counts(&self, spec: &mut EnvironmentSpec) -> EngineResult<Vec<String>> {
        let events = self.store.scaling_events(self.target.name())?;
        let mut notes = Vec::new();
        for service in &mut spec.services {
            match kept_count(&service.name, self.target.replicas(&service.name), &events) {
                Kept::Unscaled => {}
                Kept::Scaled(count) => service.replicas = count,
                Kept::ConfigWins(note) => notes.push(note),
            }
        }
        Ok(notes)
    }

    /// The environment's ingress port; required when there is a web service, since without a
    /// stable port there is no URL to verify the deploy through or to print.
    fn ingress_port(&self) -> EngineResult<Option<u16>> {
        let port = self.target.env().ingress_port;
        match (self.target.config().web_service(), port) {
            (Some((web, _)), None) => Err(EngineError::failed(format!(
                "{}: environments.{}.ingress_port is not set, so the web service `{web}` would have no stable address; add e.g. ingress_port = 8080",
                self.target.path().display(),
                self.target.name()
            ))),
            _ => Ok(port),
        }
    }

    /// What the agent runs for this environment; `None` when no agent runs.
    async fn agent_state(&self) -> EngineResult<Option<EnvironmentState>> {
        agent_link::environment_if_running(&self.state_dir, self.target.name()).await
    }

    /// The ingress health URL the deploy is verified through.
    fn health_url(&self) -> Option<String> {
        let (_, web) = self.target.config().web_service()?;
        let path = web.health.as_ref().map(|h| h.path.as_str()).unwrap_or("/");
        Some(format!("{}{path}", self.url()?))
    }
}

#[async_trait]
impl Engine for DockerEngine {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn environment(&self) -> &str {
        self.target.name()
    }

    fn retention(&self) -> Option<usize> {
        self.target.retention().map(|keep| keep as usize)
    }

    fn url(&self) -> Option<String> {
        let port = self.target.env().ingress_port?;
        Some(format!("http://127.0.0.1:{port}"))
    }

    async fn acquire_lock(
        &self,
        owner: &LockOwner,
        progress: &dyn Progress,
    ) -> EngineResult<LockToken> {
        let token = self.lock().acquire(owner, progress)?;
        // This deploy holds the lock: what earlier deploys left unfinished can be settled.
        let state = agent_link::environment_if_running(&self.state_dir, self.target.name()).await?;
        self.settle_unfinished(state.as_ref(), progress)?;
        Ok(token)
    }

    async fn release_lock(&self, token: &LockToken) -> EngineResult<()> {
        self.lock().release(token)
    }

    async fn force_unlock(&self) -> EngineResult<()> {
        self.lock().force_unlock()?;
        // The release the removed lock's deploy was making is settled, not left in progress.
        let state = agent_link::environment_if_running(&self.state_dir, self.target.name()).await?;
        self.settle_unfinished(state.as_ref(), &kaapi_core::progress::Silent)?;
        Ok(())
    }

    async fn prepare_image(
        &self,
        source: &ImageSource,
        meta: &ReleaseMeta,
        progress: &dyn Progress,
    ) -> EngineResult<ImageRef> {
        let (image_id, mut tags) = match source {
            ImageSource::Build => {
                let built = self
                    .builder()?
                    .build(&docker_tag(&meta.commit), progress)
                    .await?;
                (built.id, built.tags)
            }
            ImageSource::Existing(reference) => {
                let id = self.local_image_id(reference).await?;
                progress.info(format!("using image {reference} ({id})"));
                (id, vec![reference.clone()])
            }
        };
        let Some(registry) = self.target.env().registry.clone() else {
            return Ok(ImageRef {
                reference: image_id.clone(),
                digest: image_id,
                tags,
            });
        };
        let repository = format!(
            "{}/{}",
            registry.trim_end_matches('/'),
            self.target.names().repository
        );
        let mut push_tags = vec![docker_tag(&meta.commit)];
        if let Some(version) = &meta.version {
            push_tags.push(docker_tag(version));
        }
        let digest = self
            .builder()?
            .push(&image_id, &repository, &push_tags, None, progress)
            .await?;
        tags.extend(push_tags.iter().map(|t| format!("{repository}:{t}")));
        Ok(ImageRef {
            reference: format!("{repository}@{digest}"),
            digest,
            tags,
        })
    }

    fn has_accessories(&self) -> bool {
        !self
            .target
            .config()
            .accessories_of(self.target.name())
            .is_empty()
    }

    async fn start_accessories(&self, progress: &dyn Progress) -> EngineResult<()> {
        let specs = accessory_spec::specs(&self.target)?;
        accessories::up(&self.docker, self.accessory_owner(), &specs, progress).await?;
        Ok(())
    }

    async fn register_release(
        &self,
        image: &ImageRef,
        meta: &ReleaseMeta,
        rollback_of: Option<u64>,
        progress: &dyn Progress,
    ) -> EngineResult<Release> {
        self.ingress_port()?;
        let image_id = self.local_image_id(&image.reference).await?;
        let revisions = match rollback_of {
            Some(number) => Revisions::CopyOf(number),
            None => {
                let secrets = revisions::read_secrets(&self.target)?;
                Revisions::New(revisions::revisions(&self.target, &image_id, &secrets)?)
            }
        };
        self.insert_release(image, meta, &image_id, &revisions, progress)
            .await
    }

    async fn register_release_of(
        &self,
        image: &ImageRef,
        meta: &ReleaseMeta,
        only: &[String],
        current: &Release,
        progress: &dyn Progress,
    ) -> EngineResult<Release> {
        self.ingress_port()?;
        let image_id = self.local_image_id(&image.reference).await?;
        let secrets = revisions::read_secrets(&self.target)?;
        let new = revisions::revisions(&self.target, &image_id, &secrets)?
            .into_iter()
            .filter(|revision| only.contains(&revision.spec.name))
            .collect();
        let revisions = Revisions::Partial {
            new,
            rest_of: current.number,
        };
        self.insert_release(image, meta, &image_id, &revisions, progress)
            .await
    }

    async fn run_task(
        &self,
        on: TaskOn<'_>,
        service: &str,
        command: &[String],
        progress: &dyn Progress,
    ) -> EngineResult<TaskExit> {
        let spec = self.task_spec(on, service).await?;
        let (release, of) = match on {
            TaskOn::Release(release) => {
                (Some(release.number), format!("release {}", release.number))
            }
            TaskOn::Image(image) => (None, format!("image {}", image.digest)),
        };
        progress.info(format!(
            "running `{}` as a one-off task of {service} ({of})",
            command.join(" "),
        ));
        network::ensure(&self.docker, self.app(), self.target.name()).await?;
        let source = format!("{service}/task");
        let request = TaskRequest {
            app: self.app(),
            environment: self.target.name(),
            release,
            spec: &spec,
            command,
            timeout: self.task_timeout(),
            source: &source,
        };
        let exit = task::run(&self.docker, &self.tasks, &request, progress).await?;
        progress.info(format!("the task exited with code {}", exit.exit_code));
        Ok(exit)
    }

    async fn exec(&self, request: &ExecRequest<'_>) -> EngineResult<i64> {
        let replicas = exec::running_replicas(
            &self.docker,
            self.app(),
            self.target.name(),
            request.service,
        )
        .await?;
        let container = exec::pick(&replicas, request, self.target.name())?;
        exec::run(&self.docker, &container, request).await
    }

    async fn prune(
        &self,
        keep: usize,
        dry_run: bool,
        progress: &dyn Progress,
    ) -> EngineResult<PruneReport> {
        let releases = self.releases().await?;
        let current = self.current_release().await?.map(|r| r.number);
        let kept = kept_releases(&releases, current, keep);
        let removed = prune::images(&self.docker, &releases, &kept, dry_run, progress).await?;
        Ok(PruneReport {
            environment: self.target.name().to_owned(),
            dry_run,
            kept_releases: kept.into_iter().rev().collect(),
            removed,
        })
    }

    async fn stop_tasks(&self) -> EngineResult<()> {
        task::stop_all(&self.docker, &self.tasks).await
    }

    async fn roll_out(
        &self,
        release: &Release,
        progress: &dyn Progress,
    ) -> EngineResult<RolloutOutcome> {
        let mut spec = self.environment_spec(release)?;
        for note in self.keep_scaled_counts(&mut spec)? {
            progress.info(note);
        }
        network::ensure(&self.docker, self.app(), self.target.name()).await?;
        let agent = AgentLink::connect(&self.state_dir, &self.program).await?;
        let on_message = |message: &str| progress.info(message.to_owned());
        let state = agent.roll_out(&spec, &on_message).await?;
        if state.phase != RolloutPhase::Completed {
            self.failed_rollouts
                .keep(release.number, &state.failed_replicas);
        }
        Ok(match state.phase {
            RolloutPhase::Completed => RolloutOutcome::Completed,
            RolloutPhase::Failed | RolloutPhase::Running => RolloutOutcome::Failed {
                reason: state
                    .reason
                    .unwrap_or_else(|| format!("the rollout of release {} failed", release.number)),
                engine_rolled_back_to: None,
            },
        })
    }

    async fn scale(
        &self,
        requests: &[ScaleRequest],
        author: &str,
        progress: &dyn Progress,
    ) -> EngineResult<Vec<ScalingEvent>> {
        let environment = self.target.name();
        let Some(release) = self.current_release().await? else {
            return Err(EngineError::failed(format!(
                "`{environment}` has no release serving yet; run `kaapi-deploy deploy \
                 {environment}` first"
            )));
        };
        let mut spec = self.environment_spec(&release)?;
        self.keep_scaled_counts(&mut spec)?;
        let events = scale::apply(&mut spec, requests, author)?;
        network::ensure(&self.docker, self.app(), environment).await?;
        let agent = AgentLink::connect(&self.state_dir, &self.program).await?;
        let on_message = |message: &str| progress.info(message.to_owned());
        let state = agent.roll_out(&spec, &on_message).await?;
        if state.phase != RolloutPhase::Completed {
            let reason = state
                .reason
                .unwrap_or_else(|| "the agent gave no reason".to_owned());
            return Err(EngineError::failed(format!(
                "scaling `{environment}` failed: {reason}; release {} keeps serving with its \
                 previous replica counts",
                release.number
            )));
        }
        self.store.insert_scaling(environment, &events)?;
        Ok(events)
    }

    async fn scaling_events(&self) -> EngineResult<Vec<ScalingEvent>> {
        Ok(self.store.scaling_events(self.target.name())?)
    }

    async fn diagnose(
        &self,
        release: &Release,
        _progress: &dyn Progress,
    ) -> Vec<kaapi_core::diagnosis::Diagnosis> {
        if let Some(failed) = self.failed_rollouts.take(release.number) {
            return failed;
        }
        match self.agent_state().await {
            Ok(Some(state)) => diagnose::live_replicas(&self.docker, &state, release.number).await,
            _ => Vec::new(),
        }
    }

    async fn verify(&self, progress: &dyn Progress) -> EngineResult<Result<(), String>> {
        let Some(url) = self.health_url() else {
            progress.info(
                "no web service with an ingress port; nothing to verify from outside".to_owned(),
            );
            return Ok(Ok(()));
        };
        Ok(crate::verify::check(&url, 5, Duration::from_millis(500), progress).await)
    }

    async fn record(
        &self,
        number: u64,
        outcome: Outcome,
        detail: Option<&str>,
    ) -> EngineResult<()> {
        Ok(self
            .store
            .set_outcome(self.target.name(), number, outcome, detail)?)
    }

    async fn record_schema_version(&self, number: u64, version: &str) -> EngineResult<()> {
        Ok(self
            .store
            .set_schema_version(self.target.name(), number, version)?)
    }

    async fn releases(&self) -> EngineResult<Vec<Release>> {
        Ok(self.store.releases(self.target.name())?)
    }

    async fn running_services(&self) -> EngineResult<Vec<ServiceView>> {
        let Some(current) = self.current_release().await? else {
            return Ok(Vec::new());
        };
        let specs = self.release_specs(&current)?;
        // The agent's desired count for the release it keeps running; 0 when it runs another
        // release or does not run at all, so that a deploy brings the release back.
        let desired = self
            .agent_state()
            .await?
            .filter(|state| state.release == Some(current.number))
            .map(|state| state.desired)
            .unwrap_or_default();
        let secrets = &self.target.config().secrets;
        Ok(specs
            .iter()
            .map(|spec| {
                let replicas = desired.get(&spec.name).copied().unwrap_or(0);
                plan_view::view(spec, secrets, Some(replicas))
            })
            .collect())
    }

    async fn running_accessories(&self) -> EngineResult<Vec<AccessoryView>> {
        let mut views = Vec::new();
        for spec in accessory_spec::specs(&self.target)? {
            views.extend(accessory_plan::running(&self.docker, &spec).await?);
        }
        Ok(views)
    }

    async fn planned_accessories(&self) -> EngineResult<Vec<AccessoryView>> {
        Ok(accessory_spec::specs(&self.target)?
            .iter()
            .map(accessory_plan::planned)
            .collect())
    }

    async fn planned_services(&self, image: &ImageRef) -> EngineResult<Vec<ServiceView>> {
        let image_id = self.local_image_id(&image.reference).await?;
        let secrets = revisions::read_secrets(&self.target)?;
        let secret_names = &self.target.config().secrets;
        let scaling = self.store.scaling_events(self.target.name())?;
        Ok(revisions::revisions(&self.target, &image_id, &secrets)?
            .iter()
            .map(|revision| {
                let name = &revision.spec.name;
                // A deploy keeps a scaled count (see `keep_scaled_counts`).
                let scaled = match kept_count(name, self.target.replicas(name), &scaling) {
                    Kept::Scaled(count) => Some(count),
                    Kept::Unscaled | Kept::ConfigWins(_) => None,
                };
                plan_view::view(&revision.spec, secret_names, scaled)
            })
            .collect())
    }

    async fn status(&self) -> EngineResult<StatusReport> {
        let state =
            agent_link::environment_reviving(&self.state_dir, &self.program, self.target.name())
                .await?;
        if !self.lock_held_by_live_deploy()? {
            self.settle_unfinished(state.as_ref(), &kaapi_core::progress::Silent)?;
        }
        let containers =
            containers::replicas(&self.docker, self.app(), self.target.name(), None).await?;
        let running_ids: Vec<String> = containers
            .iter()
            .filter(|c| c.state.map(|s| s.to_string()).as_deref() == Some("running"))
            .filter_map(|c| c.id.clone())
            .collect();
        let usage = stats::usage(&self.docker, &running_ids).await;
        let releases = self.store.releases(self.target.name())?;
        let mut good = releases.iter().filter(|r| r.outcome == Outcome::Succeeded);
        let (current, previous) = (good.next().map(|r| r.number), good.next().map(|r| r.number));
        let services = self
            .target
            .config()
            .services
            .keys()
            .map(|service| {
                let replicas: Vec<ReplicaStatus> = containers
                    .iter()
                    .filter(|c| label(c, labels::SERVICE) == Some(service.as_str()))
                    .map(|c| {
                        let id = c.id.clone().unwrap_or_default();
                        let agent_view = state.as_ref().and_then(|s| {
                            s.replicas
                                .iter()
                                .chain(&s.warm)
                                .find(|r| r.container_id == id)
                        });
                        let used = usage.get(&id);
                        ReplicaStatus {
                            id: source_name(c),
                            state: agent_view
                                .map(|r| r.state.as_str().to_owned())
                                .or_else(|| c.state.map(|s| s.to_string()))
                                .unwrap_or_else(|| "unknown".to_owned()),
                            healthy: agent_view.and_then(|r| r.healthy),
                            release: label(c, labels::RELEASE).and_then(|r| r.parse().ok()),
                            cpu_percent: used.and_then(|u| u.cpu_percent),
                            memory_bytes: used.and_then(|u| u.memory_bytes),
                        }
                    })
                    .collect();
                let desired = state
                    .as_ref()
                    .and_then(|s| s.desired.get(service).copied())
                    .unwrap_or_else(|| self.target.replicas(service));
                let running = replicas.iter().filter(|r| r.state == "running").count();
                // Warm replicas are out of rotation: they run, but do not serve.
                let healthy = replicas
                    .iter()
                    .filter(|r| r.healthy == Some(true) && r.state != "warm")
                    .count();
                let events = state
                    .as_ref()
                    .map(|s| {
                        s.events
                            .iter()
                            .rev()
                            .filter(|e| e.service.as_deref().is_none_or(|name| name == service))
                            .map(|e| StatusEvent {
                                at: e.at,
                                message: e.message.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                ServiceStatus {
                    service: service.clone(),
                    desired,
                    running: u32::try_from(running).unwrap_or(u32::MAX),
                    healthy: u32::try_from(healthy).unwrap_or(u32::MAX),
                    current_release: state.as_ref().and_then(|s| s.release).or(current),
                    previous_release: state.as_ref().and_then(|s| s.previous_release).or(previous),
                    rollout: state.is_none().then(|| "agent not running".to_owned()),
                    replicas,
                    events,
                    requests: None,
                    errors_5xx: None,
                }
            })
            .collect();
        Ok(StatusReport {
            environment: self.target.name().to_owned(),
            engine: self.name().to_owned(),
            url: state.and_then(|s| s.ingress_url).or_else(|| self.url()),
            services,
        })
    }

    async fn logs(
        &self,
        query: &LogQuery,
        sink: &(dyn Fn(LogLine) + Send + Sync),
    ) -> EngineResult<()> {
        let containers = containers::replicas(
            &self.docker,
            self.app(),
            self.target.name(),
            query.service.as_deref(),
        )
        .await?;
        if containers.is_empty() {
            return Err(EngineError::not_found(format!(
                "no replica of {} runs in `{}`; deploy first with `kaapi-deploy deploy {}`",
                query.service.as_deref().unwrap_or("any service"),
                self.target.name(),
                self.target.name()
            )));
        }
        logs::logs(&self.docker, &containers, query, sink).await
    }
}

/// A Docker tag from free text: `[A-Za-z0-9_.-]`, at most 128 characters, not starting with
/// `.` or `-`.
pub fn docker_tag(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(128)
        .collect();
    match cleaned.chars().next() {
        None => "latest-build".to_owned(),
        Some('.' | '-') => format!("v{}", &cleaned[..cleaned.len().min(127)]),
        Some(_) => cleaned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_tags_are_sanitized() {
        assert_eq!(docker_tag("3f2a1c0-dirty"), "3f2a1c0-dirty");
        assert_eq!(docker_tag("feature/x y"), "feature-x-y");
        assert_eq!(docker_tag("-x"), "v-x");
        assert_eq!(docker_tag(""), "latest-build");
        assert_eq!(docker_tag(&"a".repeat(200)).len(), 128);
    }
}
