//! The `deploy.toml` sections `init` writes from an adopted compose file: its services (web
//! first) and its accessories.

use super::compose::{ComposeHealth, ComposeShape};
use super::render::{array, line, quote, render_web_service};
use super::{ProjectShape, HEALTH_PATH};

pub fn services(out: &mut String, shape: &ProjectShape, compose: &ComposeShape) {
    if compose.web().is_none() {
        line(
            out,
            &format!(
                "# {} has no service that publishes a port with a health check;",
                compose.file
            ),
        );
        line(out, "# the web service below comes from the Dockerfile.");
        render_web_service(out, shape);
    }
    for service in &compose.services {
        let key = format!("services.{}", service.name);
        match service.port {
            Some(_) => line(out, &format!("# The web service (from `{}` in {}): receives traffic, health-checked over HTTP.", service.name, compose.file)),
            None => line(out, &format!("# From `{}` in {}: runs in the background.", service.name, compose.file)),
        }
        line(out, &format!("[{key}]"));
        match &service.command {
            Some(argv) => line(out, &format!("command = {}", array(argv))),
            None => line(out, "# no command: the image's CMD runs"),
        }
        if let Some(port) = service.port {
            line(out, &format!("port = {port}"));
        }
        line(out, "replicas = 1");
        if !service.volumes.is_empty() {
            line(out, &format!("volumes = {}", array(&service.volumes)));
        }
        if service.port.is_some() {
            write_web_health(out, &key, service.health.as_ref());
        }
        line(out, "");
    }
}

fn write_web_health(out: &mut String, key: &str, health: Option<&ComposeHealth>) {
    let default = ComposeHealth::default();
    let health = health.unwrap_or(&default);
    line(out, "");
    line(out, &format!("[{key}.health]"));
    line(
        out,
        &format!(
            "path = {}",
            quote(health.path.as_deref().unwrap_or(HEALTH_PATH))
        ),
    );
    let seconds = |d: &Option<String>| d.as_deref().and_then(|d| humantime::parse_duration(d).ok());
    let interval = seconds(&health.interval);
    if let Some(text) = &health.interval {
        line(out, &format!("interval = {}", quote(text)));
    }
    let interval = interval.unwrap_or(std::time::Duration::from_secs(10));
    // Our rule: the timeout is shorter than the interval (compose allows equal ones).
    if let Some(text) = health
        .timeout
        .as_ref()
        .filter(|_| seconds(&health.timeout).is_some_and(|t| t < interval))
    {
        line(out, &format!("timeout = {}", quote(text)));
    }
    if let Some(retries) = health.retries.filter(|r| (1..=10).contains(r)) {
        line(out, &format!("retries = {retries}"));
    }
    if let Some(text) = &health.start_period {
        line(out, &format!("start_period = {}", quote(text)));
    }
}

