//! Live ECS services → `deploy.toml`: each service's own container (the one `derive` rewrites)
//! gives its command, port, environment, secrets, health timings and stop timeout; the task
//! gives cpu and memory; names that differ from the convention become `names` overrides. What
//! cannot be expressed is said in `notes`, never guessed.

use aws_sdk_ecs::types::{ContainerDefinition, LogDriver, TaskDefinition};
use indexmap::IndexMap;
use kaapi_core::config::{
    CommandLine, Config, EngineKind, EnvironmentConfig, HealthConfig, ImageConfig, NameOverrides,
    SecretSource, ServiceConfig, ServiceKind, VariablesConfig,
};
use kaapi_core::engine::{EngineError, EngineResult};
use kaapi_core::naming;

use crate::adopt::AdoptRequest;
use crate::revisions::main_container_index;
use kaapi_core::release::repository_of;

/// A live ECS service and the task definition it runs.
#[derive(Debug, Clone)]
pub struct LiveService {
    pub ecs_name: String,
    /// The service's desired task count (the deploy sets it from `replicas`).
    pub desired_count: i32,
    pub definition: TaskDefinition,
}

/// The config that reproduces the live services, and what the first deploy will still change.
#[derive(Debug, Clone)]
pub struct Adopted {
    pub config: Config,
    pub notes: Vec<String>,
}

/// One service as read: its config key, its own container and what it maps to.
struct Read {
    key: String,
    ecs_name: String,
    family: String,
    log_group: Option<String>,
    service: ServiceConfig,
    env: IndexMap<String, String>,
    secrets: Vec<(String, String)>,
}

impl Adopted {
    /// `deploy.toml` text: the notes as comments, then the config without empty tables.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        let mut value = toml::Value::try_from(&self.config)?;
        drop_empty(&mut value);
        let mut text = String::from(
            "# Written by `kaapi-deploy adopt` from the live ECS services; the first deploy\n# changes nothing but the image, except where a note below says otherwise.\n",
        );
        for note in &self.notes {
            text.push_str(&format!("# - {note}\n"));
        }
        text.push('\n');
        text.push_str(&toml::to_string_pretty(&value)?);
        Ok(text)
    }
}

/// Empty tables and arrays are the defaults; leaving them out keeps the file readable.
fn drop_empty(value: &mut toml::Value) {
    if let toml::Value::Table(table) = value {
        for (_, v) in table.iter_mut() {
            drop_empty(v);
        }
        table.retain(|_, v| match v {
            toml::Value::Table(t) => !t.is_empty(),
            toml::Value::Array(a) => !a.is_empty(),
            _ => true,
        });
    }
}

/// The environment an adoption writes, before its names and variables are known.
pub fn ecs_environment(region: &str) -> EnvironmentConfig {
    EnvironmentConfig {
        engine: EngineKind::Ecs,
        region: Some(region.to_owned()),
        url: None,
        trigger: None,
        promote_from: None,
        secrets_from: None,
        registry: None,
        ingress_port: None,
        ingress_ports: IndexMap::new(),
        role_arn: None,
        rollout_timeout: None,
        deregistration_delay: None,
        keep_warm: None,
        names: NameOverrides::default(),
        env: IndexMap::new(),
        replicas: IndexMap::new(),
        notifications: None,
        retention: None,
    }
}

