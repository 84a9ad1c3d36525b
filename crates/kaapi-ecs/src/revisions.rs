//! Task-definition revisions: each service's new revision is derived from the live one (or the
//! family's latest, or the config when there is none), with the image pinned by digest, the
//! config's command, environment and secret references, resources, health check
//! (`health.command` and timings) and `awslogs` logging; tagged with the release's metadata.

use aws_sdk_ecs::types::{
    Compatibility, ContainerDefinition, HealthCheck, KeyValuePair, LogConfiguration, LogDriver,
    NetworkMode, PortMapping, Secret, Tag, TaskDefinition, TransportProtocol,
};
use kaapi_core::config::{Config, SecretSource, ServiceConfig, ECS_MAX_STOP_TIMEOUT_SECS};
use kaapi_core::engine::{EngineError, EngineResult};
use kaapi_core::progress::Progress;
use kaapi_core::release::{ImageRef, Release, ReleaseMeta, ServiceRevision};

use crate::error::{aws_error, engine_error};
use crate::release_tags::{self as tag_keys, tag};
use crate::retry::retry_throttled;
use crate::session::{Ctx, Described};

/// The account ID of an ARN (`arn:aws:ecs:REGION:ACCOUNT:…`).
pub fn account_of_arn(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

/// `valueFrom` of a secret: an SSM parameter ARN, a Secrets Manager ARN, or (with `json_key`)
/// the key `name` of one JSON secret (`arn:…:secret:NAME:KEY::`).
pub fn secret_value_from(
    source: &SecretSource,
    region: &str,
    account: &str,
    name: &str,
) -> Option<String> {
    if let Some(path) = &source.ssm {
        let path = if path.starts_with('/') {
            path.clone()
        } else {
            format!("/{path}")
        };
        return Some(format!(
            "arn:aws:ssm:{region}:{account}:parameter{path}{name}"
        ));
    }
    let secret = source.secrets_manager.as_ref()?;
    let arn = |secret: &str| {
        if secret.starts_with("arn:") {
            secret.to_owned()
        } else {
            format!("arn:aws:secretsmanager:{region}:{account}:secret:{secret}")
        }
    };
    Some(if source.json_key {
        // Empty version stage and id: the current version, as ECS documents the form.
        format!("{}:{name}::", arn(secret))
    } else {
        arn(&format!("{secret}{name}"))
    })
}

use kaapi_core::release::repository_of;

/// Everything a new revision needs besides the base definition.
pub struct RevisionSpec<'a> {
    pub config: &'a Config,
    pub environment: &'a str,
    pub service: &'a str,
    pub family: &'a str,
    pub log_group: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub image: &'a ImageRef,
}

fn settings<'a>(spec: &RevisionSpec<'a>) -> EngineResult<&'a ServiceConfig> {
    spec.config.services.get(spec.service).ok_or_else(|| {
        EngineError::not_found(format!("no service `{}` in the config", spec.service))
    })
}

/// The container of a definition that runs the service: the one named after it, else the first
/// essential one.
pub fn main_container_index(definition: &TaskDefinition, names: &[&str]) -> Option<usize> {
    let containers = definition.container_definitions();
    containers
        .iter()
        .position(|c| c.name().is_some_and(|n| names.contains(&n)))
        .or_else(|| containers.iter().position(|c| c.essential() != Some(false)))
        .or(if containers.is_empty() { None } else { Some(0) })
}

/// A base definition for a service that has none in AWS yet (Fargate, awsvpc).
pub fn definition_from_config(spec: &RevisionSpec<'_>) -> EngineResult<TaskDefinition> {
    let service = settings(spec)?;
    let mut container = ContainerDefinition::builder()
        .name(spec.service)
        .essential(true)
        .memory(service.memory.unwrap_or(512) as i32);
    if let Some(port) = service.port {
        container = container.port_mappings(
            PortMapping::builder()
                .container_port(i32::from(port))
                .protocol(TransportProtocol::Tcp)
                .build(),
        );
    }
    Ok(TaskDefinition::builder()
        .family(spec.family)
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu(service.cpu.unwrap_or(256).to_string())
        .memory(service.memory.unwrap_or(512).to_string())
        .container_definitions(container.build())
        .build())
}