pub fn accessories(out: &mut String, compose: &ComposeShape) {
    if compose.accessories.is_empty() && compose.notes.is_empty() {
        return;
    }
    line(
        out,
        &format!(
            "# Backing services from {}: the docker engine runs them on the environment's",
            compose.file
        ),
    );
    line(out, "# network, where the app reaches them by name, starts them (healthy) before migrations and");
    line(
        out,
        "# keeps them and their volumes across deploys. On ECS use managed services instead.",
    );
    for note in &compose.notes {
        line(out, &format!("# note: {note}"));
    }
    for accessory in &compose.accessories {
        line(out, &format!("[accessories.{}]", accessory.name));
        line(out, &format!("image = {}", quote(&accessory.image)));
        if let Some(command) = &accessory.command {
            line(out, &format!("command = {}", array(command)));
        }
        if !accessory.env.is_empty() {
            let pairs: Vec<String> = accessory
                .env
                .iter()
                .map(|(k, v)| format!("{k} = {}", quote(v)))
                .collect();
            line(out, &format!("env = {{ {} }}", pairs.join(", ")));
        }
        if !accessory.secrets.is_empty() {
            line(out, &format!("secrets = {}", array(&accessory.secrets)));
        }
        if !accessory.volumes.is_empty() {
            line(out, &format!("volumes = {}", array(&accessory.volumes)));
        }
        if !accessory.ports.is_empty() {
            line(
                out,
                &format!("ports = {}   # on 127.0.0.1 only", array(&accessory.ports)),
            );
        }
        if let Some(command) = accessory.health.as_ref().and_then(|h| h.command.as_ref()) {
            let health = accessory.health.as_ref();
            let mut fields = vec![format!("command = {}", array(command))];
            for (key, value) in [
                ("interval", health.and_then(|h| h.interval.as_ref())),
                ("timeout", health.and_then(|h| h.timeout.as_ref())),
                ("start_period", health.and_then(|h| h.start_period.as_ref())),
            ] {
                if let Some(value) = value {
                    fields.push(format!("{key} = {}", quote(value)));
                }
            }
            if let Some(retries) = health.and_then(|h| h.retries) {
                fields.push(format!("retries = {retries}"));
            }
            line(out, &format!("health = {{ {} }}", fields.join(", ")));
        }
        line(out, "");
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use indexmap::IndexMap;

    use crate::config::{parse, ServiceKind};
    use crate::scaffold::{parse_compose, parse_dockerfile, render, ProjectShape};

    const COMPOSE: &str = "services:\n  db:\n    image: postgres:16\n    healthcheck:\n      test: [\"CMD-SHELL\", \"pg_isready -U postgres\"]\n      interval: 2s\n      retries: 5\n    volumes:\n      - app-db-data:/var/lib/postgresql/data\n    environment:\n      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD?Variable not set}\n  prestart:\n    build: ./backend\n    profiles: [prestart]\n    command: bash scripts/prestart.sh\n  backend:\n    build: ./backend\n    ports: [\"8000:80\"]\n    healthcheck:\n      test: [\"CMD\", \"curl\", \"-f\", \"http://localhost/api/v1/utils/health/\"]\n      interval: 10s\n      timeout: 10s\n    environment:\n      POSTGRES_SERVER: db\n  celery_worker:\n    build: ./backend\n    command: celery -A app.celery.celery_app worker\n";

    #[test]
    fn a_compose_project_renders_a_config_with_its_services_accessories_and_local_values() {
        let example: IndexMap<String, String> = [
            ("POSTGRES_SERVER", "localhost"),
            ("POSTGRES_PASSWORD", "changethis"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let secrets = vec!["POSTGRES_PASSWORD".to_owned()];
        let compose =
            parse_compose("docker-compose.yml", COMPOSE, &example, &secrets).expect("compose");
        let shape = ProjectShape {
            app: "kaapi".to_owned(),
            context: "backend".to_owned(),
            dockerfile: "Dockerfile".to_owned(),
            facts: parse_dockerfile(
                "FROM python:3.12\nEXPOSE 80\nCMD [\"uvicorn\", \"app.main:app\"]\n",
            ),
            uses_uv: false,
            alembic: true,
            celery: true,
            flower: false,
            celery_app: "app.celery.celery_app".to_owned(),
            example: Some((".env.example".to_owned(), example)),
            compose: Some(compose),
        };
        let text = render(&shape);
        let (config, _) =
            parse(Path::new("deploy.toml"), &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let names: Vec<&String> = config.services.keys().collect();
        assert_eq!(names, ["backend", "celery-worker"]);
        assert_eq!(config.services["backend"].kind(), ServiceKind::Web);
        assert_eq!(config.services["backend"].port, Some(80));
        let health = config.services["backend"].health.as_ref().expect("health");
        assert_eq!(health.path, "/api/v1/utils/health/");
        assert!(
            health.timeout() < health.interval(),
            "compose's equal timeout is not copied"
        );
        assert_eq!(config.services["celery-worker"].kind(), ServiceKind::Worker);
        assert_eq!(
            config
                .migrations
                .as_ref()
                .map(|m| m.command.to_string())
                .as_deref(),
            Some("bash scripts/prestart.sh")
        );
        let db = &config.accessories["db"];
        assert_eq!(db.image, "postgres:16");
        assert_eq!(db.secrets, ["POSTGRES_PASSWORD"]);
        assert_eq!(db.volumes, ["app-db-data:/var/lib/postgresql/data"]);
        assert_eq!(config.environments["local"].env["POSTGRES_SERVER"], "db");
        assert!(
            !config.env.contains_key("POSTGRES_SERVER"),
            "localhost is not written:\n{text}"
        );
        assert!(
            !config.services.contains_key("worker"),
            "no default Celery services beside compose's"
        );
    }
}
