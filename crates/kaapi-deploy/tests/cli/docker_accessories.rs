//! A project shaped like Kaapi's repository (docker-compose.yml with db/redis/rabbitmq, a
//! prestart one-off, backend, Celery worker and Flower): `init` adopts the compose file, and
//! `deploy local` runs the accessories on the environment's network before the migrations,
//! against the real Docker Engine. Accessory images are stand-ins built FROM scratch around
//! Debian's static busybox, tagged with the real names the compose file uses.

use std::path::Path;
use std::sync::Once;

use crate::docker_support::{docker, Project, LABEL_ROLE};

const BUSYBOX: &str = "/bin/busybox";

const COMPOSE: &str = r#"services:
  db:
    image: postgres:16
    restart: always
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U postgres"]
      interval: 1s
      timeout: 1s
      retries: 10
    volumes:
      - app-db-data:/var/lib/postgresql/data
    environment:
      - POSTGRES_PASSWORD=${POSTGRES_PASSWORD?Variable not set}
      - POSTGRES_USER=${POSTGRES_USER?Variable not set}
  redis:
    image: redis:7
  rabbitmq:
    image: rabbitmq:3-management
  prestart:
    build:
      context: ./backend
    image: "${DOCKER_IMAGE_BACKEND?Variable not set}:${TAG-latest}"
    profiles: ["prestart"]
    command: sh -c "wget -q -O /dev/null http://$$POSTGRES_SERVER:5432/ && echo reached $$POSTGRES_SERVER by name && /app migrate"
    volumes:
      - app-data:/data
    environment:
      - POSTGRES_SERVER=db
  backend:
    image: "${DOCKER_IMAGE_BACKEND?Variable not set}:${TAG-latest}"
    build:
      context: ./backend
    ports:
      - "8000:8000"
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://localhost:8000/api/v1/utils/health/"]
      interval: 2s
      timeout: 1s
      retries: 3
      start_period: 2s
    volumes:
      - app-data:/data
    environment:
      - POSTGRES_SERVER=db
      - REDIS_HOST=redis
      - RABBITMQ_HOST=rabbitmq
      - SECRET_KEY=${SECRET_KEY?Variable not set}
  celery_worker:
    image: "${DOCKER_IMAGE_BACKEND?Variable not set}:${TAG-latest}"
    command: ["/app", "worker"]
    volumes:
      - app-data:/data
  celery_flower:
    image: "${DOCKER_IMAGE_BACKEND?Variable not set}:${TAG-latest}"
    command: /app worker
    ports:
      - "5555:5555"
"#;

const EXAMPLE: &str = "SECRET_KEY=changethis\nPOSTGRES_PASSWORD=changethis\nPOSTGRES_USER=postgres\nPOSTGRES_SERVER=localhost\nREDIS_HOST=localhost\nRABBITMQ_HOST=localhost\nWORKER_INTERVAL_SECS=1\n";

/// `postgres:16` (httpd on 5432 serving its data directory, and a `pg_isready` that asks it),
/// `redis:7` and `rabbitmq:3-management` (httpd on their ports), built once.
pub fn build_stand_in_images() {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::copy(BUSYBOX, dir.path().join("busybox")).expect("busybox-static is installed");
        std::fs::write(
            dir.path().join("pg_isready"),
            "#!/bin/sh\nexec wget -q -O /dev/null http://127.0.0.1:5432/\n",
        )
        .expect("write");
        let images = [
            ("postgres:16", "RUN [\"/bin/mkdir\", \"-p\", \"/var/lib/postgresql/data\"]\nCOPY pg_isready /usr/bin/pg_isready\nRUN [\"/bin/chmod\", \"+x\", \"/usr/bin/pg_isready\"]\nCMD [\"/bin/sh\", \"-c\", \"echo ok > /var/lib/postgresql/data/index.html && exec httpd -f -p 5432 -h /var/lib/postgresql/data\"]"),
            ("redis:7", "CMD [\"/bin/httpd\", \"-f\", \"-p\", \"6379\", \"-h\", \"/\"]"),
            ("rabbitmq:3-management", "CMD [\"/bin/httpd\", \"-f\", \"-p\", \"5672\", \"-h\", \"/\"]"),
        ];
        for (tag, tail) in images {
            let dockerfile = format!(
                "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n{tail}\n"
            );
            std::fs::write(dir.path().join("Dockerfile"), dockerfile).expect("write");
            let status = std::process::Command::new("docker")
                .args(["build", "-q", "-t", tag])
                .arg(dir.path())
                .status()
                .expect("docker build");
            assert!(status.success(), "building stand-in {tag}");
        }
    });
}

