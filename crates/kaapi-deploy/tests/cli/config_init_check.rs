//! `init` in a Kaapi-shaped tree, then `check`; `secrets generate`. Secret values written to
//! the local env file must never appear in any output.

use std::collections::BTreeSet;
use std::path::Path;

use assert_cmd::Command;
use kaapi_core::config::{self, ServiceKind};

const DOCKERFILE: &str = r#"FROM python:3.12
ENV PYTHONUNBUFFERED=1
WORKDIR /app/
COPY --from=ghcr.io/astral-sh/uv:0.5.11 /uv /uvx /bin/
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-install-project
COPY app /app/app
COPY alembic.ini /app/alembic.ini
# Expose port 80
EXPOSE 80
CMD ["uv", "run", "uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "80", "--workers", "4"]
"#;

const PYPROJECT: &str = r#"[project]
name = "app"
dependencies = [
    "fastapi[standard]<1.0.0,>=0.114.2",
    "alembic<2.0.0,>=1.12.1",
    "celery>=5.3.0,<6.0.0",
    "redis>=5.0.0,<6.0.0",
    "flower>=2.0.1",
]
[tool.uv]
dev-dependencies = ["pytest<8.0.0,>=7.4.3"]
"#;

const ENV_EXAMPLE: &str = r#"# Domain
DOMAIN=localhost
ENVIRONMENT=development
PROJECT_NAME="Kaapi"
STACK_NAME=Kaapi
#Backend
SECRET_KEY=changethis
FIRST_SUPERUSER=superuser@example.com
FIRST_SUPERUSER_PASSWORD=changethis
EMAIL_TEST_USER="test@example.com"
# Postgres
POSTGRES_SERVER=localhost
POSTGRES_PORT=5432
POSTGRES_DB=kaapi
POSTGRES_USER=postgres
POSTGRES_PASSWORD=postgres
SENTRY_DSN=
# AWS
AWS_ACCESS_KEY_ID=
AWS_SECRET_ACCESS_KEY=
AWS_DEFAULT_REGION=ap-south-1
AWS_S3_BUCKET_PREFIX="bucket-prefix-name"
# RabbitMQ
RABBITMQ_HOST=localhost
RABBITMQ_USER=guest
RABBITMQ_PASSWORD=guest
REDIS_PASSWORD=
CELERY_WORKER_CONCURRENCY=
CALLBACK_CONNECT_TIMEOUT = 3
OPENAI_API_KEY=""
"#;

const SECRETS: [&str; 4] = [
    "SECRET_KEY",
    "FIRST_SUPERUSER_PASSWORD",
    "POSTGRES_PASSWORD",
    "RABBITMQ_PASSWORD",
];

/// A distinct fake value per secret, easy to search for in output.
fn fake_value(name: &str) -> String {
    format!("fake-{}-Zq7vX9", name.to_ascii_lowercase())
}

fn kaapi_tree(root: &Path) {
    let backend = root.join("backend");
    std::fs::create_dir_all(&backend).expect("create backend/");
    std::fs::write(backend.join("Dockerfile"), DOCKERFILE).expect("write Dockerfile");
    std::fs::write(backend.join("pyproject.toml"), PYPROJECT).expect("write pyproject");
    std::fs::write(backend.join("uv.lock"), "version = 1\n").expect("write uv.lock");
    std::fs::write(backend.join("alembic.ini"), "[alembic]\n").expect("write alembic.ini");
    std::fs::write(root.join(".env.example"), ENV_EXAMPLE).expect("write .env.example");
}

fn kaapi_deploy(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("kaapi-deploy").expect("binary builds");
    cmd.current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("KAAPI_CONFIG");
    cmd
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(dir: &Path, args: &[&str]) -> Run {
    let output = kaapi_deploy(dir)
        .args(args)
        .output()
        .expect("run kaapi-deploy");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn assert_no_secret_value(run: &Run) {
    for name in SECRETS {
        let value = fake_value(name);
        assert!(
            !run.stdout.contains(&value) && !run.stderr.contains(&value),
            "the value of {name} was printed:\n{}{}",
            run.stdout,
            run.stderr
        );
    }
}

fn write_real_env(root: &Path) {
    let env: String = SECRETS
        .iter()
        .map(|name| format!("{name}={}\n", fake_value(name)))
        .collect();
    std::fs::write(root.join(".env"), env).expect("write .env");
}

/// The generated file without its `secrets = [ … ]` list.
fn drop_secrets_list(root: &Path) {
    let path = root.join("deploy.toml");
    let text = std::fs::read_to_string(&path).expect("read deploy.toml");
    let start = text.find("\nsecrets = [").expect("init lists secrets") + 1;
    let end = start + text[start..].find("]\n").expect("end of the list") + 2;
    std::fs::write(&path, format!("{}{}", &text[..start], &text[end..])).expect("write");
}

#[test]
fn init_writes_a_config_for_the_kaapi_shape_that_loads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("Kaapi_Backend");
    kaapi_tree(&root);
    let init = run(&root, &["init"]);
    assert_eq!(init.code, Some(0), "{}{}", init.stdout, init.stderr);
    let loaded = config::load(&root.join("deploy.toml")).expect("the generated config loads");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = &loaded.config;
    assert_eq!(c.app, "kaapi-backend");
    assert_eq!(c.image.context, "backend");
    let backend = &c.services["backend"];
    assert_eq!(backend.kind(), ServiceKind::Web);
    assert_eq!(backend.port, Some(80));
    assert_eq!(
        backend
            .command
            .as_ref()
            .map(|cmd| cmd.argv().join(" "))
            .as_deref(),
        Some("uv run uvicorn app.main:app --host 0.0.0.0 --port 80 --workers 4")
    );
    assert_eq!(
        backend.health.as_ref().map(|h| h.path.as_str()),
        Some("/api/v1/utils/health/")
    );
    assert_eq!(
        c.migrations
            .as_ref()
            .map(|m| m.command.argv().join(" "))
            .as_deref(),
        Some("uv run alembic upgrade head")
    );
    assert_eq!(
        c.services.keys().collect::<Vec<_>>(),
        ["backend", "worker", "flower"]
    );
    assert_eq!(c.secrets, SECRETS);
    assert_eq!(
        c.variables.optional,
        [
            "SENTRY_DSN",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "REDIS_PASSWORD",
            "CELERY_WORKER_CONCURRENCY",
            "OPENAI_API_KEY"
        ]
    );
    assert_eq!(c.variables.example.as_deref(), Some(".env.example"));
    assert_eq!(
        c.environments.keys().collect::<Vec<_>>(),
        ["local", "staging", "production"]
    );
    let production = &c.environments["production"];
    assert_eq!(production.promote_from.as_deref(), Some("staging"));
    assert_eq!(
        production
            .secrets_from
            .as_ref()
            .and_then(|s| s.ssm.as_deref()),
        Some("/kaapi-backend/production/")
    );
    assert_eq!(production.region.as_deref(), Some("ap-south-1"));

    // Never overwrite without --force.
    std::fs::write(root.join("deploy.toml"), "# mine\n").expect("write");
    let again = run(&root, &["init"]);
    assert_eq!(again.code, Some(2));
    assert!(
        again.stderr.contains("already exists; pass --force"),
        "{}",
        again.stderr
    );
    assert_eq!(
        std::fs::read_to_string(root.join("deploy.toml")).expect("read"),
        "# mine\n"
    );
    let forced = run(&root, &["init", "--force", "--app", "kaapi"]);
    assert_eq!(forced.code, Some(0), "{}", forced.stderr);
    let loaded = config::load(&root.join("deploy.toml")).expect("loads");
    assert_eq!(loaded.config.app, "kaapi");
    // The state directory is ignored by git once, however often init runs.
    assert_eq!(
        std::fs::read_to_string(root.join(".gitignore")).expect("init wrote .gitignore"),
        ".kaapi/\n"
    );
    assert!(
        init.stdout.contains("added .kaapi/ to .gitignore"),
        "{}",
        init.stdout
    );
    assert!(!forced.stdout.contains(".gitignore"), "{}", forced.stdout);
}

#[test]
fn check_local_passes_and_check_staging_lists_exactly_the_missing_secrets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("kaapi");
    kaapi_tree(&root);
    assert_eq!(run(&root, &["init", "--app", "kaapi"]).code, Some(0));

    // Without .env, local lacks every secret: one finding names the file and what to put in it.
    let no_env = run(&root, &["check", "local"]);
    assert_eq!(no_env.code, Some(1), "{}", no_env.stdout);
    assert!(
        no_env.stdout.contains(".env: the env file does not exist"),
        "{}",
        no_env.stdout
    );
    assert!(
        no_env.stdout.contains(&SECRETS.join(", ")),
        "{}",
        no_env.stdout
    );

    write_real_env(&root);
    let local = run(&root, &["check", "local"]);
    assert_eq!(local.code, Some(0), "{}{}", local.stdout, local.stderr);
    assert!(
        local.stdout.contains("local (docker): ok"),
        "{}",
        local.stdout
    );
    assert_no_secret_value(&local);
    let all = run(&root, &["check"]);
    assert_eq!(all.code, Some(0), "{}{}", all.stdout, all.stderr);
    assert_no_secret_value(&all);

    drop_secrets_list(&root);
    let staging = run(&root, &["check", "staging", "--offline"]);
    assert_eq!(
        staging.code,
        Some(1),
        "{}{}",
        staging.stdout,
        staging.stderr
    );
    assert_no_secret_value(&staging);
    let missing: BTreeSet<&str> = staging
        .stdout
        .lines()
        .filter(|l| {
            l.starts_with("error:") && l.contains("is not provided for environment `staging`")
        })
        .filter_map(|l| l.split('`').nth(1))
        .collect();
    assert_eq!(
        missing,
        SECRETS.into_iter().collect::<BTreeSet<_>>(),
        "{}",
        staging.stdout
    );
    let errors = staging
        .stdout
        .lines()
        .filter(|l| l.starts_with("error:"))
        .count();
    assert_eq!(
        errors,
        SECRETS.len(),
        "only the missing secrets are errors:\n{}",
        staging.stdout
    );
    // Each names the file and line of .env.example that declares it.
    let line_of_secret_key = ENV_EXAMPLE
        .lines()
        .position(|l| l.starts_with("SECRET_KEY="))
        .map(|i| i + 1);
    let expected = format!(
        ".env.example:{}: `SECRET_KEY`",
        line_of_secret_key.unwrap_or_default()
    );
    assert!(staging.stdout.contains(&expected), "{}", staging.stdout);

    let json = run(&root, &["check", "staging", "--json", "--offline"]);
    assert_eq!(json.code, Some(1));
    assert_no_secret_value(&json);
    let report: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON report");
    assert_eq!(report["ok"], false);
    assert_eq!(report["errors"], SECRETS.len());
    let variables = report["environments"][0]["variables"]
        .as_array()
        .expect("variables");
    let missing_json: BTreeSet<&str> = variables
        .iter()
        .filter(|v| v["provided_by"] == "missing")
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(missing_json, SECRETS.into_iter().collect::<BTreeSet<_>>());
}

#[test]
fn staging_reads_secrets_by_reference_and_json_names_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("kaapi");
    kaapi_tree(&root);
    assert_eq!(run(&root, &["init", "--app", "kaapi"]).code, Some(0));
    let staging = run(&root, &["check", "staging", "--json", "--offline"]);
    assert_eq!(
        staging.code,
        Some(0),
        "{}{}",
        staging.stdout,
        staging.stderr
    );
    let report: serde_json::Value = serde_json::from_str(&staging.stdout).expect("JSON report");
    let variables = report["environments"][0]["variables"]
        .as_array()
        .expect("variables");
    let secret_key = variables
        .iter()
        .find(|v| v["name"] == "SECRET_KEY")
        .expect("SECRET_KEY listed");
    assert_eq!(secret_key["provided_by"], "secret");
    assert_eq!(secret_key["store"], "ssm");
    assert_eq!(secret_key["reference"], "/kaapi/staging/SECRET_KEY");
    let sentry = variables
        .iter()
        .find(|v| v["name"] == "SENTRY_DSN")
        .expect("SENTRY_DSN");
    assert_eq!(sentry["provided_by"], "optional");
    let environment = variables
        .iter()
        .find(|v| v["name"] == "ENVIRONMENT")
        .expect("ENVIRONMENT");
    assert_eq!(
        environment["keys"][0],
        "environments.staging.env.ENVIRONMENT"
    );
}

