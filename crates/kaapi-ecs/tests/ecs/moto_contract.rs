//! Contract tests against moto: every ECR, ECS and CloudWatch Logs call the engine makes,
//! with the request shapes it really sends, through the standard credential chain and
//! `AWS_ENDPOINT_URL`. moto's ECS never runs a service task nor completes a deployment, so no
//! rollout outcome is asserted here (the scenario tests do that); we assert that moto accepted
//! our UpdateService calls and what it stored.

use std::sync::Mutex;
use std::time::Duration;

use crate::support::moto::Moto;
use crate::support::{write_config, Recorder};
use aws_sdk_ecs::types::{
    AwsVpcConfiguration, Compatibility, ContainerDefinition, LaunchType, NetworkConfiguration,
    NetworkMode,
};
use chrono::Utc;
use kaapi_core::config::ResolvedEnvironment;
use kaapi_core::engine::{Engine, EngineError, ImageSource, LogQuery, RolloutOutcome, TaskOn};
use kaapi_core::release::{Outcome, ReleaseMeta};
use kaapi_ecs::pacing::Pace;
use kaapi_ecs::{AwsClients, EcsEngine, Target, Tuning};

pub(crate) const CLUSTER: &str = "kaapi-staging-cluster";
pub(crate) const REPO: &str = "kaapi-staging-repo";
const SERVICES: [(&str, &str, &str); 3] = [
    ("backend", "kaapi-staging-service", "kaapi-staging-backend"),
    (
        "worker",
        "kaapi-staging-worker-service",
        "kaapi-staging-worker",
    ),
    (
        "flower",
        "kaapi-staging-flower-service",
        "kaapi-staging-flower",
    ),
];

const NETWORK: &str = r#"
import boto3, os
ec2 = boto3.client("ec2", endpoint_url=os.environ["MOTO_ENDPOINT"], region_name="eu-west-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
sg = ec2.create_security_group(GroupName="kaapi", Description="kaapi", VpcId=vpc)["GroupId"]
print(subnet, sg)
"#;

pub(crate) const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"layers":[]}"#;

pub(crate) fn tuning() -> Tuning {
    Tuning {
        poll_initial: Duration::from_millis(100),
        poll_max: Duration::from_millis(300),
        pace: Pace::fixed(Duration::from_millis(300)),
        rollout_timeout: Duration::from_secs(1),
        task_timeout: Duration::from_secs(20),
        ..Tuning::default()
    }
}