/// Replaces the project's tree with Kaapi's shape: compose file, `.env.example`, `.env`, and a
/// backend Dockerfile (the example backend plus busybox, for the prestart's `sh` and `wget`).
fn kaapi_tree(project: &Project) {
    let root = project.dir.path();
    let backend = root.join("backend");
    std::fs::copy(BUSYBOX, backend.join("dist/busybox")).expect("copy busybox");
    std::fs::write(
        backend.join("Dockerfile"),
        "FROM scratch AS tools\nCOPY dist/busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\nFROM tools\nCOPY --from=tools /bin/busybox /bin/busybox\nCOPY dist/kaapi-example-backend /app\nENV PORT=8000 DATABASE_PATH=/data/app.db\nEXPOSE 8000\nCMD [\"/app\", \"serve\"]\n",
    )
    .expect("write Dockerfile");
    std::fs::write(
        backend.join(".dockerignore"),
        "*\n!dist/kaapi-example-backend\n!dist/busybox\n",
    )
    .expect("write");
    std::fs::write(root.join("docker-compose.yml"), COMPOSE).expect("write compose");
    std::fs::write(root.join(".env.example"), EXAMPLE).expect("write example");
    std::fs::write(
        root.join(".env"),
        "SECRET_KEY=local-secret-not-printed\nPOSTGRES_PASSWORD=local-db-password\n",
    )
    .expect("write .env");
}

fn init(project: &Project) -> String {
    let output = project
        .cli()
        .args(["init", "--force", "--app", &project.app, "--dir"])
        .arg(project.dir.path())
        .output()
        .expect("run init");
    assert!(
        output.status.success(),
        "init: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&project.config).expect("read deploy.toml");
    // A free ingress port instead of compose's 8000, which parallel tests would share.
    let text = text.replace(
        "ingress_port = 8000",
        &format!("ingress_port = {}", project.port),
    );
    std::fs::write(&project.config, &text).expect("write deploy.toml");
    text
}

fn deploy(project: &Project) -> (bool, String) {
    let output = project
        .cli()
        .args(["deploy", "local"])
        .output()
        .expect("run deploy");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn accessory_id(project: &Project, name: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        "{{.Id}}",
        &format!("{}-local-accessory-{name}", project.app),
    ])
    .trim()
    .to_owned()
}

#[test]
fn init_adopts_kaapis_compose_and_deploy_runs_accessories_before_migrations_and_keeps_them() {
    build_stand_in_images();
    let project = Project::new("acc");
    kaapi_tree(&project);
    let text = init(&project);
    let (config, _) = kaapi_core::config::parse(Path::new("deploy.toml"), &text).expect("loads");
    let services: Vec<&String> = config.services.keys().collect();
    assert_eq!(
        services,
        ["backend", "celery-worker", "celery-flower"],
        "{text}"
    );
    assert_eq!(config.services["backend"].port, Some(8000));
    let accessories: Vec<&String> = config.accessories.keys().collect();
    assert_eq!(accessories, ["db", "redis", "rabbitmq"], "{text}");
    assert_eq!(config.accessories["db"].image, "postgres:16");
    assert_eq!(config.accessories["db"].secrets, ["POSTGRES_PASSWORD"]);
    assert_eq!(config.accessories["db"].env["POSTGRES_USER"], "postgres");
    let migrations = config
        .migrations
        .as_ref()
        .expect("prestart became the migrations");
    assert_eq!(
        migrations.command.argv()[..2],
        ["sh".to_owned(), "-c".to_owned()]
    );
    assert_eq!(config.environments["local"].env["POSTGRES_SERVER"], "db");
    assert!(!text.contains("POSTGRES_SERVER = \"localhost\""), "{text}");

    let (ok, output) = deploy(&project);
    assert!(ok, "{output}");
    let healthy = output
        .find("accessory `db` is healthy")
        .expect("db checked healthy");
    let reached = output
        .find("reached db by name")
        .expect("the migration reached db");
    assert!(
        healthy < reached,
        "accessories are healthy before migrations:\n{output}"
    );
    assert!(
        !output.contains("local-db-password"),
        "a secret was printed"
    );
    let (status, body) = project
        .get("/api/v1/utils/health/")
        .expect("ingress answers");
    assert_eq!(status, 200, "{body}");
    assert_eq!(project.containers(&[(LABEL_ROLE, "accessory")]).len(), 3);

    // Data written into the db volume, then a redeploy: same container, same data.
    let db = accessory_id(&project, "db");
    docker(&[
        "exec",
        &db,
        "sh",
        "-c",
        "echo kept > /var/lib/postgresql/data/marker",
    ]);
    let (ok, output) = deploy(&project);
    assert!(ok, "{output}");
    assert!(output.contains("accessory `db` runs unchanged"), "{output}");
    assert_eq!(
        accessory_id(&project, "db"),
        db,
        "the db container was not replaced"
    );
    assert_eq!(
        docker(&["exec", &db, "cat", "/var/lib/postgresql/data/marker"]).trim(),
        "kept"
    );

    // An accessory whose health check never passes stops the deploy before migrations.
    let releases = project.releases().len();
    let broken = format!(
        "{text}\n[accessories.broken]\nimage = \"redis:7\"\nhealth = {{ command = [\"false\"], interval = \"500ms\", timeout = \"400ms\", retries = 2 }}\n"
    );
    std::fs::write(&project.config, broken).expect("write deploy.toml");
    let (ok, output) = deploy(&project);
    assert!(!ok, "{output}");
    assert!(
        output.contains("accessory `broken` failed its health check"),
        "{output}"
    );
    assert!(
        !output.contains("reached db by name"),
        "no migration ran:\n{output}"
    );
    assert_eq!(project.releases().len(), releases, "nothing was recorded");
    assert_eq!(
        project.get("/api/v1/utils/health/").map(|(s, _)| s),
        Ok(200)
    );
    assert_eq!(accessory_id(&project, "db"), db);
}