/// The new revision: `base` with every container of the application's image on the new
/// digest (sidecars of other images kept as they are) and the service's own container
/// rewritten from the config.
pub fn derive(base: &TaskDefinition, spec: &RevisionSpec<'_>) -> EngineResult<TaskDefinition> {
    let service = settings(spec)?;
    let mut definition = base.clone();
    definition.family = Some(spec.family.to_owned());
    if let Some(cpu) = service.cpu {
        definition.cpu = Some(cpu.to_string());
    }
    if let Some(memory) = service.memory {
        definition.memory = Some(memory.to_string());
    }
    let index = main_container_index(&definition, &[spec.service]).ok_or_else(|| {
        EngineError::failed(format!(
            "task definition family `{}` has no container to run the image in",
            spec.family
        ))
    })?;
    let mut containers = definition.container_definitions.take().unwrap_or_default();
    let app_repositories = [
        repository_of(&spec.image.reference).to_owned(),
        containers[index]
            .image()
            .map(|i| repository_of(i).to_owned())
            .unwrap_or_default(),
    ];
    for container in containers.iter_mut() {
        if container
            .image()
            .is_some_and(|i| app_repositories.iter().any(|r| r == repository_of(i)))
        {
            container.image = Some(spec.image.reference.clone());
        }
    }
    // In a task of several containers the config's cpu/memory are the task's; each container
    // keeps its own share.
    let single = containers.len() == 1;
    let container = &mut containers[index];
    container.image = Some(spec.image.reference.clone());
    rewrite_main_container(container, service, spec, single)?;
    definition.container_definitions = Some(containers);
    Ok(definition)
}

fn rewrite_main_container(
    container: &mut ContainerDefinition,
    service: &ServiceConfig,
    spec: &RevisionSpec<'_>,
    single: bool,
) -> EngineResult<()> {
    container.command = service.command.as_ref().map(|c| c.argv().to_vec());
    container.environment = Some(
        spec.config
            .plain_env(spec.environment, spec.service)
            .into_iter()
            .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
            .collect(),
    );
    if let Some(source) = spec
        .config
        .environment(spec.environment)
        .and_then(|e| e.secrets_from.as_ref())
        .filter(|s| s.ssm.is_some() || s.secrets_manager.is_some())
    {
        let mut secrets = Vec::new();
        for name in &spec.config.secrets {
            let Some(value_from) = secret_value_from(source, spec.region, spec.account, name)
            else {
                continue;
            };
            secrets.push(
                Secret::builder()
                    .name(name)
                    .value_from(value_from)
                    .build()
                    .map_err(|e| EngineError::failed(format!("secret `{name}`: {e}")))?,
            );
        }
        container.secrets = Some(secrets);
    }
    if single {
        if let Some(memory) = service.memory {
            container.memory = Some(memory as i32);
        }
        if let Some(cpu) = service.cpu {
            container.cpu = cpu as i32;
        }
    }
    if service.stop_timeout.is_some() {
        container.stop_timeout = Some(
            service
                .stop_timeout()
                .as_secs()
                .min(ECS_MAX_STOP_TIMEOUT_SECS) as i32,
        );
    }
    if let Some(port) = service.port {
        add_port_mapping(container, port);
    }
    if let Some(health) = &service.health {
        // `health.command` is the container's check; without it the live command stays (images
        // FROM scratch have no curl, so only the team knows what to run) with the config's timings.
        let command = match (&health.command, container.health_check.as_ref()) {
            (Some(command), _) => Some(
                std::iter::once("CMD".to_owned())
                    .chain(command.argv().iter().cloned())
                    .collect(),
            ),
            (None, Some(live)) => Some(live.command().to_vec()),
            (None, None) => None,
        };
        if let Some(command) = command {
            container.health_check = Some(
                HealthCheck::builder()
                    .set_command(Some(command))
                    .interval(health.interval().as_secs().clamp(5, 300) as i32)
                    .timeout(health.timeout().as_secs().clamp(2, 60) as i32)
                    .retries(health.retries().clamp(1, 10) as i32)
                    .start_period(health.start_period().as_secs().min(300) as i32)
                    .build()
                    .map_err(|e| EngineError::failed(format!("health check: {e}")))?,
            );
        }
    }
    container.log_configuration = Some(awslogs(container.log_configuration.as_ref(), spec)?);
    Ok(())
}

