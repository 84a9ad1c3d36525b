//! `adopt` against moto holding Kaapi's production shape: the backend and the Celery worker as
//! two containers of one task definition, a dedicated worker service, credentials as keys of
//! one JSON secret, families and log groups with their own names. The written deploy.toml
//! passes `check`, and the revisions a deploy registers differ from the live ones only in the
//! image.

use crate::support::moto::Moto;
use crate::support::Recorder;
use aws_sdk_ecs::types::{
    Compatibility, ContainerDefinition, HealthCheck, KeyValuePair, LogConfiguration, LogDriver,
    NetworkMode, PortMapping, Secret, TaskDefinition,
};
use chrono::Utc;
use kaapi_core::config::{self, ResolvedEnvironment};
use kaapi_core::engine::Engine;
use kaapi_core::release::{ImageRef, ReleaseMeta};
use kaapi_ecs::adopt::{self, AdoptRequest};
use kaapi_ecs::{AwsClients, EcsEngine, Target, Tuning};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "eu-west-1";
const CLUSTER: &str = "kaapi-cluster";
const SECRETS: [&str; 2] = ["SECRET_KEY", "POSTGRES_PASSWORD"];
const NEW_DIGEST: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn repository() -> String {
    format!("{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/kaapi-repo")
}

fn logs(group: &str, prefix: &str) -> LogConfiguration {
    LogConfiguration::builder()
        .log_driver(LogDriver::Awslogs)
        .options("awslogs-group", group)
        .options("awslogs-region", REGION)
        .options("awslogs-stream-prefix", prefix)
        .build()
        .expect("log configuration")
}

fn app_container(name: &str, command: &[&str], extra_env: &[(&str, &str)]) -> ContainerDefinition {
    let mut container = ContainerDefinition::builder()
        .name(name)
        .image(format!("{}:latest", repository()))
        .essential(true)
        .set_command(
            (!command.is_empty()).then(|| command.iter().map(|c| (*c).to_owned()).collect()),
        );
    for (k, v) in [
        ("ENVIRONMENT", "production"),
        (
            "POSTGRES_SERVER",
            "kaapi-db.abc.eu-west-1.rds.amazonaws.com",
        ),
    ]
    .iter()
    .chain(extra_env)
    {
        container = container.environment(KeyValuePair::builder().name(*k).value(*v).build());
    }
    for key in SECRETS {
        container = container.secrets(
            Secret::builder()
                .name(key)
                .value_from(format!(
                    "arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:kaapi/prod:{key}::"
                ))
                .build()
                .expect("secret"),
        );
    }
    container.build()
}

/// The backend task: backend + Celery worker containers of the app image.
fn backend_task() -> TaskDefinition {
    let mut backend = app_container("backend", &[], &[("WORKERS", "4")]);
    backend.port_mappings = Some(vec![PortMapping::builder().container_port(80).build()]);
    backend.cpu = 512;
    backend.memory = Some(1024);
    backend.log_configuration = Some(logs("/ecs/kaapi-backend", "ecs"));
    backend.health_check = Some(
        HealthCheck::builder()
            .command("CMD-SHELL")
            .command("curl -f http://localhost/api/v1/utils/health/ || exit 1")
            .interval(30)
            .timeout(5)
            .retries(3)
            .start_period(60)
            .build()
            .expect("health check"),
    );
    let mut worker = app_container(
        "celery_worker",
        &["celery", "-A", "app.celery.celery_app", "worker"],
        &[("WORKERS", "2")],
    );
    worker.cpu = 512;
    worker.memory = Some(1024);
    worker.log_configuration = Some(logs("/ecs/kaapi-backend", "worker"));
    TaskDefinition::builder()
        .family("kaapi-backend-task")
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .execution_role_arn(format!("arn:aws:iam::{ACCOUNT}:role/ecsTaskExecutionRole"))
        .cpu("1024")
        .memory("2048")
        .container_definitions(backend)
        .container_definitions(worker)
        .build()
}

/// The dedicated worker service's task: one Celery container.
fn worker_task() -> TaskDefinition {
    let mut worker = app_container(
        "celery_worker",
        &[
            "celery",
            "-A",
            "app.celery.celery_app",
            "worker",
            "--concurrency=4",
        ],
        &[("WORKERS", "2")],
    );
    worker.cpu = 512;
    worker.memory = Some(1024);
    worker.stop_timeout = Some(120);
    worker.log_configuration = Some(logs("/ecs/kaapi-worker", "ecs"));
    TaskDefinition::builder()
        .family("kaapi-worker-task")
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .execution_role_arn(format!("arn:aws:iam::{ACCOUNT}:role/ecsTaskExecutionRole"))
        .cpu("512")
        .memory("1024")
        .container_definitions(worker)
        .build()
}

async fn register(clients: &AwsClients, d: &TaskDefinition) -> String {
    clients
        .ecs
        .register_task_definition()
        .set_family(d.family.clone())
        .set_network_mode(d.network_mode.clone())
        .set_requires_compatibilities(d.requires_compatibilities.clone())
        .set_execution_role_arn(d.execution_role_arn.clone())
        .set_cpu(d.cpu.clone())
        .set_memory(d.memory.clone())
        .set_container_definitions(d.container_definitions.clone())
        .send()
        .await
        .expect("register the live task definition")
        .task_definition()
        .and_then(|t| t.task_definition_arn())
        .expect("arn")
        .to_owned()
}

