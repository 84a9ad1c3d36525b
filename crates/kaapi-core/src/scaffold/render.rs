//! The text of a generated `deploy.toml`: every choice commented, so that the file explains
//! itself.

use std::fmt::Write as _;

use super::dockerfile::{port_in_command, Cmd};
use super::variables::classify;
use super::{ProjectShape, DEFAULT_PORT, HEALTH_PATH};

/// Regions accepted from `.env.example` (`AWS_DEFAULT_REGION`, `AWS_REGION`).
const FALLBACK_REGION: &str = "us-east-1";

pub fn render(shape: &ProjectShape) -> String {
    let mut out = String::new();
    let variables = shape
        .example
        .as_ref()
        .map(|(_, vars)| classify(vars))
        .unwrap_or_default();
    let app = &shape.app;

    line(
        &mut out,
        "# deploy.toml: how kaapi-deploy builds, migrates, runs and verifies this app.",
    );
    line(
        &mut out,
        "# Written by `kaapi-deploy init`; every key is described in docs/config.md.",
    );
    line(
        &mut out,
        "# Check it with `kaapi-deploy check` (add an environment name to check just one).",
    );
    line(&mut out, "");
    line(
        &mut out,
        "# Prefix of every resource name (Kaapi's AWS_RESOURCE_PREFIX). Production uses",
    );
    line(
        &mut out,
        &format!(
            "# {app}-cluster, {app}-repo, {app}-service; environment E uses {app}-E-cluster, …"
        ),
    );
    line(&mut out, &format!("app = {}", quote(app)));
    line(&mut out, "");
    line(
        &mut out,
        "# Names of the variables whose values are secret. Their values never appear in this",
    );
    line(
        &mut out,
        "# file: each environment's `secrets_from` says where they are read from.",
    );
    if variables.secrets.is_empty() {
        line(&mut out, "secrets = []");
    } else {
        line(&mut out, "secrets = [");
        for name in &variables.secrets {
            line(&mut out, &format!("  {},", quote(name)));
        }
        line(&mut out, "]");
    }
    line(&mut out, "");

    line(
        &mut out,
        "# One image, built once per release and run by every service.",
    );
    line(&mut out, "[image]");
    line(
        &mut out,
        "# Build context, relative to this file; the Dockerfile is relative to the context.",
    );
    line(&mut out, &format!("context = {}", quote(&shape.context)));
    line(
        &mut out,
        &format!("dockerfile = {}", quote(&shape.dockerfile)),
    );
    line(&mut out, "# build_args = { PYTHON_VERSION = \"3.12\" }");
    line(
        &mut out,
        "# pre_build = \"./scripts/prepare.sh\"   # run from this directory before the build",
    );
    line(&mut out, "");

    let run_prefix = if shape.uses_uv { "uv run " } else { "" };
    if let Some(command) = shape.compose.as_ref().and_then(|c| c.migrations.as_ref()) {
        line(
            &mut out,
            "# From the profile one-off (prestart) of the compose file: runs as a one-off task of",
        );
        line(
            &mut out,
            "# the new release, before any service changes; a non-zero exit aborts the deploy.",
        );
        line(&mut out, "[migrations]");
        line(&mut out, &format!("command = {}", array(command)));
        line(&mut out, "");
    } else if shape.alembic {
        line(
            &mut out,
            "# Runs as a one-off task of the new release, before any service changes.",
        );
        line(
            &mut out,
            "# A non-zero exit aborts the deploy; nothing that serves traffic has changed then.",
        );
        line(&mut out, "[migrations]");
        line(
            &mut out,
            &format!(
                "command = {}",
                quote(&format!("{run_prefix}alembic upgrade head"))
            ),
        );
        line(&mut out, "# service = \"backend\"   # whose image and variables run it (default: the web service)");
        line(&mut out, "# timeout = \"10m\"");
        line(&mut out, "");
    }

    if let Some(compose) = &shape.compose {
        super::render_compose::services(&mut out, shape, compose);
        super::render_compose::accessories(&mut out, compose);
    } else {
        render_web_service(&mut out, shape);
    }
    if shape.celery && shape.compose.is_none() {
        let celery = format!("{run_prefix}celery -A {}", shape.celery_app);
        line(&mut out, "# The Celery worker: the same image with another command (the backend depends on celery).");
        line(&mut out, "[services.worker]");
        line(
            &mut out,
            &format!(
                "command = {}",
                quote(&format!("{celery} worker --loglevel=info"))
            ),
        );
        line(&mut out, "replicas = 1");
        line(
            &mut out,
            "stop_timeout = \"60s\"   # lets running tasks finish on a deploy",
        );
        line(&mut out, "");
        if shape.flower {
            line(
                &mut out,
                "# Celery Flower, the worker monitor. Its UI listens on 5555 inside the container;",
            );
            line(&mut out, "# it has no `port` here so that it stays a background service, not a second web one.");
            line(&mut out, "[services.flower]");
            line(
                &mut out,
                &format!(
                    "command = {}",
                    quote(&format!("{celery} flower --port=5555"))
                ),
            );
            line(&mut out, "replicas = 1");
            line(&mut out, "");
        }
    }

    if !variables.plain.is_empty() {
        line(
            &mut out,
            "# Plain (non-secret) values shared by every environment, from the example file.",
        );
        line(
            &mut out,
            "# Override them per environment under [environments.NAME.env].",
        );
        line(&mut out, "[env]");
        for (name, value) in &variables.plain {
            if shape.compose.is_some() && super::is_localhost(value) {
                line(&mut out, &format!("# {name}: `{value}` in the example is a localhost host; set it per environment"));
                continue;
            }
            line(&mut out, &format!("{name} = {}", quote(value)));
        }
        line(&mut out, "");
    }

    if let Some((file, _)) = &shape.example {
        line(&mut out, "[variables]");
        line(
            &mut out,
            "# Every variable listed here must be provided by each environment: a value in [env],",
        );
        line(
            &mut out,
            "# a secret, or `optional` below. `kaapi-deploy check` enforces it.",
        );
        line(&mut out, &format!("example = {}", quote(file)));
        line(
            &mut out,
            "# May stay unset. They are not in `secrets`, since ECS refuses to start a task whose",
        );
        line(&mut out, "# secret parameter does not exist: to use one, add it to `secrets` and store its value,");
        line(&mut out, "# or give it a value in [env].");
        if variables.optional.is_empty() {
            line(&mut out, "optional = []");
        } else {
            line(&mut out, "optional = [");
            for name in &variables.optional {
                line(&mut out, &format!("  {},", quote(name)));
            }
            line(&mut out, "]");
        }
        line(&mut out, "");
    }

    let has_secrets = !variables.secrets.is_empty();
    let region = region_of(shape);
    let sets_environment = variables.plain.contains_key("ENVIRONMENT");

    line(
        &mut out,
        "# Your machine: the local Docker Engine. The ingress answers on 127.0.0.1:ingress_port",
    );
    line(
        &mut out,
        "# and switches to a new release only once it is healthy.",
    );
    line(&mut out, "[environments.local]");
    line(&mut out, "engine = \"docker\"");
    line(&mut out, "ingress_port = 8000");
    line(
        &mut out,
        "# Secret values come from this file (keep it out of git).",
    );
    line(&mut out, "secrets_from = { env_file = \".env\" }");
    if let Some(compose) = shape.compose.as_ref().filter(|c| !c.local_env.is_empty()) {
        line(&mut out, "");
        line(
            &mut out,
            &format!(
                "# From the services' `environment` in {}: the app reaches accessories by name.",
                compose.file
            ),
        );
        line(&mut out, "[environments.local.env]");
        for (name, value) in &compose.local_env {
            line(&mut out, &format!("{name} = {}", quote(value)));
        }
    }
    line(&mut out, "");

    for (name, trigger, promote) in [
        ("staging", "{ branch = \"main\" }", None),
        ("production", "{ tags = \"v*\" }", Some("staging")),
    ] {
        if name == "staging" {
            line(
                &mut out,
                "# AWS ECS. A push to main deploys here (`kaapi-deploy ci`).",
            );
        } else {
            line(
                &mut out,
                "# AWS ECS. A pushed tag vX.Y.Z deploys here the image staging ran (no rebuild).",
            );
        }
        line(&mut out, &format!("[environments.{name}]"));
        line(&mut out, "engine = \"ecs\"");
        line(&mut out, &format!("region = {}", quote(&region)));
        line(&mut out, &format!("# url = \"https://{name}.example.org\"   # verified from outside after each deploy"));
        line(&mut out, &format!("trigger = {trigger}"));
        if let Some(source) = promote {
            line(&mut out, &format!("promote_from = {}", quote(source)));
        }
        let store = format!("/{app}/{name}/");
        if has_secrets {
            line(&mut out, "# Secret values are SSM parameters under this path (e.g. SECRET_KEY → SSM parameter");
            line(&mut out, &format!("# {store}SECRET_KEY); `secrets_manager = \"{app}/{name}/\"` uses Secrets Manager."));
            line(
                &mut out,
                &format!("secrets_from = {{ ssm = {} }}", quote(&store)),
            );
        } else {
            line(
                &mut out,
                &format!(
                    "# secrets_from = {{ ssm = {} }}   # once `secrets` lists some",
                    quote(&store)
                ),
            );
        }
        line(&mut out, "# role_arn = \"arn:aws:iam::123456789012:role/deploy\"   # assumed through GitHub OIDC");
        line(&mut out, "# rollout_timeout = \"15m\"");
        line(
            &mut out,
            "# Resource names default to the convention above; override any of them:",
        );
        let stem = crate::naming::stem(app, name);
        line(
            &mut out,
            &format!("# names = {{ cluster = \"{stem}-cluster\", repository = \"{stem}-repo\" }}"),
        );
        if sets_environment {
            line(&mut out, "");
            line(&mut out, &format!("[environments.{name}.env]"));
            line(&mut out, &format!("ENVIRONMENT = {}", quote(name)));
        }
        line(&mut out, "");
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

pub(super) fn render_web_service(out: &mut String, shape: &ProjectShape) {
    let argv = match &shape.facts.cmd {
        Some(Cmd::Exec(argv)) => argv.clone(),
        Some(Cmd::Shell(line)) => shlex::split(line).unwrap_or_default(),
        None => Vec::new(),
    };
    let (port, port_comment) = match (shape.facts.expose, port_in_command(&argv)) {
        (Some(port), _) => (port, "from EXPOSE in the Dockerfile"),
        (None, Some(port)) => (port, "from the Dockerfile's CMD"),
        (None, None) => (
            DEFAULT_PORT,
            "the Dockerfile EXPOSEs no port: set the one the server listens on",
        ),
    };
    line(
        out,
        "# The web service: receives traffic and is health-checked over HTTP.",
    );
    line(out, "[services.backend]");
    match &shape.facts.cmd {
        Some(Cmd::Exec(argv)) => {
            line(out, "# From the Dockerfile's CMD.");
            line(out, &format!("command = {}", array(argv)));
        }
        Some(Cmd::Shell(text)) if is_plain_command(text) => {
            line(
                out,
                "# From the Dockerfile's CMD (shell form, split into words).",
            );
            line(out, &format!("command = {}", quote(text)));
        }
        Some(Cmd::Shell(text)) => {
            line(
                out,
                "# From the Dockerfile's CMD (shell form, run by /bin/sh as Docker does).",
            );
            line(
                out,
                &format!(
                    "command = {}",
                    array(&["/bin/sh".to_owned(), "-c".to_owned(), text.clone()])
                ),
            );
        }
        None => line(
            out,
            "# command = \"…\"   # the Dockerfile has no CMD; without one the image's own runs",
        ),
    }
    line(out, &format!("port = {port}   # {port_comment}"));
    line(out, "replicas = 1");
    line(out, "# cpu = 512       # CPU units (1024 = one vCPU)");
    line(out, "# memory = 1024   # MiB");
    line(out, "# stop_timeout = \"30s\"");
    line(out, "");
    line(out, "[services.backend.health]");
    line(out, &format!("path = {}", quote(HEALTH_PATH)));
    line(out, "interval = \"10s\"");
    line(out, "timeout = \"5s\"");
    line(out, "retries = 3");
    line(
        out,
        "start_period = \"30s\"   # failures while the app starts do not count",
    );
    line(out, "");
}

/// Shell form without shell syntax can be split into words and run without a shell.
pub(super) fn is_plain_command(text: &str) -> bool {
    !text.contains(['$', '&', '|', ';', '<', '>', '`', '(', ')', '*', '~'])
        && shlex::split(text).is_some_and(|w| !w.is_empty())
}

fn region_of(shape: &ProjectShape) -> String {
    shape
        .example
        .as_ref()
        .and_then(|(_, vars)| {
            ["AWS_DEFAULT_REGION", "AWS_REGION"]
                .iter()
                .find_map(|k| vars.get(*k))
        })
        .filter(|r| looks_like_region(r))
        .cloned()
        .unwrap_or_else(|| FALLBACK_REGION.to_owned())
}

/// `eu-west-1`, `ap-south-1`, `us-gov-west-1`.
fn looks_like_region(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
}

pub(super) fn line(out: &mut String, text: &str) {
    let _ = writeln!(out, "{text}");
}

/// A TOML basic string.
pub(super) fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(super) fn array(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| quote(i)).collect();
    format!("[{}]", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use indexmap::IndexMap;

    use super::*;
    use crate::config::{parse, ServiceKind};
    use crate::scaffold::{parse_dockerfile, DockerfileFacts};

    const KAAPI_DOCKERFILE: &str = "FROM python:3.12\nWORKDIR /app/\nEXPOSE 80\nCMD [\"uv\", \"run\", \"uvicorn\", \"app.main:app\", \"--host\", \"0.0.0.0\", \"--port\", \"80\", \"--workers\", \"4\"]\n";

    fn kaapi_shape() -> ProjectShape {
        let example: IndexMap<String, String> = [
            ("DOMAIN", "localhost"),
            ("ENVIRONMENT", "development"),
            ("PROJECT_NAME", "Kaapi \"quoted\" \\ name"),
            ("SECRET_KEY", "changethis"),
            ("POSTGRES_PASSWORD", "postgres"),
            ("SENTRY_DSN", ""),
            ("AWS_DEFAULT_REGION", "ap-south-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        ProjectShape {
            app: "kaapi".to_owned(),
            context: "backend".to_owned(),
            dockerfile: "Dockerfile".to_owned(),
            facts: parse_dockerfile(KAAPI_DOCKERFILE),
            uses_uv: true,
            alembic: true,
            celery: true,
            flower: true,
            celery_app: "app.celery.celery_app".to_owned(),
            example: Some((".env.example".to_owned(), example)),
            compose: None,
        }
    }

    #[test]
    fn kaapi_shape_renders_a_config_that_loads_and_says_what_it_found() {
        let text = render(&kaapi_shape());
        let (config, warnings) =
            parse(Path::new("deploy.toml"), &text).expect("generated config is valid");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config.app, "kaapi");
        let backend = &config.services["backend"];
        assert_eq!(backend.kind(), ServiceKind::Web);
        assert_eq!(backend.port, Some(80));
        assert_eq!(
            backend
                .command
                .as_ref()
                .map(|c| c.argv()[..3].join(" "))
                .as_deref(),
            Some("uv run uvicorn")
        );
        assert_eq!(
            backend.health.as_ref().map(|h| h.path.as_str()),
            Some(HEALTH_PATH)
        );
        assert_eq!(config.services["worker"].kind(), ServiceKind::Worker);
        assert_eq!(
            config.services["worker"]
                .command
                .as_ref()
                .map(|c| c.argv().join(" "))
                .as_deref(),
            Some("uv run celery -A app.celery.celery_app worker --loglevel=info")
        );
        assert!(config.services.contains_key("flower"));
        assert_eq!(
            config
                .migrations
                .as_ref()
                .map(|m| m.command.to_string())
                .as_deref(),
            Some("uv run alembic upgrade head")
        );
        assert_eq!(config.secrets, ["SECRET_KEY", "POSTGRES_PASSWORD"]);
        assert_eq!(config.variables.optional, ["SENTRY_DSN"]);
        assert_eq!(config.env["PROJECT_NAME"], "Kaapi \"quoted\" \\ name");
        let staging = &config.environments["staging"];
        assert_eq!(staging.region.as_deref(), Some("ap-south-1"));
        assert_eq!(
            staging.trigger.as_ref().and_then(|t| t.branch.as_deref()),
            Some("main")
        );
        assert_eq!(
            staging.secrets_from.as_ref().and_then(|s| s.ssm.as_deref()),
            Some("/kaapi/staging/")
        );
        assert_eq!(staging.env["ENVIRONMENT"], "staging");
        let production = &config.environments["production"];
        assert_eq!(
            production.trigger.as_ref().and_then(|t| t.tags.as_deref()),
            Some("v*")
        );
        assert_eq!(production.promote_from.as_deref(), Some("staging"));
        assert_eq!(
            production
                .secrets_from
                .as_ref()
                .and_then(|s| s.ssm.as_deref()),
            Some("/kaapi/production/")
        );
        let local = &config.environments["local"];
        assert_eq!(
            local
                .secrets_from
                .as_ref()
                .and_then(|s| s.env_file.as_deref()),
            Some(".env")
        );
        assert_eq!(local.ingress_port, Some(8000));
    }

    #[test]
    fn minimal_shape_without_uv_alembic_celery_or_example_still_loads() {
        let shape = ProjectShape {
            app: "shop".to_owned(),
            context: ".".to_owned(),
            dockerfile: "Dockerfile".to_owned(),
            facts: DockerfileFacts {
                cmd: Some(Cmd::Shell("gunicorn -b 0.0.0.0:5000 app:app".to_owned())),
                expose: None,
            },
            uses_uv: false,
            alembic: false,
            celery: true,
            flower: false,
            celery_app: "app.celery.celery_app".to_owned(),
            example: None,
            compose: None,
        };
        let text = render(&shape);
        let (config, _) =
            parse(Path::new("deploy.toml"), &text).expect("generated config is valid");
        assert!(config.migrations.is_none());
        assert_eq!(config.services["backend"].port, Some(5000));
        assert!(config.services.contains_key("worker") && !config.services.contains_key("flower"));
        assert!(config.secrets.is_empty());
        assert_eq!(
            config.services["worker"]
                .command
                .as_ref()
                .map(|c| c.argv()[0].clone())
                .as_deref(),
            Some("celery")
        );
    }

    #[test]
    fn shell_syntax_runs_through_sh_and_a_missing_cmd_keeps_the_image_default() {
        let mut shape = kaapi_shape();
        shape.facts.cmd = Some(Cmd::Shell(
            "alembic upgrade head && exec uvicorn app:app".to_owned(),
        ));
        let (config, _) = parse(Path::new("deploy.toml"), &render(&shape)).expect("valid");
        let argv = config.services["backend"]
            .command
            .as_ref()
            .map(|c| c.argv().to_vec())
            .unwrap_or_default();
        assert_eq!(argv[..2], ["/bin/sh", "-c"]);
        shape.facts = DockerfileFacts::default();
        let (config, _) = parse(Path::new("deploy.toml"), &render(&shape)).expect("valid");
        assert!(config.services["backend"].command.is_none());
        assert_eq!(config.services["backend"].port, Some(DEFAULT_PORT));
    }
}
