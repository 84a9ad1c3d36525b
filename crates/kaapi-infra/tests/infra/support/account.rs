//! A test deploy.toml and a complete AWS account for it, created through the SDK, with any one
//! prerequisite left out.

use std::path::Path;

use kaapi_core::config::ResolvedEnvironment;
use kaapi_infra::names::InfraNames;
use kaapi_infra::policy::{self, Scope};

use super::moto::{ACCOUNT, REGION};

pub const ENVIRONMENT: &str = "staging";
pub const REPOSITORY: &str = "kaapi-org/kaapi-backend";

/// The Kaapi-shaped test config, with a deploy role per environment.
pub fn config_text() -> String {
    let roles = ["kaapi-staging-deploy", "kaapi-production-deploy"];
    kaapi_infra::conformance::kaapi_config(REGION, ACCOUNT, roles)
}

/// The test config written to `dir`, bound to its ECS environment.
pub fn write_config(dir: &Path) -> ResolvedEnvironment {
    let path = dir.join("deploy.toml");
    std::fs::write(&path, config_text()).expect("write deploy.toml");
    resolve(&path, ENVIRONMENT)
}

/// `environment` of the config at `path`.
pub fn resolve(path: &Path, environment: &str) -> ResolvedEnvironment {
    let loaded = kaapi_core::config::load(path).expect("the test config is valid");
    ResolvedEnvironment::resolve(loaded, environment).expect("the test environment")
}