/// The prerequisites `check`/the infrastructure templates would create: repository, cluster,
/// network, a hand-made first task definition and a service per config service.
pub(crate) async fn prerequisites(moto: &Moto, clients: &AwsClients) {
    let ids = moto.boto3(NETWORK);
    let (subnet, sg) = ids.split_once(' ').expect("subnet and security group");
    clients
        .ecr
        .create_repository()
        .repository_name(REPO)
        .send()
        .await
        .expect("create repository");
    clients
        .ecs
        .create_cluster()
        .cluster_name(CLUSTER)
        .send()
        .await
        .expect("create cluster");
    for (container, service, family) in SERVICES {
        let td = clients
            .ecs
            .register_task_definition()
            .family(family)
            .network_mode(NetworkMode::Awsvpc)
            .requires_compatibilities(Compatibility::Fargate)
            .cpu("256")
            .memory("512")
            .container_definitions(
                ContainerDefinition::builder()
                    .name(container)
                    .image("123456789012.dkr.ecr.eu-west-1.amazonaws.com/kaapi-staging-repo:latest")
                    .memory(512)
                    .essential(true)
                    .build(),
            )
            .send()
            .await
            .expect("register the hand-made revision");
        let arn = td
            .task_definition()
            .and_then(|t| t.task_definition_arn())
            .expect("arn")
            .to_owned();
        clients
            .ecs
            .create_service()
            .cluster(CLUSTER)
            .service_name(service)
            .task_definition(arn)
            .desired_count(1)
            .launch_type(LaunchType::Fargate)
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(
                        AwsVpcConfiguration::builder()
                            .subnets(subnet)
                            .security_groups(sg)
                            .build()
                            .expect("vpc configuration"),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("create service");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_calls_are_accepted_by_moto() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let loaded = write_config(dir.path(), "");
    // The standard chain, pointed at moto by AWS_ENDPOINT_URL alone.
    let clients = AwsClients::from_sdk_config(moto.sdk_config().await);
    assert_eq!(clients.region, "eu-west-1");
    prerequisites(&moto, &clients).await;
    let target =
        Target::from(ResolvedEnvironment::resolve(loaded.clone(), "staging").expect("staging"));
    let engine = EcsEngine::with_clients(target, clients.clone(), tuning(), None);
    let progress = Recorder::default();

    // ECR: login, an image that is there (by tag), and one that is not.
    let (registry, auth) = kaapi_ecs::image::ecr_login(&clients)
        .await
        .expect("ECR login");
    assert!(registry.host.contains(".dkr.ecr."), "{}", registry.host);
    assert!(!auth.password.is_empty());
    let put = clients
        .ecr
        .put_image()
        .repository_name(REPO)
        .image_tag("abc1234")
        .image_manifest(MANIFEST)
        .send()
        .await
        .expect("put image");
    let digest = put
        .image()
        .and_then(|i| i.image_id())
        .and_then(|i| i.image_digest())
        .expect("digest")
        .to_owned();
    let meta = ReleaseMeta {
        commit: "abc1234".to_owned(),
        version: Some("v1.2.3".to_owned()),
        author: "alice".to_owned(),
        created_at: Utc::now(),
    };
    let image = engine
        .prepare_image(
            &ImageSource::Existing("abc1234".to_owned()),
            &meta,
            &progress,
        )
        .await
        .expect("the tagged image resolves");
    assert_eq!(image.digest, digest);
    assert_eq!(
        image.reference,
        format!("{}/{REPO}@{digest}", registry.host)
    );
    let missing = engine
        .prepare_image(
            &ImageSource::Existing("nosuchtag".to_owned()),
            &meta,
            &progress,
        )
        .await
        .expect_err("refused");
    assert!(matches!(missing, EngineError::NotFound { .. }), "{missing}");
    let no_builder = engine
        .prepare_image(&ImageSource::Build, &meta, &progress)
        .await
        .expect_err("no builder wired");
    assert!(no_builder.to_string().contains("--image"), "{no_builder}");

    // Task definitions: register from the live ones, tags, describe, list.
    let release = engine
        .register_release(&image, &meta, None, &progress)
        .await
        .expect("register release 1");
    assert_eq!(release.number, 1);
    assert_eq!(release.revisions.len(), 3);
    let backend_arn = release
        .revision_of("backend")
        .expect("backend")
        .revision
        .clone();
    assert!(
        backend_arn.ends_with("task-definition/kaapi-staging-backend:2"),
        "{backend_arn}"
    );
    let described = clients
        .ecs
        .describe_task_definition()
        .task_definition(&backend_arn)
        .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
        .send()
        .await
        .expect("describe");
    let container = &described
        .task_definition()
        .expect("td")
        .container_definitions()[0];
    assert_eq!(container.image(), Some(image.reference.as_str()));
    assert_eq!(container.secrets().len(), 2);
    let tag = |key: &str| {
        described
            .tags()
            .iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
            .map(str::to_owned)
    };
    assert_eq!(tag("kaapi:release").as_deref(), Some("1"));
    assert_eq!(tag("kaapi:version").as_deref(), Some("v1.2.3"));
    assert_eq!(tag("kaapi:outcome").as_deref(), Some("in_progress"));

    // History from moto: list + describe + tags; recording an outcome uses TagResource.
    let fresh = EcsEngine::with_clients(
        Target::from(ResolvedEnvironment::resolve(loaded.clone(), "staging").expect("staging")),
        clients.clone(),
        tuning(),
        None,
    );
    let releases = fresh.releases().await.expect("releases");
    assert_eq!(releases.len(), 1);
    assert_eq!(releases[0].revisions.len(), 3);
    assert_eq!(releases[0].meta.version.as_deref(), Some("v1.2.3"));
    assert_eq!(fresh.current_release().await.expect("current"), None);
    fresh
        .record(1, Outcome::Succeeded, None)
        .await
        .expect("record");
    let current = engine
        .current_release()
        .await
        .expect("current")
        .expect("release 1");
    assert_eq!(current.number, 1);
    assert_eq!(current.outcome, Outcome::Succeeded);

    // RunTask/DescribeTasks with the service's network and launch type (moto exits 0).
    let exit = engine
        .run_task(
            TaskOn::Release(&release),
            "backend",
            &[
                "alembic".to_owned(),
                "upgrade".to_owned(),
                "head".to_owned(),
            ],
            &progress,
        )
        .await
        .expect("the one-off task runs");
    assert_eq!(exit.exit_code, 0, "{exit:?}");
    assert!(
        progress.contains("task is STOPPED"),
        "{:?}",
        progress.lines()
    );

    // `migrate`: a one-off revision of the live definition with an image no release carries;
    // it runs, and the history does not count it as a release.
    let unreleased = kaapi_core::release::ImageRef {
        reference: format!(
            "{}@sha256:{}",
            release
                .image
                .reference
                .split('@')
                .next()
                .unwrap_or_default(),
            "b".repeat(64)
        ),
        digest: format!("sha256:{}", "b".repeat(64)),
        tags: vec![],
    };
    let exit = engine
        .run_task(
            TaskOn::Image(&unreleased),
            "backend",
            &[
                "alembic".to_owned(),
                "upgrade".to_owned(),
                "head".to_owned(),
            ],
            &progress,
        )
        .await
        .expect("the one-off task on a new image runs");
    assert_eq!(exit.exit_code, 0, "{exit:?}");
    assert!(
        progress.contains("for the one-off task"),
        "{:?}",
        progress.lines()
    );
    let releases = engine.releases().await.expect("releases");
    assert_eq!(
        releases.iter().map(|r| r.number).collect::<Vec<_>>(),
        [1],
        "the one-off revision is not a release"
    );

    // UpdateService/DescribeServices: moto accepts and stores our request, but it never makes
    // a deployment of the new revision progress (its deployment list keeps the first one), so
    // the rollout can only end as a failure here; the outcome itself is the scenario tests'.
    let outcome = engine
        .roll_out(&release, &progress)
        .await
        .expect("rollout ran");
    assert!(
        matches!(outcome, RolloutOutcome::Failed { .. }),
        "{outcome:?}"
    );
    assert!(progress.contains("backend: rolling out kaapi-staging-backend:2"));
    let names: Vec<String> = SERVICES.iter().map(|(_, s, _)| (*s).to_owned()).collect();
    let live = clients
        .ecs
        .describe_services()
        .cluster(CLUSTER)
        .set_services(Some(names))
        .send()
        .await
        .expect("describe services");
    for service in live.services() {
        let key = SERVICES
            .iter()
            .find(|(_, s, _)| Some(*s) == service.service_name())
            .map(|(k, _, _)| *k)
            .expect("known service");
        assert_eq!(
            service.task_definition(),
            Some(
                release
                    .revision_of(key)
                    .expect("revision")
                    .revision
                    .as_str()
            )
        );
        let breaker = service
            .deployment_configuration()
            .and_then(|c| c.deployment_circuit_breaker())
            .expect("circuit breaker set");
        assert!(breaker.enable() && breaker.rollback());
    }

    // CloudWatch Logs: the deploy created the services' missing groups; lines across them.
    let group = "/ecs/kaapi-staging-cluster/kaapi-staging-worker-service";
    let groups = clients
        .logs
        .describe_log_groups()
        .log_group_name_prefix("/ecs/kaapi-staging-cluster/")
        .send()
        .await
        .expect("log groups");
    assert_eq!(groups.log_groups().len(), 3, "{groups:?}");
    assert!(groups
        .log_groups()
        .iter()
        .any(|g| g.log_group_name() == Some(group)));
    clients
        .logs
        .create_log_stream()
        .log_group_name(group)
        .log_stream_name("worker/worker/0123456789abcdef")
        .send()
        .await
        .expect("log stream");
    let now = Utc::now().timestamp_millis();
    clients
        .logs
        .put_log_events()
        .log_group_name(group)
        .log_stream_name("worker/worker/0123456789abcdef")
        .log_events(
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(now - 2000)
                .message("celery@worker ready.")
                .build()
                .expect("event"),
        )
        .log_events(
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(now - 1000)
                .message("Task app.tasks.send_email succeeded")
                .build()
                .expect("event"),
        )
        .send()
        .await
        .expect("put log events");
    let lines = Mutex::new(Vec::new());
    engine
        .logs(
            &LogQuery {
                service: None,
                since: Some(Duration::from_secs(3600)),
                follow: false,
            },
            &|line| lines.lock().expect("lines").push(line),
        )
        .await
        .expect("logs");
    let lines = lines.into_inner().expect("lines");
    let text: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l.source.as_str(), l.line.as_str()))
        .collect();
    assert_eq!(
        text,
        [
            ("worker/0123456789ab", "celery@worker ready."),
            ("worker/0123456789ab", "Task app.tasks.send_email succeeded"),
        ]
    );

    // Status: services, deployments, events; metrics where moto has them.
    let status = engine.status().await.expect("status");
    assert_eq!(status.engine, "ecs");
    assert_eq!(status.services.len(), 3);
    let backend = &status.services[0];
    assert_eq!(backend.service, "backend");
    assert_eq!(backend.desired, 1);
    assert!(
        backend
            .rollout
            .as_deref()
            .is_some_and(|r| r.starts_with("PRIMARY IN_PROGRESS kaapi-staging-backend:")),
        "{:?}",
        backend.rollout
    );
    drop(moto);
}