/// A web service's port (Flower's 5555 as much as the backend's) is mapped when the live
/// definition does not map it yet.
fn add_port_mapping(container: &mut ContainerDefinition, port: u16) {
    let port = i32::from(port);
    let mappings = container.port_mappings.get_or_insert_with(Vec::new);
    if !mappings.iter().any(|m| m.container_port() == Some(port)) {
        mappings.push(
            PortMapping::builder()
                .container_port(port)
                .protocol(TransportProtocol::Tcp)
                .build(),
        );
    }
}

/// `awslogs` to the service's log group; the live stream prefix and other options are kept
/// (migrations find a task's stream from the definition itself).
fn awslogs(
    live: Option<&LogConfiguration>,
    spec: &RevisionSpec<'_>,
) -> EngineResult<LogConfiguration> {
    let mut options = live
        .filter(|l| l.log_driver() == &LogDriver::Awslogs)
        .and_then(|l| l.options().cloned())
        .unwrap_or_default();
    options.insert("awslogs-group".to_owned(), spec.log_group.to_owned());
    options.insert("awslogs-region".to_owned(), spec.region.to_owned());
    options
        .entry("awslogs-stream-prefix".to_owned())
        .or_insert_with(|| spec.service.to_owned());
    LogConfiguration::builder()
        .log_driver(LogDriver::Awslogs)
        .set_options(Some(options))
        .build()
        .map_err(|e| EngineError::failed(format!("log configuration: {e}")))
}

/// Registers `definition` with `tags`; returns the new revision.
pub async fn register(
    ctx: &Ctx,
    definition: &TaskDefinition,
    tags: Vec<Tag>,
    progress: &dyn Progress,
) -> EngineResult<Described> {
    let d = definition;
    let out = retry_throttled(&ctx.tuning, "ecs:RegisterTaskDefinition", progress, || {
        ctx.clients
            .ecs
            .register_task_definition()
            .set_family(d.family.clone())
            .set_task_role_arn(d.task_role_arn.clone())
            .set_execution_role_arn(d.execution_role_arn.clone())
            .set_network_mode(d.network_mode.clone())
            .set_container_definitions(d.container_definitions.clone())
            .set_volumes(d.volumes.clone())
            .set_placement_constraints(d.placement_constraints.clone())
            .set_requires_compatibilities(d.requires_compatibilities.clone())
            .set_cpu(d.cpu.clone())
            .set_memory(d.memory.clone())
            .set_pid_mode(d.pid_mode.clone())
            .set_ipc_mode(d.ipc_mode.clone())
            .set_proxy_configuration(d.proxy_configuration.clone())
            .set_ephemeral_storage(d.ephemeral_storage.clone())
            .set_runtime_platform(d.runtime_platform.clone())
            .set_enable_fault_injection(d.enable_fault_injection)
            .set_tags(Some(tags.clone()))
            .send()
    })
    .await
    .map_err(|e| {
        aws_error(
            &format!(
                "ecs:RegisterTaskDefinition for family {}",
                d.family().unwrap_or_default()
            ),
            e,
        )
    })?;
    let definition = out.task_definition().cloned().ok_or_else(|| {
        EngineError::failed("ecs:RegisterTaskDefinition returned no task definition")
    })?;
    let described = Described {
        definition,
        tags: if out.tags().is_empty() {
            tags
        } else {
            out.tags().to_vec()
        },
    };
    ctx.remember_task_definition(&described);
    Ok(described)
}

/// The revision a service builds on: the live service's, else the family's latest.
pub async fn base_definition(
    ctx: &Ctx,
    service: &str,
    progress: &dyn Progress,
) -> EngineResult<Option<Described>> {
    if let Some(live) = ctx.live_service(service).await? {
        if let Some(arn) = live.task_definition() {
            if let Some(described) = ctx.describe_task_definition(arn, progress).await? {
                return Ok(Some(described));
            }
        }
    }
    let family = ctx.target.family(service)?.to_owned();
    ctx.describe_task_definition(&family, progress).await
}

