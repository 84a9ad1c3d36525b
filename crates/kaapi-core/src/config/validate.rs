//! Rules a config must follow beyond its types. Each finding names the key; the loader adds
//! the file and line.

use std::path::PathBuf;
use std::time::Duration;

use super::command::CommandLine;
use super::model::{
    AccessoryConfig, Config, EngineKind, EnvironmentConfig, MigrationsConfig, PortMapping,
    RetentionConfig, ServiceKind, MAX_KEEP_WARM,
};
use crate::diagnostics::{nearest, Diagnostic};
use crate::schema::VERSION_PLACEHOLDER;
use crate::trigger::validate_pattern;

/// Every problem in `config`, errors and warnings alike (file left empty for the caller).
pub fn validate(config: &Config) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    validate_app(config, &mut out);
    validate_services(config, &mut out);
    validate_migrations(config, &mut out);
    for (name, accessory) in &config.accessories {
        validate_accessory(config, name, accessory, &mut out);
    }
    validate_variables(config, &mut out);
    validate_container_logs(config, &mut out);
    validate_retention("retention", config.retention, &mut out);
    for (name, env) in &config.environments {
        validate_environment(config, name, env, &mut out);
        validate_retention(
            &format!("environments.{name}.retention"),
            env.retention,
            &mut out,
        );
    }
    validate_triggers_are_distinct(config, &mut out);
    if config.environments.is_empty() {
        out.push(
            err("environments", "no environment is defined")
                .with_hint("add [environments.local] with engine = \"docker\""),
        );
    }
    out
}

fn validate_container_logs(config: &Config, out: &mut Vec<Diagnostic>) {
    let logs = &config.container_logs;
    if !(1..=10_240).contains(&logs.max_size_mb) {
        out.push(
            err(
                "container_logs.max_size_mb",
                format!("{} MiB is out of range", logs.max_size_mb),
            )
            .with_hint("use 1 to 10240 (MiB per log file; the default is 10)"),
        );
    }
    if !(1..=100).contains(&logs.max_files) {
        out.push(
            err(
                "container_logs.max_files",
                format!("{} files is out of range", logs.max_files),
            )
            .with_hint("use 1 to 100 (the default is 3)"),
        );
    }
}

/// The most releases automatic pruning may be told to keep (a typo guard, not a cost bound).
const MAX_RETENTION: u32 = 1000;

/// `keep = 0` would prune the images `rollback` needs right after every deploy.
fn validate_retention(key: &str, retention: Option<RetentionConfig>, out: &mut Vec<Diagnostic>) {
    let Some(retention) = retention else {
        return;
    };
    if !(1..=MAX_RETENTION).contains(&retention.keep) {
        out.push(
            err(
                format!("{key}.keep"),
                format!("keep = {} is out of range", retention.keep),
            )
            .with_hint(format!(
                "use 1 to {MAX_RETENTION} (earlier releases kept for `rollback`), or remove the \
                 section to prune only with `kaapi-deploy prune`"
            )),
        );
    }
}

/// Two environments with the same trigger would make a ref deploy to whichever comes first.
fn validate_triggers_are_distinct(config: &Config, out: &mut Vec<Diagnostic>) {
    let mut seen: Vec<(&str, &str, &str)> = Vec::new();
    for (name, env) in &config.environments {
        let Some(trigger) = &env.trigger else {
            continue;
        };
        for (field, pattern) in [("branch", &trigger.branch), ("tags", &trigger.tags)] {
            let Some(pattern) = pattern.as_deref() else {
                continue;
            };
            if let Some((other, _, _)) = seen.iter().find(|(_, f, p)| *f == field && *p == pattern)
            {
                out.push(
                    err(
                        format!("environments.{name}.trigger.{field}"),
                        format!("{field} `{pattern}` already triggers environment `{other}`"),
                    )
                    .with_hint("give each environment its own branch or tag pattern"),
                );
            } else {
                seen.push((name, field, pattern));
            }
        }
    }
}

fn err(key: impl Into<String>, message: impl Into<String>) -> Diagnostic {
    Diagnostic::error(PathBuf::new(), message).at_key(key)
}

fn warn(key: impl Into<String>, message: impl Into<String>) -> Diagnostic {
    Diagnostic::warning(PathBuf::new(), message).at_key(key)
}

/// Names that end up in AWS resource names and Docker container names.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
}

pub fn is_valid_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

const NAME_RULE: &str =
    "use 1-32 lowercase letters, digits and hyphens, starting with a letter (e.g. `kaapi`)";

fn validate_app(config: &Config, out: &mut Vec<Diagnostic>) {
    if !is_valid_name(&config.app) {
        out.push(err("app", format!("invalid app prefix `{}`", config.app)).with_hint(NAME_RULE));
    }
    if config.image.context.trim().is_empty() {
        out.push(
            err("image.context", "the build context is empty")
                .with_hint("set it to the folder holding the Dockerfile, e.g. \"backend\""),
        );
    }
    for key in config.image.build_args.keys() {
        if !is_valid_variable_name(key) {
            out.push(err(
                format!("image.build_args.{key}"),
                format!("invalid build argument name `{key}`"),
            ));
        }
    }
    validate_build_secrets(config, out);
}