async fn kaapi_production(moto: &Moto, clients: &AwsClients) -> Vec<(String, String)> {
    moto.boto3(&format!(
        r#"
import boto3, json, os
sm = boto3.client("secretsmanager", endpoint_url=os.environ["MOTO_ENDPOINT"], region_name="{REGION}",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
sm.create_secret(Name="kaapi/prod", SecretString=json.dumps({{"SECRET_KEY": "x" * 43, "POSTGRES_PASSWORD": "y" * 43}}))
"#
    ));
    clients
        .ecs
        .create_cluster()
        .cluster_name(CLUSTER)
        .send()
        .await
        .expect("create cluster");
    let mut live = Vec::new();
    for (service, definition, desired) in [
        ("kaapi-service", backend_task(), 2),
        ("kaapi-celery-worker-service", worker_task(), 1),
    ] {
        let arn = register(clients, &definition).await;
        clients
            .ecs
            .create_service()
            .cluster(CLUSTER)
            .service_name(service)
            .task_definition(&arn)
            .desired_count(desired)
            .send()
            .await
            .expect("create service");
        live.push((service.to_owned(), arn));
    }
    live
}

async fn describe(clients: &AwsClients, arn: &str) -> TaskDefinition {
    clients
        .ecs
        .describe_task_definition()
        .task_definition(arn)
        .send()
        .await
        .expect("describe")
        .task_definition()
        .cloned()
        .expect("task definition")
}

/// Order of variables and secrets carries no meaning to ECS; compare them as sets.
fn normalised(mut container: ContainerDefinition) -> ContainerDefinition {
    let mut env = container.environment.take().unwrap_or_default();
    env.sort_by(|a, b| a.name().cmp(&b.name()));
    container.environment = Some(env);
    let mut secrets = container.secrets.take().unwrap_or_default();
    secrets.sort_by(|a, b| a.name().cmp(b.name()));
    container.secrets = Some(secrets);
    container.command = Some(container.command.take().unwrap_or_default());
    container.port_mappings = Some(container.port_mappings.take().unwrap_or_default());
    container
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopted_config_checks_and_a_deploy_changes_only_the_image() {
    let moto = Moto::start();
    let clients = AwsClients::from_sdk_config(moto.sdk_config().await);
    let live = kaapi_production(&moto, &clients).await;

    let adopted = adopt::adopt(
        &clients,
        &AdoptRequest {
            app: "kaapi".to_owned(),
            environment: "production".to_owned(),
            cluster: None,
            services: Vec::new(),
        },
    )
    .await
    .expect("adopt the live services");
    let text = adopted.to_toml().expect("render deploy.toml");
    for expected in [
        "secrets_manager = \"kaapi/prod\"",
        "json_key = true",
        "backend = \"kaapi-backend-task\"",
        "celery-worker = \"kaapi-worker-task\"",
        "backend = \"/ecs/kaapi-backend\"",
        "execution_role = \"ecsTaskExecutionRole\"",
        "path = \"/api/v1/utils/health/\"",
        "stop_timeout = \"2m\"",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }

    // Migrations must not start the worker container beside the backend.
    assert!(
        adopted
            .notes
            .iter()
            .any(|n| n.contains("service = \"celery-worker\"")),
        "{:?}",
        adopted.notes
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("deploy.toml");
    std::fs::write(&path, &text).expect("write deploy.toml");
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").expect("write Dockerfile");
    let loaded = config::load(&path).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let report = kaapi_core::check::check(&loaded, Some("production"));
    assert!(report.passed(), "{report:?}\n{text}");
    assert_eq!(loaded.config.replicas("production", "backend"), 2);

    let target =
        Target::from(ResolvedEnvironment::resolve(loaded, "production").expect("production"));
    let engine = EcsEngine::with_clients(target, clients.clone(), Tuning::default(), None);
    let image = ImageRef {
        reference: format!("{}@{NEW_DIGEST}", repository()),
        digest: NEW_DIGEST.to_owned(),
        tags: vec!["abc1234".to_owned()],
    };
    let meta = ReleaseMeta {
        commit: "abc1234".to_owned(),
        version: None,
        author: "alice".to_owned(),
        created_at: Utc::now(),
    };
    let release = engine
        .register_release(&image, &meta, None, &Recorder::default())
        .await
        .expect("register release 1");
    assert_eq!(release.revisions.len(), 2);

    for ((service, live_arn), key) in live.iter().zip(["backend", "celery-worker"]) {
        let new_arn = &release.revision_of(key).expect("revision").revision;
        let (before, after) = (
            describe(&clients, live_arn).await,
            describe(&clients, new_arn).await,
        );
        assert_eq!(after.family(), before.family(), "{service}");
        assert_eq!(after.revision(), before.revision() + 1, "{service}");
        assert_eq!(after.cpu(), before.cpu(), "{service}");
        assert_eq!(after.memory(), before.memory(), "{service}");
        assert_eq!(
            after.execution_role_arn(),
            before.execution_role_arn(),
            "{service}"
        );
        assert_eq!(after.network_mode(), before.network_mode(), "{service}");
        let expected: Vec<ContainerDefinition> = before
            .container_definitions()
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c.image = Some(image.reference.clone());
                normalised(c)
            })
            .collect();
        let got: Vec<ContainerDefinition> = after
            .container_definitions()
            .iter()
            .cloned()
            .map(normalised)
            .collect();
        assert_eq!(got, expected, "{service}: only the image may change");
    }
}