/// The account ID for secret ARNs: read off a known ARN, else asked of STS.
pub async fn account_id(ctx: &Ctx, known_arns: &[&str]) -> EngineResult<String> {
    if let Some(account) = known_arns.iter().find_map(|a| account_of_arn(a)) {
        return Ok(account.to_owned());
    }
    kaapi_aws::account::account_id(&ctx.clients.sts)
        .await
        .map_err(engine_error)
}

/// Release tags every revision of a release carries.
pub fn release_tags(
    number: u64,
    service: &str,
    image: &ImageRef,
    meta: &ReleaseMeta,
    rollback_of: Option<u64>,
) -> Vec<Tag> {
    let mut tags = vec![
        tag(tag_keys::RELEASE, &number.to_string()),
        tag(tag_keys::SERVICE, service),
        tag(tag_keys::COMMIT, &meta.commit),
        tag(tag_keys::DEPLOYER, &meta.author),
        tag(tag_keys::TIME, &meta.created_at.to_rfc3339()),
        tag(tag_keys::IMAGE, &image.digest),
        tag(tag_keys::OUTCOME, "in_progress"),
    ];
    if let Some(version) = &meta.version {
        tags.push(tag(tag_keys::VERSION, version));
    }
    if !image.tags.is_empty() {
        tags.push(tag(tag_keys::IMAGE_TAGS, &image.tags.join(" ")));
    }
    if let Some(of) = rollback_of {
        tags.push(tag(tag_keys::ROLLBACK_OF, &of.to_string()));
    }
    tags
}

/// `family:revision` of an ARN.
pub fn short_revision(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

pub(crate) fn revision_spec<'a>(
    ctx: &'a Ctx,
    service: &'a str,
    account: &'a str,
    image: &'a ImageRef,
) -> EngineResult<RevisionSpec<'a>> {
    let target = &ctx.target;
    Ok(RevisionSpec {
        config: target.config(),
        environment: target.environment(),
        service,
        family: target.family(service)?,
        log_group: target.log_group(service)?,
        region: ctx.region(),
        account,
        image,
    })
}

/// The new definition of a service: derived from its base, or from the config when AWS has none.
pub(crate) fn derive_or_create(
    base: Option<&Described>,
    spec: &RevisionSpec<'_>,
    progress: &dyn Progress,
) -> EngineResult<TaskDefinition> {
    let base = match base {
        Some(base) => base.definition.clone(),
        None => {
            progress.info(format!(
                "{}: no task definition `{}` in AWS yet; creating it from the config",
                spec.service, spec.family
            ));
            definition_from_config(spec)?
        }
    };
    derive(&base, spec)
}

/// A revision of `service` for a one-off task on an image no release carries yet (`migrate`):
/// the live revision with the new image. Tagged with the image but no release number, so the
/// history never counts it as a release.
pub async fn register_for_task(
    ctx: &Ctx,
    service: &str,
    image: &ImageRef,
    progress: &dyn Progress,
) -> EngineResult<Described> {
    let base = base_definition(ctx, service, progress).await?;
    let known: Vec<&str> = base.iter().map(Described::arn).collect();
    let account = account_id(ctx, &known).await?;
    let spec = revision_spec(ctx, service, &account, image)?;
    let definition = derive_or_create(base.as_ref(), &spec, progress)?;
    let tags = vec![
        tag(tag_keys::SERVICE, service),
        tag(tag_keys::IMAGE, &image.digest),
    ];
    let described = register(ctx, &definition, tags, progress).await?;
    progress.info(format!(
        "{service}: registered {} for the one-off task",
        short_revision(described.arn())
    ));
    Ok(described)
}