fn validate_build_secrets(config: &Config, out: &mut Vec<Diagnostic>) {
    for (id, secret) in &config.image.secrets {
        let key = format!("image.secrets.{id}");
        if !is_valid_secret_id(id) {
            out.push(
                err(&key, format!("invalid build secret id `{id}`")).with_hint(
                    "use letters, digits, `-`, `_` and `.`, as in `--mount=type=secret,id=ID`",
                ),
            );
        }
        match (&secret.env, &secret.file) {
            (Some(name), None) if !is_valid_variable_name(name) => out.push(err(
                format!("{key}.env"),
                format!("invalid variable name `{name}`"),
            )),
            (Some(_), None) | (None, Some(_)) => {}
            _ => out.push(
                err(&key, "a build secret needs exactly one of `env` or `file`")
                    .with_hint("e.g. `{ env = \"PIP_TOKEN\" }` or `{ file = \"secrets/netrc\" }`"),
            ),
        }
    }
}

fn is_valid_secret_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn validate_services(config: &Config, out: &mut Vec<Diagnostic>) {
    if config.services.is_empty() {
        out.push(
            err("services", "no service is defined")
                .with_hint("add [services.backend] with the port your web server listens on"),
        );
    }
    for (name, service) in &config.services {
        let key = format!("services.{name}");
        if !is_valid_name(name) {
            out.push(err(&key, format!("invalid service name `{name}`")).with_hint(NAME_RULE));
        }
        if service.command.as_ref().is_some_and(|c| c.is_empty()) {
            out.push(
                err(format!("{key}.command"), "the command is empty")
                    .with_hint("give the command line, or remove the key to use the image's CMD"),
            );
        }
        match (service.kind(), service.port) {
            (ServiceKind::Web, None) => out.push(
                err(format!("{key}.port"), "a web service needs a port")
                    .with_hint("set port to the port the server listens on inside the container"),
            ),
            (ServiceKind::Worker, Some(_)) => out.push(
                err(
                    format!("{key}.port"),
                    "a worker service does not take a port",
                )
                .with_hint("remove `port`, or set kind = \"web\""),
            ),
            (_, Some(0)) => out.push(
                err(format!("{key}.port"), "port 0 is out of range")
                    .with_hint("use a port between 1 and 65535"),
            ),
            _ => {}
        }
        if service.replicas == 0 || service.replicas > 100 {
            out.push(
                err(
                    format!("{key}.replicas"),
                    format!("{} replicas is out of range", service.replicas),
                )
                .with_hint("use between 1 and 100 replicas"),
            );
        }
        if let Some(cpu) = service.cpu {
            if !(128..=16384).contains(&cpu) {
                out.push(
                    err(
                        format!("{key}.cpu"),
                        format!("{cpu} CPU units is out of range"),
                    )
                    .with_hint("use CPU units between 128 and 16384 (1024 = one vCPU)"),
                );
            }
        }
        if let Some(memory) = service.memory {
            if !(6..=122_880).contains(&memory) {
                out.push(
                    err(
                        format!("{key}.memory"),
                        format!("{memory} MiB is out of range"),
                    )
                    .with_hint("give memory in MiB, e.g. 512"),
                );
            }
        }
        if let Some(health) = &service.health {
            if service.kind() == ServiceKind::Worker {
                out.push(
                    err(
                        format!("{key}.health"),
                        "a worker service has no HTTP health check",
                    )
                    .with_hint("remove [health], or give the service a port"),
                );
            }
            if !health.path.starts_with('/') {
                out.push(
                    err(
                        format!("{key}.health.path"),
                        format!("health path `{}` must start with `/`", health.path),
                    )
                    .with_hint("e.g. \"/api/v1/utils/health/\""),
                );
            }
            if health.command.as_ref().is_some_and(CommandLine::is_empty) {
                out.push(
                    err(
                        format!("{key}.health.command"),
                        "the health-check command is empty",
                    )
                    .with_hint("e.g. command = [\"/app/healthcheck\"], or remove it"),
                );
            }
            if health.timeout() >= health.interval() {
                out.push(
                    err(
                        format!("{key}.health.timeout"),
                        "the health-check timeout must be shorter than its interval",
                    )
                    .with_hint("e.g. interval = \"10s\", timeout = \"5s\""),
                );
            }
            if health.retries() == 0 || health.retries() > 10 {
                out.push(
                    err(
                        format!("{key}.health.retries"),
                        "retries must be between 1 and 10",
                    )
                    .with_hint("3 is a good default"),
                );
            }
        }
        check_variable_names(&format!("{key}.env"), service.env.keys(), out);
        for secret in &config.secrets {
            if service.env.contains_key(secret) {
                out.push(
                    err(
                        format!("{key}.env.{secret}"),
                        format!("`{secret}` is a secret; its value must not be written in env"),
                    )
                    .with_hint("remove it; each environment's secrets_from provides it"),
                );
            }
        }
        check_volumes(&key, &service.volumes, out);
    }
}

fn check_volumes(key: &str, volumes: &[String], out: &mut Vec<Diagnostic>) {
    for (index, volume) in volumes.iter().enumerate() {
        let valid = volume
            .split_once(':')
            .is_some_and(|(name, path)| is_valid_name(name) && path.starts_with('/'));
        if !valid {
            out.push(
                err(
                    format!("{key}.volumes.{index}"),
                    format!("volume `{volume}` is not NAME:/path"),
                )
                .with_hint("e.g. \"data:/app/data\" (a lowercase name, then an absolute path)"),
            );
        }
    }
}