/// One prerequisite of the complete account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Cluster,
    Repository,
    TaskDefinition(&'static str),
    Service(&'static str),
    LogGroup(&'static str),
    LockTable,
    ExecutionRole,
    TaskRole,
    OidcProvider,
    DeployRole,
    Database,
    Cache,
    Broker,
    Secret(&'static str),
}

pub const SERVICES: [&str; 2] = ["web", "worker"];
pub const SECRETS: [&str; 2] = ["SECRET_KEY", "FIRST_SUPERUSER_PASSWORD"];

pub fn all_parts() -> Vec<Part> {
    let mut parts = vec![Part::Cluster, Part::Repository];
    parts.extend(SERVICES.map(Part::TaskDefinition));
    parts.extend(SERVICES.map(Part::Service));
    parts.extend(SERVICES.map(Part::LogGroup));
    parts.extend([
        Part::LockTable,
        Part::ExecutionRole,
        Part::TaskRole,
        Part::OidcProvider,
        Part::DeployRole,
        Part::Database,
        Part::Cache,
        Part::Broker,
    ]);
    parts.extend(SECRETS.map(Part::Secret));
    parts
}

/// The check item's name for a part, as `kaapi_infra::preflight` writes it.
pub fn item_name(names: &InfraNames, part: Part) -> String {
    let service = |s: &str| {
        names
            .services
            .get(s)
            .expect("service of the test config")
            .clone()
    };
    match part {
        Part::Cluster => format!("cluster {}", names.cluster),
        Part::Repository => format!("repository {}", names.repository),
        Part::TaskDefinition(s) => format!("task definition {}", service(s).family),
        Part::Service(s) => format!("service {}", service(s).service),
        Part::LogGroup(s) => format!("log group {}", service(s).log_group),
        Part::LockTable => format!("deploy lock table {}", names.lock_table),
        Part::ExecutionRole => format!("execution role {}", names.execution_role),
        Part::TaskRole => format!("task role {}", names.task_role),
        Part::OidcProvider => "OIDC provider token.actions.githubusercontent.com".to_owned(),
        Part::DeployRole => format!(
            "deploy role {}",
            names
                .deploy_role
                .as_deref()
                .expect("role_arn in the test config")
        ),
        Part::Database => format!(
            "database {}",
            names.database.as_deref().expect("uses Postgres")
        ),
        Part::Cache => format!("cache {}", names.cache.as_deref().expect("uses Redis")),
        Part::Broker => format!("broker {}", names.broker.as_deref().expect("uses RabbitMQ")),
        Part::Secret(s) => format!("secret /kaapi/staging/{s}"),
    }
}

pub struct Account<'a> {
    pub target: &'a ResolvedEnvironment,
    pub aws: &'a aws_config::SdkConfig,
}

impl Account<'_> {
    fn names(&self) -> InfraNames {
        InfraNames::new(self.target)
    }

    /// Creates every prerequisite except `skip`.
    pub async fn create(&self, skip: Option<Part>) {
        let names = self.names();
        let wanted = |part: Part| skip != Some(part);
        let ecs = aws_sdk_ecs::Client::new(self.aws);
        let iam = aws_sdk_iam::Client::new(self.aws);
        let ecs_trust = policy::ecs_tasks_trust_policy().to_string();
        if wanted(Part::Cluster) {
            ecs.create_cluster()
                .cluster_name(&names.cluster)
                .send()
                .await
                .expect("create cluster");
        }
        if wanted(Part::Repository) {
            self.create_repository(true, true).await;
        }
        if wanted(Part::LockTable) {
            kaapi_testkit::moto::create_lock_table(self.aws, &names.lock_table).await;
        }
        for (role, part) in [
            (&names.execution_role, Part::ExecutionRole),
            (&names.task_role, Part::TaskRole),
        ] {
            if wanted(part) {
                iam.create_role()
                    .role_name(role)
                    .assume_role_policy_document(&ecs_trust)
                    .send()
                    .await
                    .expect("create task role");
            }
        }
        if wanted(Part::TaskRole) {
            // What the template's EnableExecuteCommand=true gives the task role.
            self.put_exec_policy(&policy::exec_task_role_policy()).await;
        }
        for service in SERVICES {
            let service_names = &names.services[service];
            if wanted(Part::LogGroup(service)) {
                aws_sdk_cloudwatchlogs::Client::new(self.aws)
                    .create_log_group()
                    .log_group_name(&service_names.log_group)
                    .send()
                    .await
                    .expect("create log group");
            }
            if wanted(Part::TaskDefinition(service)) || wanted(Part::Service(service)) {
                let container = aws_sdk_ecs::types::ContainerDefinition::builder()
                    .name(service)
                    .image(format!(
                        "{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{}:abc",
                        names.repository
                    ))
                    .memory(512)
                    .build();
                ecs.register_task_definition()
                    .family(&service_names.family)
                    .container_definitions(container)
                    .send()
                    .await
                    .expect("register task definition");
            }
            if wanted(Part::Service(service)) && wanted(Part::Cluster) {
                self.create_service(service, true).await;
            }
            if !wanted(Part::TaskDefinition(service)) {
                // The service keeps the revision it runs; the family has no active one left.
                ecs.deregister_task_definition()
                    .task_definition(format!("{}:1", service_names.family))
                    .send()
                    .await
                    .expect("deregister task definition");
            }
        }
        if wanted(Part::OidcProvider) {
            iam.create_open_id_connect_provider()
                .url("https://token.actions.githubusercontent.com")
                .client_id_list("sts.amazonaws.com")
                .thumbprint_list("6938fd4d98bab03faadb97b34396831e3780aea1")
                .send()
                .await
                .expect("create OIDC provider");
        }
        if wanted(Part::DeployRole) {
            let trust = policy::trust_policy(self.target, REPOSITORY, &Scope::new(REGION, ACCOUNT))
                .expect("trust policy");
            self.create_deploy_role(&trust.to_string()).await;
        }
        if wanted(Part::Database) {
            aws_sdk_rds::Client::new(self.aws)
                .create_db_instance()
                .db_instance_identifier(names.database.as_deref().expect("database"))
                .engine("postgres")
                .db_instance_class("db.t4g.micro")
                .allocated_storage(20)
                .master_username("postgres")
                .master_user_password("not-a-real-password-1")
                .send()
                .await
                .expect("create database");
        }
        if wanted(Part::Cache) {
            aws_sdk_elasticache::Client::new(self.aws)
                .create_cache_cluster()
                .cache_cluster_id(names.cache.as_deref().expect("cache"))
                .engine("redis")
                .cache_node_type("cache.t4g.micro")
                .num_cache_nodes(1)
                .send()
                .await
                .expect("create cache cluster");
        }
        if wanted(Part::Broker) {
            let user = aws_sdk_mq::types::User::builder()
                .username("kaapi")
                .password("not-a-real-password-2")
                .build();
            aws_sdk_mq::Client::new(self.aws)
                .create_broker()
                .broker_name(names.broker.as_deref().expect("broker"))
                .engine_type(aws_sdk_mq::types::EngineType::Rabbitmq)
                .engine_version("3.13")
                .host_instance_type("mq.t3.micro")
                .deployment_mode(aws_sdk_mq::types::DeploymentMode::SingleInstance)
                .publicly_accessible(false)
                .auto_minor_version_upgrade(true)
                .users(user)
                .send()
                .await
                .expect("create broker");
        }
        let ssm = aws_sdk_ssm::Client::new(self.aws);
        for secret in SECRETS {
            if wanted(Part::Secret(secret)) {
                ssm.put_parameter()
                    .name(format!("/kaapi/staging/{secret}"))
                    .value("fixture-value")
                    .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                    .send()
                    .await
                    .expect("put secret parameter");
            }
        }
    }

    /// The deploy lock's table, as `infra template` declares it.
    pub async fn create_repository(&self, immutable: bool, scan: bool) {
        use aws_sdk_ecr::types::{ImageScanningConfiguration, ImageTagMutability};
        aws_sdk_ecr::Client::new(self.aws)
            .create_repository()
            .repository_name(self.names().repository)
            .image_tag_mutability(if immutable {
                ImageTagMutability::Immutable
            } else {
                ImageTagMutability::Mutable
            })
            .image_scanning_configuration(
                ImageScanningConfiguration::builder()
                    .scan_on_push(scan)
                    .build(),
            )
            .send()
            .await
            .expect("create repository");
    }

    /// The task role's ECS Exec inline policy, replaced by `document`.
    pub async fn put_exec_policy(&self, document: &serde_json::Value) {
        aws_sdk_iam::Client::new(self.aws)
            .put_role_policy()
            .role_name(&self.names().task_role)
            .policy_name(kaapi_infra::ecs_exec::TASK_ROLE_POLICY_NAME)
            .policy_document(document.to_string())
            .send()
            .await
            .expect("put the task role's exec policy");
    }

    pub async fn create_service(&self, service: &str, circuit_breaker: bool) {
        use aws_sdk_ecs::types::{DeploymentCircuitBreaker, DeploymentConfiguration};
        let names = self.names();
        let breaker = DeploymentCircuitBreaker::builder()
            .enable(circuit_breaker)
            .rollback(circuit_breaker)
            .build();
        aws_sdk_ecs::Client::new(self.aws)
            .create_service()
            .cluster(&names.cluster)
            .service_name(&names.services[service].service)
            .task_definition(format!("{}:1", names.services[service].family))
            .desired_count(1)
            .enable_execute_command(true)
            .deployment_configuration(
                DeploymentConfiguration::builder()
                    .deployment_circuit_breaker(breaker)
                    .build(),
            )
            .send()
            .await
            .expect("create service");
    }

    pub async fn create_deploy_role(&self, trust: &str) {
        aws_sdk_iam::Client::new(self.aws)
            .create_role()
            .role_name(self.names().deploy_role.expect("deploy role"))
            .assume_role_policy_document(trust)
            .send()
            .await
            .expect("create deploy role");
    }
}