pub fn adopted(
    request: &AdoptRequest,
    cluster: &str,
    region: &str,
    live: Vec<LiveService>,
) -> EngineResult<Adopted> {
    let stem = naming::stem(&request.app, &request.environment);
    let mut notes = Vec::new();
    let mut reads: Vec<Read> = Vec::new();
    // The service named `{stem}-service` owns the convention's web name: read it first.
    let mut live = live;
    live.sort_by_key(|l| l.ecs_name != format!("{stem}-service"));
    for service in &live {
        let read = read_service(&stem, service, &reads, &mut notes)?;
        reads.push(read);
    }
    let first = live
        .first()
        .ok_or_else(|| EngineError::not_found("no service to adopt"))?;

    let mut names = NameOverrides::default();
    let mut registry = None;
    if let Some(image) = first
        .definition
        .container_definitions()
        .get(main_index(&first.definition, &reads[0].key))
        .and_then(|c| c.image())
    {
        let repository = repository_of(image);
        match repository.split_once('/') {
            Some((host, name)) if host.contains(".dkr.ecr.") => {
                if name != format!("{stem}-repo") {
                    names.repository = Some(name.to_owned());
                }
            }
            Some((host, name)) => {
                registry = Some(host.to_owned());
                names.repository = Some(name.to_owned());
                notes.push(format!("the image lives in `{host}`, not ECR: registry = \"{host}\" is set; kaapi-deploy pushes there"));
            }
            None => notes.push(format!(
                "the image `{image}` has no registry host; set the repository by hand"
            )),
        }
    }
    if cluster != format!("{stem}-cluster") {
        names.cluster = Some(cluster.to_owned());
    }
    let role = |arn: Option<&str>, default: String| {
        arn.map(|a| a.rsplit('/').next().unwrap_or(a).to_owned())
            .filter(|name| *name != default)
    };
    names.execution_role = role(
        first.definition.execution_role_arn(),
        format!("{stem}-execution-role"),
    );
    names.task_role = role(
        first.definition.task_role_arn(),
        format!("{stem}-task-role"),
    );

    let (shared_env, secrets, secrets_from) = shared_parts(&mut reads, region, &mut notes);
    let mut config = Config {
        app: request.app.clone(),
        image: ImageConfig {
            context: ".".to_owned(),
            dockerfile: "Dockerfile".to_owned(),
            build_args: IndexMap::new(),
            pre_build: None,
            platform: None,
            secrets: IndexMap::new(),
        },
        migrations: None,
        services: reads
            .iter()
            .map(|r| (r.key.clone(), r.service.clone()))
            .collect(),
        env: IndexMap::new(),
        secrets,
        variables: VariablesConfig::default(),
        // Accessories run on the docker engine only; ECS backing services are RDS and friends.
        accessories: IndexMap::new(),
        container_logs: Default::default(),
        environments: IndexMap::new(),
        notifications: None,
        retention: None,
    };
    config.environments.insert(
        request.environment.clone(),
        EnvironmentConfig {
            secrets_from,
            registry,
            env: shared_env,
            ..ecs_environment(region)
        },
    );
    // Overrides only where the live names differ from what the convention would give.
    let convention = naming::names(&config, &request.environment);
    for read in &reads {
        let Some(derived) = convention.service(&read.key) else {
            continue;
        };
        if derived.service != read.ecs_name {
            names
                .services
                .insert(read.key.clone(), read.ecs_name.clone());
        }
        if derived.family != read.family {
            names.families.insert(read.key.clone(), read.family.clone());
        }
    }
    if let Some(env) = config.environments.get_mut(&request.environment) {
        env.names = names;
    }
    let convention = naming::names(&config, &request.environment);
    let mut log_groups = IndexMap::new();
    for read in &reads {
        match (&read.log_group, convention.service(&read.key)) {
            (Some(live), Some(derived)) if *live != derived.log_group => {
                log_groups.insert(read.key.clone(), live.clone());
            }
            (None, Some(derived)) => notes.push(format!(
                "{}: the container does not log to CloudWatch; the first deploy sends its logs to {} (awslogs)",
                read.key, derived.log_group
            )),
            _ => {}
        }
    }
    if let Some(env) = config.environments.get_mut(&request.environment) {
        env.names.log_groups = log_groups;
    }
    notes.push("[image] context is \".\": point it at the folder of the Dockerfile".to_owned());
    notes.push(migrations_note(&live, &reads));
    Ok(Adopted { config, notes })
}