fn validate_accessory(
    config: &Config,
    name: &str,
    accessory: &AccessoryConfig,
    out: &mut Vec<Diagnostic>,
) {
    let key = format!("accessories.{name}");
    if !is_valid_name(name) {
        out.push(err(&key, format!("invalid accessory name `{name}`")).with_hint(NAME_RULE));
    }
    if config.services.contains_key(name) {
        out.push(
            err(&key, format!("`{name}` is both a service and an accessory")).with_hint(
                "the app reaches an accessory by its name; give one of them another name",
            ),
        );
    }
    if accessory.image.trim().is_empty() {
        out.push(
            err(format!("{key}.image"), "the accessory has no image")
                .with_hint("e.g. image = \"postgres:16\""),
        );
    }
    if accessory.command.as_ref().is_some_and(|c| c.is_empty()) {
        out.push(
            err(format!("{key}.command"), "the command is empty")
                .with_hint("give the command line, or remove the key to use the image's CMD"),
        );
    }
    check_variable_names(&format!("{key}.env"), accessory.env.keys(), out);
    for (index, secret) in accessory.secrets.iter().enumerate() {
        if !config.secrets.contains(secret) {
            out.push(
                err(
                    format!("{key}.secrets.{index}"),
                    format!("`{secret}` is not one of the top-level `secrets`"),
                )
                .with_hint(
                    "add it to `secrets` so that each environment's secrets_from provides it",
                ),
            );
        }
        if accessory.env.contains_key(secret) {
            out.push(err(
                format!("{key}.env.{secret}"),
                format!("`{secret}` is a secret; its value must not be written in env"),
            ));
        }
    }
    check_volumes(&key, &accessory.volumes, out);
    let mut ports = Vec::new();
    for (index, port) in accessory.ports.iter().enumerate() {
        match PortMapping::parse(port) {
            Some(mapping) => ports.push(mapping.container),
            None => out.push(
                err(
                    format!("{key}.ports.{index}"),
                    format!("port `{port}` is not PORT or HOST_PORT:PORT"),
                )
                .with_hint("e.g. \"5432\" (a free 127.0.0.1 port) or \"15432:5432\""),
            ),
        }
    }
    if let Some(health) = &accessory.health {
        let at = format!("{key}.health");
        match (&health.command, &health.path) {
            (Some(command), None) if command.is_empty() => {
                out.push(err(format!("{at}.command"), "the health command is empty"))
            }
            (Some(_), None) => {}
            (None, Some(path)) => {
                if !path.starts_with('/') {
                    out.push(err(
                        format!("{at}.path"),
                        format!("health path `{path}` must start with `/`"),
                    ));
                }
                match health.port {
                    Some(port) if ports.contains(&port) => {}
                    _ => out.push(
                        err(
                            format!("{at}.port"),
                            "an HTTP health check needs `port`, one of the accessory's ports",
                        )
                        .with_hint("it is probed on 127.0.0.1 through that published port"),
                    ),
                }
            }
            _ => out.push(
                err(&at, "a health check names exactly one of command or path").with_hint(
                    "e.g. health = { command = \"pg_isready -U postgres\" } or { path = \"/\", port = 15672 }",
                ),
            ),
        }
        if health.retries() == 0 {
            out.push(err(format!("{at}.retries"), "retries must be at least 1"));
        }
    }
    for environment in accessory.environments.iter().flatten() {
        match config.environments.get(environment) {
            None => out.push(
                err(
                    format!("{key}.environments"),
                    format!("unknown environment `{environment}`"),
                )
                .with_hint("name environments of this file"),
            ),
            Some(env) if env.engine != EngineKind::Docker => out.push(
                warn(
                    format!("{key}.environments"),
                    format!("`{environment}` runs on {}; accessories run on the docker engine only", env.engine),
                )
                .with_hint("on ECS use managed services (RDS, ElastiCache, Amazon MQ), which `check` verifies"),
            ),
            Some(_) => {}
        }
    }
}

fn validate_migrations(config: &Config, out: &mut Vec<Diagnostic>) {
    let Some(migrations) = &config.migrations else {
        return;
    };
    if migrations.command.is_empty() {
        out.push(
            err("migrations.command", "the migrations command is empty").with_hint(
                "e.g. command = \"uv run alembic upgrade head\", or remove [migrations]",
            ),
        );
    }
    validate_schema_commands(migrations, out);
    match &migrations.service {
        Some(service) if !config.services.contains_key(service) => {
            out.push(unknown_service("migrations.service", service, config))
        }
        None if config.web_service().is_none() => out.push(
            err(
                "migrations.service",
                "no web service to run the migrations from",
            )
            .with_hint("name the service whose image and environment run the migrations"),
        ),
        _ => {}
    }
}

/// `version_command` and `downgrade_command`: the downgrade needs the version to compare, and
/// a place to put the target's version.
fn validate_schema_commands(migrations: &MigrationsConfig, out: &mut Vec<Diagnostic>) {
    if migrations
        .version_command
        .as_ref()
        .is_some_and(CommandLine::is_empty)
    {
        out.push(
            err("migrations.version_command", "the version command is empty")
                .with_hint("e.g. version_command = \"uv run alembic current\", or remove it"),
        );
    }
    let Some(downgrade) = &migrations.downgrade_command else {
        return;
    };
    if migrations.version_command.is_none() {
        out.push(
            err(
                "migrations.downgrade_command",
                "a downgrade command needs a version command to know when to run",
            )
            .with_hint("add version_command = \"uv run alembic current\" to [migrations]"),
        );
    }
    if !downgrade
        .argv()
        .iter()
        .any(|a| a.contains(VERSION_PLACEHOLDER))
    {
        out.push(
            err(
                "migrations.downgrade_command",
                format!("`{downgrade}` does not contain {VERSION_PLACEHOLDER}"),
            )
            .with_hint(
                "write where the target version goes, e.g. \"uv run alembic downgrade {version}\"",
            ),
        );
    }
}