#[test]
fn an_accessory_whose_image_is_missing_is_named_and_nothing_starts() {
    let project = Project::new("accm");
    let text = std::fs::read_to_string(&project.config).expect("read");
    std::fs::write(
        &project.config,
        format!("{text}\n[accessories.db]\nimage = \"kaapi-test-absent-image:1\"\n"),
    )
    .expect("write");
    let (ok, output) = deploy(&project);
    assert!(!ok, "{output}");
    assert!(
        output.contains(
            "accessory `db`: image kaapi-test-absent-image:1 is not in the local Docker Engine"
        ),
        "{output}"
    );
    assert!(project.containers(&[]).is_empty(), "nothing was started");
    assert!(project.releases().is_empty());
}

#[test]
fn an_accessory_whose_port_is_taken_stops_the_deploy_and_leaves_no_container() {
    build_stand_in_images();
    let project = Project::new("accp");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let port = taken.local_addr().expect("addr").port();
    let text = std::fs::read_to_string(&project.config).expect("read");
    std::fs::write(
        &project.config,
        format!("{text}\n[accessories.cache]\nimage = \"redis:7\"\nports = [\"{port}:6379\"]\n"),
    )
    .expect("write");
    let (ok, output) = deploy(&project);
    assert!(!ok, "{output}");
    assert!(
        output.contains("accessory `cache` cannot start: a port it publishes is taken"),
        "{output}"
    );
    assert!(
        project.containers(&[]).is_empty(),
        "nothing is left running"
    );
    assert!(project.releases().is_empty());
    drop(taken);
}

/// Runs `plan local`: (exit code, stdout and stderr).
fn plan(project: &Project) -> (i32, String) {
    let output = project
        .cli()
        .args(["plan", "local"])
        .output()
        .expect("run plan");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

/// The project's config with one accessory `cache` appended.
fn with_cache(base: &str, project: &Project, accessory: &str) {
    std::fs::write(
        &project.config,
        format!("{base}\n[accessories.cache]\n{accessory}\n"),
    )
    .expect("write deploy.toml");
}

#[test]
fn plan_shows_what_a_deploy_would_change_in_an_accessory() {
    build_stand_in_images();
    let project = Project::new("accplan");
    let base = std::fs::read_to_string(&project.config).expect("read");
    let volume = format!("{}-cache-a:/data", project.app);
    with_cache(
        &base,
        &project,
        &format!(
            "image = \"redis:7\"\nenv = {{ MODE = \"a\", KEEP = \"1\" }}\nports = [\"6379\"]\nvolumes = [\"{volume}\"]"
        ),
    );
    let (code, text) = plan(&project);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("+ accessory cache: container: redis:7"),
        "{text}"
    );

    let (ok, output) = deploy(&project);
    assert!(ok, "{output}");
    let (code, text) = plan(&project);
    assert_eq!(code, 0, "the running accessory matches the config:\n{text}");

    let other_volume = format!("{}-cache-b:/data", project.app);
    with_cache(
        &base,
        &project,
        &format!(
            "image = \"rabbitmq:3-management\"\nenv = {{ MODE = \"b\", ADDED = \"x\" }}\nports = [\"5672\"]\nvolumes = [\"{other_volume}\"]"
        ),
    );
    let (code, text) = plan(&project);
    assert_eq!(code, 3, "{text}");
    for line in [
        "~ accessory cache: image: redis:7 -> rabbitmq:3-management".to_owned(),
        "~ accessory cache: ports: 127.0.0.1:auto->6379 -> 127.0.0.1:auto->5672".to_owned(),
        // Named volumes are the environment's own (`{app}-local-NAME`).
        format!(
            "~ accessory cache: volumes: {app}-local-{volume} -> {app}-local-{other_volume}",
            app = project.app
        ),
        "~ accessory cache: variable MODE".to_owned(),
        "- accessory cache: variable KEEP".to_owned(),
        "+ accessory cache: variable ADDED".to_owned(),
    ] {
        assert!(text.contains(&line), "missing `{line}`:\n{text}");
    }
    assert!(
        !text.contains("PATH"),
        "Docker's own variables are not the config's:\n{text}"
    );
    assert!(
        !text.contains("= \"b\"") && !text.contains("-> b"),
        "variable values are never shown:\n{text}"
    );
    // A plan changes nothing: the old container still runs the old image.
    let image = docker(&[
        "inspect",
        "-f",
        "{{.Config.Image}}",
        &format!("{}-local-accessory-cache", project.app),
    ]);
    assert_eq!(image.trim(), "redis:7");
}