/// Registers one revision per service; the history service's revision is registered last and
/// names the others, so a release is whole once its history revision exists. A rollback
/// (`rollback_of`, the release to restore) registers exact copies of that release's revisions,
/// whatever deploy.toml says today; only a service the release did not have is derived.
pub async fn register_all(
    ctx: &Ctx,
    image: &ImageRef,
    meta: &ReleaseMeta,
    number: u64,
    rollback_of: Option<&Release>,
    keep: Option<(&[String], &Release)>,
    progress: &dyn Progress,
) -> EngineResult<Vec<ServiceRevision>> {
    let target = &ctx.target;
    let history = target.history_service().unwrap_or_default().to_owned();
    let services: Vec<String> = target.services().map(str::to_owned).collect();
    let ecs_names = services
        .iter()
        .map(|s| target.ecs_service_name(s).map(str::to_owned))
        .collect::<EngineResult<Vec<_>>>()?;
    ctx.describe_services(&ecs_names, progress).await?;
    crate::log_groups::ensure(ctx, progress).await?;

    let mut bases = Vec::new();
    for service in &services {
        // `deploy --service`: the others keep their current revision; the history service's is
        // copied all the same, since its new revision carries the release's record.
        let kept = keep
            .filter(|(only, _)| !only.contains(service))
            .map(|(_, current)| kept_revision(current, service))
            .transpose()?;
        bases.push(
            match (kept, rollback_of.and_then(|r| r.revision_of(service))) {
                (Some(current), _) if *service == history => {
                    Base::Copy(restored_definition(ctx, &current, progress).await?)
                }
                (Some(current), _) => Base::Keep(current),
                (None, Some(restored)) => {
                    Base::Copy(restored_definition(ctx, &restored.revision, progress).await?)
                }
                (None, None) => Base::Derive(base_definition(ctx, service, progress).await?),
            },
        );
    }
    let known: Vec<&str> = bases.iter().filter_map(Base::arn).collect();
    let account = account_id(ctx, &known).await?;

    let mut order: Vec<usize> = (0..services.len()).collect();
    order.sort_by_key(|i| services[*i] == history);
    let mut registered: Vec<Option<String>> = vec![None; services.len()];
    let mut others = Vec::new();
    let restored_number = rollback_of.map(|r| r.number);
    for i in order {
        let service = &services[i];
        let definition = match &bases[i] {
            Base::Keep(current) => {
                progress.info(format!("{service}: keeps {}", short_revision(current)));
                others.push((service.clone(), short_revision(current).to_owned()));
                registered[i] = Some(current.clone());
                continue;
            }
            Base::Copy(restored) => restored.definition.clone(),
            Base::Derive(base) => {
                let spec = revision_spec(ctx, service, &account, image)?;
                derive_or_create(base.as_ref(), &spec, progress)?
            }
        };
        let mut tags = release_tags(number, service, image, meta, restored_number);
        if *service == history {
            tags.extend(others.iter().map(|(s, r): &(String, String)| {
                tag(&format!("{}{s}", tag_keys::REVISION_PREFIX), r)
            }));
        }
        let described = register(ctx, &definition, tags, progress).await?;
        let arn = described.arn().to_owned();
        match &bases[i] {
            Base::Copy(restored) => progress.info(format!(
                "{service}: registered {}, an exact copy of {}",
                short_revision(&arn),
                short_revision(restored.arn())
            )),
            Base::Derive(_) | Base::Keep(_) => {
                progress.info(format!("{service}: registered {}", short_revision(&arn)))
            }
        }
        others.push((service.clone(), short_revision(&arn).to_owned()));
        registered[i] = Some(arn);
    }
    Ok(services
        .into_iter()
        .zip(registered)
        .filter_map(|(service, arn)| arn.map(|revision| ServiceRevision { service, revision }))
        .collect())
}

/// The revision `service` runs in `current`, which a `deploy --service` release keeps.
fn kept_revision(current: &Release, service: &str) -> EngineResult<String> {
    current
        .revision_of(service)
        .map(|r| r.revision.clone())
        .ok_or_else(|| {
            EngineError::not_found(format!(
                "release {} has no revision of `{service}`; deploy every service once \
                 (without --service)",
                current.number
            ))
        })
}

/// What a service's new revision starts from.
enum Base {
    /// The current release's revision, kept as it is (`deploy --service`, another service).
    Keep(String),
    /// A revision of the release being restored, registered again unchanged.
    Copy(Described),
    /// The live (or latest) revision, rewritten from the config; `None` when AWS has none.
    Derive(Option<Described>),
}

impl Base {
    fn arn(&self) -> Option<&str> {
        match self {
            Base::Keep(arn) => Some(arn),
            Base::Copy(d) | Base::Derive(Some(d)) => Some(d.arn()),
            Base::Derive(None) => None,
        }
    }
}