/// A one-off task starts every container of its task definition: migrations belong to a
/// service whose task runs the application alone.
fn migrations_note(live: &[LiveService], reads: &[Read]) -> String {
    let single = live
        .iter()
        .zip(reads)
        .find(|(l, _)| l.definition.container_definitions().len() == 1)
        .map(|(_, r)| r.key.as_str());
    match single {
        Some(key) if live.first().is_some_and(|l| l.definition.container_definitions().len() > 1) => format!(
            "no [migrations]: add `command = \"…\"`, with `service = \"{key}\"`: a one-off task of the web service's task definition would also start its other containers"
        ),
        _ => "no [migrations]: add `command = \"…\"` if the application has migrations".to_owned(),
    }
}

fn main_index(definition: &TaskDefinition, key: &str) -> usize {
    main_container_index(definition, &[key]).unwrap_or(0)
}

/// `kaapi-worker-service` → `worker`; the bare `{stem}-service` takes its container's name.
fn service_key(stem: &str, ecs_name: &str, definition: &TaskDefinition) -> String {
    let trimmed = ecs_name
        .strip_prefix(&format!("{stem}-"))
        .unwrap_or(ecs_name);
    let trimmed = trimmed.strip_suffix("-service").unwrap_or(trimmed);
    let raw = if trimmed == "service" || trimmed.is_empty() {
        main_container_index(definition, &[])
            .and_then(|i| definition.container_definitions()[i].name())
            .unwrap_or("web")
    } else {
        trimmed
    };
    let mut key: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    if !key.starts_with(|c: char| c.is_ascii_lowercase()) {
        key.insert_str(0, "svc-");
    }
    key.truncate(32);
    key.trim_end_matches('-').to_owned()
}

fn read_service(
    stem: &str,
    live: &LiveService,
    earlier: &[Read],
    notes: &mut Vec<String>,
) -> EngineResult<Read> {
    let definition = &live.definition;
    let mut key = service_key(stem, &live.ecs_name, definition);
    if earlier.iter().any(|r| r.key == key) {
        key = format!("{key}-{}", earlier.len() + 1);
    }
    let container = main_container_index(definition, &[&key])
        .and_then(|i| definition.container_definitions().get(i))
        .ok_or_else(|| {
            EngineError::failed(format!(
                "service `{}`: its task definition has no container",
                live.ecs_name
            ))
        })?;
    let port = container
        .port_mappings()
        .first()
        .and_then(|m| m.container_port())
        .and_then(|p| u16::try_from(p).ok());
    let single = definition.container_definitions().len() == 1;
    let task_cpu = definition.cpu().and_then(|c| c.parse::<u32>().ok());
    let task_memory = definition.memory().and_then(|m| m.parse::<u32>().ok());
    // `derive` writes a single container's cpu/memory too: keep them only when they agree.
    let cpu = task_cpu.filter(|cpu| !single || container.cpu() as u32 == *cpu);
    let memory = task_memory.filter(|m| !single || container.memory() == Some(*m as i32));
    if cpu != task_cpu || memory != task_memory {
        notes.push(format!(
            "{key}: the container's cpu/memory differ from the task's; cpu and memory are left out so that they stay as they are"
        ));
    }
    let service = ServiceConfig {
        kind: Some(if port.is_some() {
            ServiceKind::Web
        } else {
            ServiceKind::Worker
        }),
        command: Some(container.command().to_vec())
            .filter(|c| !c.is_empty())
            .map(CommandLine::new),
        port,
        replicas: replicas(&key, live.desired_count, notes),
        cpu,
        memory,
        stop_timeout: container
            .stop_timeout()
            .map(|s| std::time::Duration::from_secs(s.max(0) as u64).into()),
        health: port.and_then(|_| health_of(&key, container, notes)),
        env: IndexMap::new(),
        volumes: Vec::new(),
    };
    Ok(Read {
        key,
        ecs_name: live.ecs_name.clone(),
        family: definition.family().unwrap_or_default().to_owned(),
        log_group: container
            .log_configuration()
            .filter(|l| l.log_driver() == &LogDriver::Awslogs)
            .and_then(|l| l.options())
            .and_then(|o| o.get("awslogs-group"))
            .cloned(),
        service,
        env: container
            .environment()
            .iter()
            .filter_map(|kv| {
                Some((
                    kv.name()?.to_owned(),
                    kv.value().unwrap_or_default().to_owned(),
                ))
            })
            .collect(),
        secrets: container
            .secrets()
            .iter()
            .map(|s| (s.name().to_owned(), s.value_from().to_owned()))
            .collect(),
    })
}