/// Placeholders: warned locally, refused in an environment named production.
#[test]
fn placeholders_are_warnings_locally_and_errors_for_production() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    std::fs::write(
        root.join("deploy.toml"),
        r#"app = "kaapi"
secrets = ["SECRET_KEY", "TOKEN_B"]
[image]
context = "."
[services.backend]
port = 80
[env]
DOMAIN = "changethis"
[variables]
example = ".env.example"
[environments.local]
engine = "docker"
secrets_from = { env_file = ".env" }
[environments.production]
engine = "docker"
secrets_from = { env_file = ".env" }
"#,
    )
    .expect("write config");
    std::fs::write(
        root.join(".env.example"),
        "DOMAIN=\nSECRET_KEY=\nTOKEN_B=\n",
    )
    .expect("write");
    std::fs::write(root.join(".env"), "SECRET_KEY=changethis\nTOKEN_B=\n").expect("write");
    let local = run(root, &["check", "local"]);
    assert_eq!(local.code, Some(0), "{}", local.stdout);
    let warnings: Vec<&str> = local
        .stdout
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 3, "{}", local.stdout);
    assert!(
        local
            .stdout
            .contains("deploy.toml:8: `env.DOMAIN`: `DOMAIN` has a placeholder value"),
        "{}",
        local.stdout
    );
    assert!(
        local
            .stdout
            .contains(".env:1: `SECRET_KEY`: secret `SECRET_KEY` has a placeholder value"),
        "{}",
        local.stdout
    );
    assert!(
        local.stdout.contains(".env:2: `TOKEN_B`"),
        "{}",
        local.stdout
    );
    let production = run(root, &["check", "production", "--offline"]);
    assert_eq!(production.code, Some(1), "{}", production.stdout);
    let errors = production
        .stdout
        .lines()
        .filter(|l| l.starts_with("error:"))
        .count();
    assert_eq!(errors, 3, "{}", production.stdout);
    assert!(!production.stdout.contains("changethis") && !local.stdout.contains("changethis"));
}