/// A revision of the release a rollback restores; ECS still describes deregistered revisions.
async fn restored_definition(
    ctx: &Ctx,
    arn: &str,
    progress: &dyn Progress,
) -> EngineResult<Described> {
    ctx.describe_task_definition(arn, progress)
        .await?
        .ok_or_else(|| {
            EngineError::not_found(format!(
                "task definition {arn} of the release to restore no longer exists; deploy that release's image again instead (`kaapi-deploy deploy ENV --image IMAGE`)"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_arns_follow_each_store() {
        let ssm = SecretSource {
            ssm: Some("/kaapi/staging/".to_owned()),
            ..SecretSource::default()
        };
        assert_eq!(
            secret_value_from(&ssm, "eu-west-1", "123456789012", "SECRET_KEY").as_deref(),
            Some("arn:aws:ssm:eu-west-1:123456789012:parameter/kaapi/staging/SECRET_KEY")
        );
        let sm = SecretSource {
            secrets_manager: Some("kaapi/staging/".to_owned()),
            ..SecretSource::default()
        };
        assert_eq!(
            secret_value_from(&sm, "eu-west-1", "123456789012", "SECRET_KEY").as_deref(),
            Some("arn:aws:secretsmanager:eu-west-1:123456789012:secret:kaapi/staging/SECRET_KEY")
        );
        let json = SecretSource {
            secrets_manager: Some("kaapi/prod".to_owned()),
            json_key: true,
            ..SecretSource::default()
        };
        assert_eq!(
            secret_value_from(&json, "eu-west-1", "123456789012", "SECRET_KEY").as_deref(),
            Some("arn:aws:secretsmanager:eu-west-1:123456789012:secret:kaapi/prod:SECRET_KEY::")
        );
        let full_arn = SecretSource {
            secrets_manager: Some(
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kaapi/prod-AbCdEf".to_owned(),
            ),
            json_key: true,
            ..SecretSource::default()
        };
        assert_eq!(
            secret_value_from(&full_arn, "eu-west-1", "123456789012", "SECRET_KEY").as_deref(),
            Some("arn:aws:secretsmanager:eu-west-1:123456789012:secret:kaapi/prod-AbCdEf:SECRET_KEY::")
        );
    }

    #[test]
    fn a_second_web_service_gets_its_port_and_stop_timeout_is_capped() {
        let config: Config = toml::from_str(
            r#"
app = "kaapi"
[image]
context = "."
[services.backend]
port = 80
[services.flower]
kind = "web"
port = 5555
stop_timeout = "10m"
[environments.production]
engine = "ecs"
region = "eu-west-1"
"#,
        )
        .expect("config");
        let image = ImageRef {
            reference: "1.dkr.ecr.eu-west-1.amazonaws.com/kaapi-repo@sha256:ab".to_owned(),
            digest: "sha256:ab".to_owned(),
            tags: Vec::new(),
        };
        let spec = RevisionSpec {
            config: &config,
            environment: "production",
            service: "flower",
            family: "kaapi-flower",
            log_group: "/ecs/kaapi-cluster/kaapi-flower-service",
            region: "eu-west-1",
            account: "1",
            image: &image,
        };
        // Flower was a portless worker: the live definition maps nothing.
        let live = TaskDefinition::builder()
            .container_definitions(
                ContainerDefinition::builder()
                    .name("flower")
                    .image("1.dkr.ecr.eu-west-1.amazonaws.com/kaapi-repo:latest")
                    .build(),
            )
            .build();
        let derived = derive(&live, &spec).expect("derive");
        let container = &derived.container_definitions()[0];
        let ports: Vec<Option<i32>> = container
            .port_mappings()
            .iter()
            .map(|m| m.container_port())
            .collect();
        assert_eq!(ports, [Some(5555)]);
        assert_eq!(container.stop_timeout(), Some(120));
        // Derived again from itself: the mapping is not repeated.
        let again = derive(&derived, &spec).expect("derive again");
        assert_eq!(again.container_definitions()[0].port_mappings().len(), 1);
    }

    #[test]
    fn arns_give_their_account_and_revision() {
        assert_eq!(
            account_of_arn("arn:aws:ecs:eu-west-1:123456789012:task-definition/f:3"),
            Some("123456789012")
        );
        assert_eq!(
            short_revision("arn:aws:ecs:r:1:task-definition/kaapi-web:7"),
            "kaapi-web:7"
        );
    }
}