fn replicas(key: &str, desired: i32, notes: &mut Vec<String>) -> u32 {
    let replicas = desired.clamp(1, 100) as u32;
    if replicas as i32 != desired {
        notes.push(format!(
            "{key}: the service wants {desired} task(s); replicas = {replicas} (kaapi-deploy runs 1 to 100)"
        ));
    }
    replicas
}

/// The container's health check timings; the path is read off the command's URL.
fn health_of(
    key: &str,
    container: &ContainerDefinition,
    notes: &mut Vec<String>,
) -> Option<HealthConfig> {
    let check = container.health_check()?;
    let path = check.command().iter().find_map(|part| url_path(part));
    if path.is_none() {
        notes.push(format!(
            "{key}: no URL in the health-check command; health.path is \"/\": set the path kaapi-deploy verifies"
        ));
    }
    let seconds =
        |s: Option<i32>| Some(std::time::Duration::from_secs(s.unwrap_or(0).max(0) as u64).into());
    Some(HealthConfig {
        path: path.unwrap_or_else(|| "/".to_owned()),
        // Without `command` a deploy keeps the live check's command as it is.
        command: None,
        interval: seconds(check.interval().or(Some(30))),
        timeout: seconds(check.timeout().or(Some(5))),
        retries: Some(check.retries().unwrap_or(3).max(1) as u32),
        start_period: seconds(check.start_period()),
    })
}

/// `… http://localhost:80/api/v1/utils/health/ …` → `/api/v1/utils/health/`.
fn url_path(text: &str) -> Option<String> {
    let start = text.find("http://").or_else(|| text.find("https://"))?;
    let rest = &text[start..];
    let rest = &rest[rest.find("//")? + 2..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '|' || c == ';')
        .unwrap_or(rest.len());
    let rest = &rest[..end];
    Some(
        rest.find('/')
            .map_or("/".to_owned(), |i| rest[i..].to_owned()),
    )
}