fn unknown_service(key: &str, name: &str, config: &Config) -> Diagnostic {
    let hint = match nearest(name, config.services.keys().map(String::as_str)) {
        Some(best) => format!("did you mean `{best}`?"),
        None => format!(
            "known services: {}",
            config
                .services
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    err(key, format!("unknown service `{name}`")).with_hint(hint)
}

fn check_variable_names<'a>(
    key: &str,
    names: impl Iterator<Item = &'a String>,
    out: &mut Vec<Diagnostic>,
) {
    for name in names {
        if !is_valid_variable_name(name) {
            out.push(
                err(
                    format!("{key}.{name}"),
                    format!("invalid variable name `{name}`"),
                )
                .with_hint("use letters, digits and underscores, not starting with a digit"),
            );
        }
    }
}

fn validate_variables(config: &Config, out: &mut Vec<Diagnostic>) {
    check_variable_names("env", config.env.keys(), out);
    let mut seen = std::collections::HashSet::new();
    for (index, name) in config.secrets.iter().enumerate() {
        if !is_valid_variable_name(name) {
            out.push(err(
                format!("secrets.{index}"),
                format!("invalid secret name `{name}`"),
            ));
        }
        if !seen.insert(name) {
            out.push(err("secrets", format!("secret `{name}` is listed twice")));
        }
        if config.env.contains_key(name) {
            out.push(
                err(
                    format!("env.{name}"),
                    format!("`{name}` is a secret; its value must not be written in env"),
                )
                .with_hint("remove it from [env]; each environment's secrets_from provides it"),
            );
        }
    }
}

fn validate_environment(
    config: &Config,
    name: &str,
    env: &EnvironmentConfig,
    out: &mut Vec<Diagnostic>,
) {
    let key = format!("environments.{name}");
    if !is_valid_name(name) {
        out.push(err(&key, format!("invalid environment name `{name}`")).with_hint(NAME_RULE));
    }
    if env.engine == EngineKind::Ecs && env.region.is_none() {
        out.push(
            err(format!("{key}.region"), "an ecs environment needs a region")
                .with_hint("e.g. region = \"eu-west-1\""),
        );
    }
    if let Some(url) = &env.url {
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
            out.push(
                err(
                    format!("{key}.url"),
                    format!("`{url}` is not an http(s) URL"),
                )
                .with_hint("e.g. url = \"https://staging.example.org\""),
            );
        }
    }
    if let Some(trigger) = &env.trigger {
        match (&trigger.branch, &trigger.tags) {
            (Some(_), Some(_)) | (None, None) => out.push(
                err(
                    format!("{key}.trigger"),
                    "a trigger names exactly one of branch or tags",
                )
                .with_hint("e.g. trigger = { branch = \"main\" } or trigger = { tags = \"v*\" }"),
            ),
            (Some(pattern), None) | (None, Some(pattern)) => {
                let field = if trigger.branch.is_some() {
                    "branch"
                } else {
                    "tags"
                };
                if let Err(reason) = validate_pattern(pattern) {
                    out.push(err(format!("{key}.trigger.{field}"), reason).with_hint(
                        "use a ref name with at most `*` wildcards, e.g. \"main\" or \"v*\"",
                    ));
                }
            }
        }
    }
    if let Some(source) = &env.promote_from {
        if source == name {
            out.push(err(
                format!("{key}.promote_from"),
                "an environment cannot promote from itself",
            ));
        } else if let Some(source_env) = config.environments.get(source) {
            if source_env.engine != env.engine {
                out.push(
                    err(
                        format!("{key}.promote_from"),
                        format!(
                            "`{name}` ({}) cannot promote from `{source}` ({}): the image lives in the other engine's registry",
                            env.engine, source_env.engine
                        ),
                    )
                    .with_hint("promote between environments of the same engine, or remove promote_from to rebuild"),
                );
            }
        } else {
            let hint = nearest(source, config.environments.keys().map(String::as_str))
                .map(|b| format!("did you mean `{b}`?"))
                .unwrap_or_else(|| "name another environment of this file".to_owned());
            out.push(
                err(
                    format!("{key}.promote_from"),
                    format!("unknown environment `{source}`"),
                )
                .with_hint(hint),
            );
        }
    }
    validate_secret_source(config, name, env, out);
    if env.ingress_port.is_some() && env.engine != EngineKind::Docker {
        out.push(
            err(
                format!("{key}.ingress_port"),
                "ingress_port is for the docker engine only",
            )
            .with_hint("on ECS the load balancer serves traffic; remove it"),
        );
    }
    if let Some(keep_warm) = env.keep_warm.map(Duration::from) {
        if env.engine != EngineKind::Docker {
            out.push(
                err(
                    format!("{key}.keep_warm"),
                    "keep_warm is for the docker engine only",
                )
                .with_hint("ECS replaces tasks itself; remove it"),
            );
        } else if keep_warm > MAX_KEEP_WARM {
            out.push(
                err(
                    format!("{key}.keep_warm"),
                    format!(
                        "{} is longer than the maximum of 24h",
                        humantime::format_duration(keep_warm)
                    ),
                )
                .with_hint("warm replicas hold their memory all that time; use e.g. \"5m\", or \"0s\" to turn it off"),
            );
        }
    }
    if env.ingress_port == Some(0) {
        out.push(err(format!("{key}.ingress_port"), "port 0 is out of range"));
    }
    validate_ingress_ports(config, &key, env, out);
    for service in env.replicas.keys() {
        if !config.services.contains_key(service) {
            out.push(unknown_service(
                &format!("{key}.replicas.{service}"),
                service,
                config,
            ));
        }
    }
    for (service, count) in &env.replicas {
        if *count == 0 || *count > 100 {
            out.push(
                err(
                    format!("{key}.replicas.{service}"),
                    format!("{count} replicas is out of range"),
                )
                .with_hint("use between 1 and 100 replicas"),
            );
        }
    }
    for (field, map) in [
        ("services", &env.names.services),
        ("families", &env.names.families),
        ("log_groups", &env.names.log_groups),
    ] {
        for (service, value) in map {
            let at = format!("{key}.names.{field}.{service}");
            if !config.services.contains_key(service) {
                out.push(unknown_service(&at, service, config));
            }
            if !is_valid_resource_name(value) {
                out.push(invalid_resource_name(&at, value));
            }
        }
    }
    for (field, value) in [
        ("cluster", &env.names.cluster),
        ("repository", &env.names.repository),
    ] {
        if let Some(value) = value {
            if !is_valid_resource_name(value) {
                out.push(invalid_resource_name(
                    &format!("{key}.names.{field}"),
                    value,
                ));
            }
        }
    }
    let names = crate::naming::names(config, name);
    let mut taken: Vec<(&str, &str)> = Vec::new();
    for (service, names) in &names.services {
        if let Some((other, _)) = taken.iter().find(|(_, s)| *s == names.service) {
            out.push(
                err(
                    format!("{key}.names.services"),
                    format!(
                        "services `{other}` and `{service}` would both be named `{}`",
                        names.service
                    ),
                )
                .with_hint("give each service its own name"),
            );
        }
        taken.push((service, &names.service));
    }
    if env.engine == EngineKind::Ecs {
        validate_ecs_stop_timeouts(config, name, out);
    }
    check_variable_names(&format!("{key}.env"), env.env.keys(), out);
    for secret in &config.secrets {
        if env.env.contains_key(secret) {
            out.push(
                err(
                    format!("{key}.env.{secret}"),
                    format!("`{secret}` is a secret; its value must not be written in env"),
                )
                .with_hint("remove it; secrets_from provides it"),
            );
        }
    }
}