#[test]
fn init_refuses_a_tree_without_a_dockerfile_and_a_bad_app_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let empty = run(dir.path(), &["init"]);
    assert_eq!(empty.code, Some(2));
    assert!(
        empty.stderr.contains("no backend/Dockerfile"),
        "{}",
        empty.stderr
    );
    kaapi_tree(dir.path());
    let bad = run(dir.path(), &["init", "--app", "Bad_Name"]);
    assert_eq!(bad.code, Some(2));
    assert!(
        bad.stderr
            .contains("--app `Bad_Name` is not a valid prefix"),
        "{}",
        bad.stderr
    );
    assert!(!dir.path().join("deploy.toml").exists());
}

#[test]
fn init_in_a_plain_tree_uses_the_shell_cmd_and_adds_no_worker() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("shop");
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::write(
        root.join("Dockerfile"),
        "FROM scratch\nCMD gunicorn -b 0.0.0.0:5000 app:app\n",
    )
    .expect("write");
    std::fs::write(root.join("requirements.txt"), "flask\ngunicorn\n").expect("write");
    // A .gitignore of the user's own, without a final newline: appended to, on a line of its own.
    std::fs::write(root.join(".gitignore"), "target").expect("write");
    let init = run(dir.path(), &["init", "--dir", "shop"]);
    assert_eq!(init.code, Some(0), "{}", init.stderr);
    assert_eq!(
        std::fs::read_to_string(root.join(".gitignore")).expect("read .gitignore"),
        "target\n.kaapi/\n"
    );
    let loaded = config::load(&root.join("deploy.toml")).expect("loads");
    let c = &loaded.config;
    assert_eq!(c.app, "shop");
    assert_eq!(c.image.context, ".");
    assert!(c.migrations.is_none());
    assert_eq!(c.services.keys().collect::<Vec<_>>(), ["backend"]);
    assert_eq!(c.services["backend"].port, Some(5000));
    assert_eq!(
        c.services["backend"]
            .command
            .as_ref()
            .map(|cmd| cmd.argv().join(" "))
            .as_deref(),
        Some("gunicorn -b 0.0.0.0:5000 app:app")
    );
    let check = run(&root, &["check"]);
    assert_eq!(check.code, Some(0), "{}{}", check.stdout, check.stderr);
    assert!(
        check.stdout.contains("no variables.example"),
        "{}",
        check.stdout
    );
}

#[test]
fn secrets_generate_prints_distinct_url_safe_tokens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let three = run(dir.path(), &["secrets", "generate", "-n", "3"]);
    assert_eq!(three.code, Some(0), "{}", three.stderr);
    let lines: Vec<&str> = three.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", three.stdout);
    for line in &lines {
        assert_eq!(line.len(), 43, "{line}");
        assert!(
            line.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{line}"
        );
    }
    assert_eq!(lines.iter().collect::<BTreeSet<_>>().len(), 3);
    let one = run(dir.path(), &["secrets", "generate"]);
    assert_eq!(one.stdout.lines().count(), 1);
    assert!(!lines.contains(&one.stdout.trim()));
    assert_eq!(
        run(dir.path(), &["secrets", "generate", "-n", "0"]).code,
        Some(2)
    );
    let push = run(
        dir.path(),
        &["secrets", "push", "staging", "--from", ".env"],
    );
    // Without a deploy.toml there is no environment to push to: a usage error naming it.
    assert_eq!(push.code, Some(2));
    assert!(push.stderr.contains("deploy.toml"), "{}", push.stderr);
}