/// Variables every service shares go to the environment; the secrets' common store becomes
/// `secrets_from`.
fn shared_parts(
    reads: &mut [Read],
    region: &str,
    notes: &mut Vec<String>,
) -> (IndexMap<String, String>, Vec<String>, Option<SecretSource>) {
    let mut shared = reads.first().map(|r| r.env.clone()).unwrap_or_default();
    shared.retain(|k, v| reads.iter().all(|r| r.env.get(k) == Some(v)));
    for read in reads.iter_mut() {
        read.service.env = read
            .env
            .iter()
            .filter(|(k, _)| !shared.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
    }
    let mut secrets: Vec<(String, String)> = Vec::new();
    for read in reads.iter() {
        for (name, value_from) in &read.secrets {
            if !secrets.iter().any(|(n, _)| n == name) {
                secrets.push((name.clone(), value_from.clone()));
            }
        }
        if read.secrets.len() != reads[0].secrets.len() {
            notes.push(format!(
                "{}: services reference different secrets; every service's container gets every secret on the first deploy",
                read.key
            ));
        }
    }
    if secrets.is_empty() {
        return (shared, Vec::new(), None);
    }
    let source = secret_source(&secrets, region);
    if source.is_none() {
        notes.push(
            "the secrets' references share no store kaapi-deploy can express (one JSON secret, one SSM path or one Secrets Manager prefix); they are left as they are and not listed in `secrets`".to_owned(),
        );
        return (shared, Vec::new(), None);
    }
    (
        shared,
        secrets.into_iter().map(|(name, _)| name).collect(),
        source,
    )
}

/// The one store every reference points into, written so that `revisions::secret_value_from`
/// gives back the same references.
fn secret_source(secrets: &[(String, String)], region: &str) -> Option<SecretSource> {
    let candidates = candidate_sources(&secrets[0].0, &secrets[0].1);
    candidates.into_iter().find(|source| {
        secrets.iter().all(|(name, value_from)| {
            let account = value_from.split(':').nth(4).unwrap_or_default();
            crate::revisions::secret_value_from(source, region, account, name).as_deref()
                == Some(value_from.as_str())
        })
    })
}

fn candidate_sources(name: &str, value_from: &str) -> Vec<SecretSource> {
    let mut out = Vec::new();
    if let Some((base, rest)) = value_from.split_once(":secret:") {
        // `NAME:KEY::` (one JSON secret) or `PREFIXNAME` (one secret per variable).
        let secret = rest.split(':').next().unwrap_or(rest);
        let suffixed = secret
            .rsplit_once('-')
            .is_some_and(|(_, s)| s.len() == 6 && s.chars().all(|c| c.is_ascii_alphanumeric()));
        // A name with AWS's random suffix only resolves as a full ARN.
        let json_name = if suffixed {
            format!("{base}:secret:{secret}")
        } else {
            secret.to_owned()
        };
        out.push(SecretSource {
            secrets_manager: Some(json_name),
            json_key: true,
            ..SecretSource::default()
        });
        if let Some(prefix) = secret.strip_suffix(name) {
            out.push(SecretSource {
                secrets_manager: Some(prefix.to_owned()),
                ..SecretSource::default()
            });
        }
    }
    if let Some((base, rest)) = value_from.split_once(":secret:") {
        // Another region or account: the full ARN of the JSON secret.
        let secret = rest.split(':').next().unwrap_or(rest);
        out.push(SecretSource {
            secrets_manager: Some(format!("{base}:secret:{secret}")),
            json_key: true,
            ..SecretSource::default()
        });
    }
    if let Some((_, parameter)) = value_from.split_once(":parameter") {
        if let Some(path) = parameter.strip_suffix(name) {
            out.push(SecretSource {
                ssm: Some(path.to_owned()),
                ..SecretSource::default()
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_paths_come_from_the_command_url() {
        assert_eq!(
            url_path("curl -f http://localhost:80/api/v1/utils/health/ || exit 1").as_deref(),
            Some("/api/v1/utils/health/")
        );
        assert_eq!(url_path("wget -q http://127.0.0.1").as_deref(), Some("/"));
        assert_eq!(url_path("pg_isready"), None);
    }

    #[test]
    fn secret_stores_are_recognised_from_their_references() {
        let json = |key: &str| {
            (
                key.to_owned(),
                format!("arn:aws:secretsmanager:eu-west-1:123456789012:secret:kaapi/prod:{key}::"),
            )
        };
        let source = secret_source(
            &[json("SECRET_KEY"), json("POSTGRES_PASSWORD")],
            "eu-west-1",
        )
        .expect("one JSON secret");
        assert_eq!(source.secrets_manager.as_deref(), Some("kaapi/prod"));
        assert!(source.json_key);

        let ssm = |key: &str| {
            (
                key.to_owned(),
                format!("arn:aws:ssm:eu-west-1:123456789012:parameter/kaapi/staging/{key}"),
            )
        };
        let source = secret_source(&[ssm("A"), ssm("B")], "eu-west-1").expect("one SSM path");
        assert_eq!(source.ssm.as_deref(), Some("/kaapi/staging/"));

        // A key named differently from its variable cannot be expressed.
        let renamed = (
            "SECRET_KEY".to_owned(),
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kaapi/prod:secret_key::"
                .to_owned(),
        );
        assert_eq!(secret_source(&[renamed], "eu-west-1"), None);
    }

    #[test]
    fn service_keys_follow_the_naming_convention() {
        let definition = TaskDefinition::builder()
            .container_definitions(
                ContainerDefinition::builder()
                    .name("backend")
                    .essential(true)
                    .build(),
            )
            .build();
        assert_eq!(
            service_key("kaapi", "kaapi-service", &definition),
            "backend"
        );
        assert_eq!(
            service_key("kaapi", "kaapi-celery-worker-service", &definition),
            "celery-worker"
        );
        assert_eq!(service_key("kaapi", "Other_Svc", &definition), "other-svc");
    }
}