/// `ingress_ports`: docker only, each naming a web service other than the first (which uses
/// `ingress_port`), each port its own.
fn validate_ingress_ports(
    config: &Config,
    key: &str,
    env: &EnvironmentConfig,
    out: &mut Vec<Diagnostic>,
) {
    if !env.ingress_ports.is_empty() && env.engine != EngineKind::Docker {
        out.push(
            err(
                format!("{key}.ingress_ports"),
                "ingress_ports is for the docker engine only",
            )
            .with_hint("on ECS the load balancer serves traffic; remove it"),
        );
        return;
    }
    let first_web = config.web_service().map(|(name, _)| name);
    let mut taken: Vec<u16> = env.ingress_port.into_iter().collect();
    for (service, port) in &env.ingress_ports {
        let field = format!("{key}.ingress_ports.{service}");
        match config.services.get(service) {
            None => out.push(unknown_service(&field, service, config)),
            Some(settings) if settings.port.is_none() => out.push(
                err(&field, format!("service `{service}` has no port to serve"))
                    .with_hint(format!("set services.{service}.port, or remove it here")),
            ),
            Some(_) if Some(service.as_str()) == first_web => out.push(
                err(
                    &field,
                    format!("`{service}` is the web service: its ingress is ingress_port"),
                )
                .with_hint(format!("set {key}.ingress_port instead")),
            ),
            Some(_) => {}
        }
        if *port == 0 {
            out.push(err(&field, "port 0 is out of range"));
        } else if taken.contains(port) {
            out.push(
                err(&field, format!("port {port} is already another ingress's"))
                    .with_hint("give each web service its own port"),
            );
        }
        taken.push(*port);
    }
}

/// ECS's maximum `stopTimeout`; the task definition never gets more.
pub const ECS_MAX_STOP_TIMEOUT_SECS: u64 = 120;

/// A longer stop_timeout is cut to ECS's maximum on that environment: say so, since a Celery
/// task longer than that is killed mid-way.
fn validate_ecs_stop_timeouts(config: &Config, environment: &str, out: &mut Vec<Diagnostic>) {
    for (service, settings) in &config.services {
        let seconds = settings.stop_timeout().as_secs();
        if settings.stop_timeout.is_some() && seconds > ECS_MAX_STOP_TIMEOUT_SECS {
            out.push(
                warn(
                    format!("services.{service}.stop_timeout"),
                    format!(
                        "stop_timeout of {seconds}s exceeds ECS's maximum of {ECS_MAX_STOP_TIMEOUT_SECS}s; environment `{environment}` (ecs) uses {ECS_MAX_STOP_TIMEOUT_SECS}s"
                    ),
                )
                .with_hint("keep stop_timeout at 120s or less, or make long tasks resumable (e.g. Celery's acks_late)"),
            );
        }
    }
}

/// ECS and ECR names: letters, digits, `-`, `_`, `/` (repositories), `.`, at most 255.
fn is_valid_resource_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/' | '.'))
}

fn invalid_resource_name(key: &str, value: &str) -> Diagnostic {
    err(key, format!("`{value}` is not a valid resource name"))
        .with_hint("use letters, digits, hyphens and underscores (at most 255)")
}

fn validate_secret_source(
    config: &Config,
    name: &str,
    env: &EnvironmentConfig,
    out: &mut Vec<Diagnostic>,
) {
    let key = format!("environments.{name}.secrets_from");
    let Some(source) = &env.secrets_from else {
        if !config.secrets.is_empty() {
            let hint = match env.engine {
                EngineKind::Docker => "e.g. secrets_from = { env_file = \".env\" }",
                EngineKind::Ecs => "e.g. secrets_from = { ssm = \"/kaapi/staging/\" }",
            };
            out.push(
                err(
                    &key,
                    "secrets are declared but this environment does not say where they come from",
                )
                .with_hint(hint),
            );
        }
        return;
    };
    let count = [
        source.ssm.is_some(),
        source.secrets_manager.is_some(),
        source.env_file.is_some(),
    ]
    .iter()
    .filter(|set| **set)
    .count();
    if count != 1 {
        out.push(
            err(
                &key,
                "secrets_from names exactly one of ssm, secrets_manager or env_file",
            )
            .with_hint("e.g. secrets_from = { ssm = \"/kaapi/staging/\" }"),
        );
        return;
    }
    if source.json_key && source.secrets_manager.is_none() {
        out.push(
            err(
                format!("{key}.json_key"),
                "json_key reads keys of one Secrets Manager secret; secrets_manager is not set",
            )
            .with_hint("e.g. secrets_from = { secrets_manager = \"kaapi/prod\", json_key = true }"),
        );
    }
    match env.engine {
        EngineKind::Docker if source.env_file.is_none() => out.push(
            err(&key, "the docker engine reads secrets from a local env file")
                .with_hint("use secrets_from = { env_file = \".env\" }"),
        ),
        EngineKind::Ecs if source.env_file.is_some() => out.push(
            err(&key, "an ecs environment cannot read a local env file")
                .with_hint("store the values in SSM with `kaapi-deploy secrets push` and use secrets_from = { ssm = \"/app/env/\" }"),
        ),
        _ => {}
    }
    if let Some(path) = &source.ssm {
        if !path.starts_with('/') {
            out.push(
                err(
                    format!("{key}.ssm"),
                    format!("SSM path `{path}` must start with `/`"),
                )
                .with_hint("e.g. \"/kaapi/staging/\""),
            );
        }
    }
    if env.engine == EngineKind::Ecs && config.secrets.is_empty() {
        out.push(warn(
            &key,
            "secrets_from is set but no secrets are declared",
        ));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{parse, ConfigError};

    fn with_image(image: &str) -> Result<(), String> {
        let text = format!(
            "app = \"kaapi\"\n[image]\ncontext = \".\"\n{image}\n[services.web]\nport = 80\n[environments.local]\nengine = \"docker\"\n"
        );
        match parse(Path::new("deploy.toml"), &text) {
            Ok(_) => Ok(()),
            Err(ConfigError::Invalid { diagnostics, .. }) => Err(format!("{diagnostics:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    fn with_migrations(keys: &str) -> Result<(), String> {
        let text = format!(
            "app = \"kaapi\"\n[image]\ncontext = \".\"\n[migrations]\ncommand = \"alembic upgrade head\"\n{keys}\n[services.web]\nport = 80\n[environments.local]\nengine = \"docker\"\n"
        );
        match parse(Path::new("deploy.toml"), &text) {
            Ok(_) => Ok(()),
            Err(ConfigError::Invalid { diagnostics, .. }) => Err(format!("{diagnostics:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn schema_commands_need_a_version_command_and_a_version_placeholder() {
        assert_eq!(
            with_migrations("version_command = \"alembic current\"\ndowngrade_command = \"alembic downgrade {version}\""),
            Ok(())
        );
        let alone = with_migrations("downgrade_command = \"alembic downgrade {version}\"")
            .expect_err("no version command");
        assert!(
            alone.contains("migrations.downgrade_command") && alone.contains("version_command"),
            "{alone}"
        );
        let no_placeholder = with_migrations(
            "version_command = \"alembic current\"\ndowngrade_command = \"alembic downgrade -1\"",
        )
        .expect_err("no placeholder");
        assert!(no_placeholder.contains("{version}"), "{no_placeholder}");
        let empty = with_migrations("version_command = \"\"").expect_err("empty");
        assert!(empty.contains("migrations.version_command"), "{empty}");
    }

    #[test]
    fn a_build_secret_names_exactly_one_source() {
        assert_eq!(
            with_image("platform = \"linux/amd64\"\nsecrets = { tok = { env = \"TOKEN\" }, netrc = { file = \"n\" } }"),
            Ok(())
        );
        let both = with_image("secrets = { tok = { env = \"TOKEN\", file = \"n\" } }")
            .expect_err("both sources");
        assert!(
            both.contains("image.secrets.tok") && both.contains("exactly one"),
            "{both}"
        );
        let neither = with_image("secrets = { tok = {} }").expect_err("no source");
        assert!(neither.contains("exactly one"), "{neither}");
        let bad_id = with_image("secrets = { \"a b\" = { env = \"T\" } }").expect_err("bad id");
        assert!(bad_id.contains("invalid build secret id"), "{bad_id}");
    }

    #[test]
    fn keep_warm_defaults_to_five_minutes_turns_off_with_zero_and_is_bounded() {
        let load = |line: &str, engine: &str| {
            let text = format!(
                "app = \"kaapi\"\n[image]\ncontext = \".\"\n[services.web]\nport = 80\n[environments.local]\nengine = \"{engine}\"\n{line}\n"
            );
            match parse(Path::new("deploy.toml"), &text) {
                Ok((config, _)) => Ok(config.environments["local"].keep_warm()),
                Err(ConfigError::Invalid { diagnostics, .. }) => Err(format!("{diagnostics:?}")),
                Err(e) => Err(e.to_string()),
            }
        };
        let minutes = |m: u64| std::time::Duration::from_secs(m * 60);
        assert_eq!(load("", "docker"), Ok(minutes(5)));
        assert_eq!(load("keep_warm = \"2m\"", "docker"), Ok(minutes(2)));
        assert_eq!(load("keep_warm = \"0s\"", "docker"), Ok(minutes(0)));
        let long = load("keep_warm = \"2days\"", "docker").expect_err("over the maximum");
        assert!(long.contains("keep_warm") && long.contains("24h"), "{long}");
        let ecs =
            load("keep_warm = \"1m\"\nregion = \"eu-west-1\"", "ecs").expect_err("docker only");
        assert!(ecs.contains("docker engine only"), "{ecs}");
        let typo = load("keep_warm = \"five minutes\"", "docker").expect_err("not a duration");
        assert!(typo.contains("keep_warm"), "{typo}");
    }

    #[test]
    fn retention_is_shared_overridden_per_environment_and_bounded() {
        let load = |text: &str| {
            let text = format!(
                "app = \"kaapi\"\n[image]\ncontext = \".\"\n[services.web]\nport = 80\n{text}"
            );
            match parse(Path::new("deploy.toml"), &text) {
                Ok((config, _)) => Ok((config.retention("local"), config.retention("prod"))),
                Err(ConfigError::Invalid { diagnostics, .. }) => Err(format!("{diagnostics:?}")),
                Err(e) => Err(e.to_string()),
            }
        };
        let envs =
            "[environments.local]\nengine = \"docker\"\n[environments.prod]\nengine = \"docker\"\n";
        assert_eq!(load(envs), Ok((None, None)));
        assert_eq!(
            load(&format!(
                "[retention]\nkeep = 3\n{envs}retention = {{ keep = 10 }}\n"
            )),
            Ok((Some(3), Some(10)))
        );
        let zero = load(&format!("[retention]\nkeep = 0\n{envs}")).expect_err("keep 0");
        assert!(
            zero.contains("retention.keep") && zero.contains("keep = 0 is out of range"),
            "{zero}"
        );
        let env_zero =
            load(&format!("{envs}retention = {{ keep = 0 }}\n")).expect_err("env keep 0");
        assert!(
            env_zero.contains("environments.prod.retention.keep"),
            "{env_zero}"
        );
        let typo = load(&format!("[retention]\nkeeep = 3\n{envs}")).expect_err("unknown key");
        assert!(typo.contains("keeep"), "{typo}");
    }

    fn with_accessory(accessory: &str) -> Result<crate::config::Config, String> {
        let text = format!(
            "app = \"kaapi\"\nsecrets = [\"POSTGRES_PASSWORD\"]\n[image]\ncontext = \".\"\n[services.web]\nport = 80\n{accessory}\n[environments.local]\nengine = \"docker\"\nsecrets_from = {{ env_file = \".env\" }}\n"
        );
        match parse(Path::new("deploy.toml"), &text) {
            Ok((config, _)) => Ok(config),
            Err(ConfigError::Invalid { diagnostics, .. }) => Err(diagnostics
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn an_accessory_loads_with_its_ports_volumes_secrets_and_health() {
        let config = with_accessory(
            "[accessories.db]\nimage = \"postgres:16\"\nsecrets = [\"POSTGRES_PASSWORD\"]\nvolumes = [\"pgdata:/var/lib/postgresql/data\"]\nports = [\"5432\", \"15433:5433\"]\nhealth = { command = \"pg_isready -U postgres\", retries = 5 }\n",
        )
        .expect("valid accessory");
        assert_eq!(config.accessories_of("local").len(), 1);
        let db = &config.accessories["db"];
        assert_eq!(
            db.health
                .as_ref()
                .and_then(|h| h.command.as_ref())
                .map(|c| c.argv().to_vec()),
            Some(vec![
                "pg_isready".to_owned(),
                "-U".to_owned(),
                "postgres".to_owned()
            ])
        );
        assert_eq!(
            crate::config::PortMapping::parse(&db.ports[1]),
            Some(crate::config::PortMapping {
                host: Some(15433),
                container: 5433
            })
        );
    }

    fn findings(text: &str) -> Vec<String> {
        let config: crate::config::Config = toml::from_str(text).expect("the test config parses");
        super::validate(&config)
            .iter()
            .map(|d| {
                format!(
                    "{:?} {} {}",
                    d.severity,
                    d.key.clone().unwrap_or_default(),
                    d.message
                )
            })
            .collect()
    }

    const ECS_BASE: &str = "app = \"kaapi\"\n[image]\ncontext = \".\"\n[services.web]\nport = 80\n[services.worker]\nstop_timeout = \"10m\"\n";

    #[test]
    fn a_stop_timeout_above_ecs_maximum_is_flagged_on_ecs_environments_only() {
        let docker = findings(&format!(
            "{ECS_BASE}[environments.local]\nengine = \"docker\"\n"
        ));
        assert!(
            !docker.iter().any(|f| f.contains("stop_timeout")),
            "{docker:?}"
        );
        let ecs = findings(&format!(
            "{ECS_BASE}[environments.production]\nengine = \"ecs\"\nregion = \"eu-west-1\"\n"
        ));
        let flagged: Vec<&String> = ecs.iter().filter(|f| f.contains("stop_timeout")).collect();
        assert_eq!(flagged.len(), 1, "{ecs:?}");
        assert!(
            flagged[0].starts_with("Warning services.worker.stop_timeout")
                && flagged[0].contains("600s exceeds ECS's maximum of 120s"),
            "{flagged:?}"
        );
    }

    #[test]
    fn ingress_ports_name_other_web_services_each_on_its_own_port() {
        let base = "app = \"kaapi\"\n[image]\ncontext = \".\"\n[services.web]\nport = 80\n[services.flower]\nport = 5555\n[services.worker]\ncommand = \"w\"\n";
        let ok = findings(&format!(
            "{base}[environments.local]\nengine = \"docker\"\ningress_port = 8000\ningress_ports = {{ flower = 5555 }}\n"
        ));
        assert!(!ok.iter().any(|f| f.contains("ingress_ports")), "{ok:?}");
        for (ports, key, message) in [
            ("{ flowr = 5555 }", "ingress_ports.flowr", "flowr"),
            ("{ worker = 5555 }", "ingress_ports.worker", "has no port"),
            ("{ web = 5555 }", "ingress_ports.web", "is the web service"),
            (
                "{ flower = 8000 }",
                "ingress_ports.flower",
                "already another ingress's",
            ),
        ] {
            let found = findings(&format!(
                "{base}[environments.local]\nengine = \"docker\"\ningress_port = 8000\ningress_ports = {ports}\n"
            ));
            assert!(
                found.iter().any(
                    |f| f.starts_with(&format!("Error environments.local.{key}"))
                        && f.contains(message)
                ),
                "{ports}: {found:?}"
            );
        }
        let ecs = findings(&format!(
            "{base}[environments.staging]\nengine = \"ecs\"\nregion = \"eu-west-1\"\ningress_ports = {{ flower = 5555 }}\n"
        ));
        assert!(
            ecs.iter()
                .any(|f| f.contains("ingress_ports is for the docker engine only")),
            "{ecs:?}"
        );
    }

    #[test]
    fn accessory_mistakes_name_the_key() {
        let cases = [
            ("[accessories.db]\nimage = \"\"\n", "accessories.db.image"),
            (
                "[accessories.db]\nimage = \"p\"\nports = [\"x:1\"]\n",
                "accessories.db.ports.0",
            ),
            (
                "[accessories.db]\nimage = \"p\"\nvolumes = [\"data\"]\n",
                "accessories.db.volumes.0",
            ),
            (
                "[accessories.db]\nimage = \"p\"\nsecrets = [\"OTHER\"]\n",
                "accessories.db.secrets.0",
            ),
            (
                "[accessories.db]\nimage = \"p\"\nhealth = { path = \"/\" }\n",
                "accessories.db.health.port",
            ),
            (
                "[accessories.db]\nimage = \"p\"\nhealth = { path = \"/\", command = \"x\" }\n",
                "exactly one of command or path",
            ),
            (
                "[accessories.web]\nimage = \"p\"\n",
                "both a service and an accessory",
            ),
            (
                "[accessories.db]\nimage = \"p\"\nenvironments = [\"nope\"]\n",
                "unknown environment `nope`",
            ),
            (
                "[accessories.db]\nimage = \"p\"\nimgae = \"q\"\n",
                "did you mean `image`",
            ),
        ];
        for (text, expected) in cases {
            let error = with_accessory(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
            assert!(
                error.contains("deploy.toml:"),
                "names file and line: {error}"
            );
        }
    }

    #[test]
    fn json_key_needs_a_secrets_manager_secret() {
        let text = |source: &str| {
            format!("app = \"kaapi\"\nsecrets = [\"SECRET_KEY\"]\n[image]\ncontext = \".\"\n[services.web]\nport = 80\n[environments.production]\nengine = \"ecs\"\nregion = \"eu-west-1\"\nsecrets_from = {source}\n")
        };
        let good = findings(&text(
            "{ secrets_manager = \"kaapi/prod\", json_key = true }",
        ));
        assert!(good.is_empty(), "{good:?}");
        let bad = findings(&text("{ ssm = \"/kaapi/\", json_key = true }"));
        assert!(
            bad.iter().any(|f| f.contains("secrets_from.json_key")),
            "{bad:?}"
        );
    }

    fn with_health(health: &str) -> Result<crate::config::Config, String> {
        let text = format!(
            "app = \"kaapi\"\n[image]\ncontext = \".\"\n[services.web]\nport = 80\n[services.web.health]\npath = \"/health\"\n{health}\n[environments.local]\nengine = \"docker\"\n"
        );
        match parse(Path::new("deploy.toml"), &text) {
            Ok((config, _)) => Ok(config),
            Err(ConfigError::Invalid { diagnostics, .. }) => Err(format!("{diagnostics:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn a_health_command_is_a_non_empty_command_line() {
        let config = with_health("command = \"/app/healthcheck --quick\"").expect("valid");
        let command = config.services["web"]
            .health
            .as_ref()
            .and_then(|h| h.command.as_ref())
            .map(|c| c.argv().to_vec());
        assert_eq!(
            command,
            Some(vec!["/app/healthcheck".to_owned(), "--quick".to_owned()])
        );
        let empty = with_health("command = []").expect_err("empty");
        assert!(
            empty.contains("web.health.command") && empty.contains("empty"),
            "{empty}"
        );
    }
}
