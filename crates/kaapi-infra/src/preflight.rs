//! `kaapi-deploy check` on an ECS environment: does every AWS resource a deploy needs exist and
//! look right? One [`CheckItem`] per resource, with the command or template that fixes it.
//! Secrets are looked up by name only, except the keys of a JSON secret, which can only be
//! listed by reading it (`secretsmanager:GetSecretValue`); no value is ever printed.

use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};
use kaapi_aws::AwsError;
use kaapi_core::config::{EngineKind, ResolvedEnvironment};
use serde::Serialize;
use serde_json::Value;

use crate::ecs_exec;
use crate::github_claims::{self, JobClaims};
use crate::iam_eval::{self, Request};
use crate::names::{InfraNames, SecretStore, GITHUB_OIDC_HOST};
use crate::policy::{self, Scope};
use crate::trust;

pub const ECS_TASKS_SERVICE: &str = "ecs-tasks.amazonaws.com";
pub const OIDC_AUDIENCE: &str = "sts.amazonaws.com";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Missing,
    Warning,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Missing => "missing",
            Status::Warning => "warning",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckItem {
    /// What was checked, with the resource's name, e.g. `cluster kaapi-staging-cluster`.
    pub name: String,
    pub status: Status,
    pub detail: String,
    /// The command (or template) that fixes a missing item or a warning.
    pub fix: Option<String>,
}

impl CheckItem {
    pub(crate) fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    pub(crate) fn missing(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            status: Status::Missing,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    pub(crate) fn warning(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            status: Status::Warning,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// One line per item (`ok`, `missing`, `warning`), with the fix indented below.
pub fn render(items: &[CheckItem]) -> String {
    let mut out = String::new();
    for item in items {
        out.push_str(&format!(
            "{:<8} {}: {}\n",
            item.status.as_str(),
            item.name,
            item.detail
        ));
        if let Some(fix) = &item.fix {
            out.push_str(&format!("         fix: {fix}\n"));
        }
    }
    out
}

pub fn any_missing(items: &[CheckItem]) -> bool {
    items.iter().any(|i| i.status == Status::Missing)
}

/// 1 when anything is missing (the deploy would fail), else 0; warnings do not fail.
pub fn exit_code(items: &[CheckItem]) -> u8 {
    u8::from(any_missing(items))
}

/// Extra knowledge the check cannot read from the config.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// This repository as `OWNER/REPO`; the deploy role's trust must name it.
    pub repository: Option<String>,
}

/// Every prerequisite of `target`'s environment when it runs on ECS (a docker environment has
/// none: the result is empty). The repository the deploy role must trust comes from
/// `GITHUB_REPOSITORY` or the git remote.
pub async fn check_prerequisites(
    target: &ResolvedEnvironment,
    aws: &aws_config::SdkConfig,
) -> Vec<CheckItem> {
    let options = CheckOptions {
        repository: crate::repository::detect(target.dir()),
    };
    check_prerequisites_with(target, aws, &options).await
}

pub async fn check_prerequisites_with(
    target: &ResolvedEnvironment,
    aws: &aws_config::SdkConfig,
    options: &CheckOptions,
) -> Vec<CheckItem> {
    if target.env().engine != EngineKind::Ecs {
        return Vec::new();
    }
    let checker = Checker {
        target: target.clone(),
        names: InfraNames::new(target),
        options: options.clone(),
        ecs: aws_sdk_ecs::Client::new(aws),
        ecr: aws_sdk_ecr::Client::new(aws),
        logs: aws_sdk_cloudwatchlogs::Client::new(aws),
        iam: aws_sdk_iam::Client::new(aws),
        rds: aws_sdk_rds::Client::new(aws),
        elasticache: aws_sdk_elasticache::Client::new(aws),
        mq: aws_sdk_mq::Client::new(aws),
        ssm: aws_sdk_ssm::Client::new(aws),
        dynamodb: aws_sdk_dynamodb::Client::new(aws),
        secretsmanager: aws_sdk_secretsmanager::Client::new(aws),
    };
    checker.run().await
}

struct Checker {
    target: ResolvedEnvironment,
    names: InfraNames,
    options: CheckOptions,
    ecs: aws_sdk_ecs::Client,
    ecr: aws_sdk_ecr::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    iam: aws_sdk_iam::Client,
    rds: aws_sdk_rds::Client,
    elasticache: aws_sdk_elasticache::Client,
    mq: aws_sdk_mq::Client,
    ssm: aws_sdk_ssm::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    secretsmanager: aws_sdk_secretsmanager::Client,
}

/// Error codes AWS (and moto) answer for "no such resource".
const NOT_FOUND_CODES: &[&str] = &[
    "NoSuchEntity",
    "RepositoryNotFoundException",
    "ResourceNotFoundException",
    "DBInstanceNotFound",
    "DBInstanceNotFoundFault",
    "CacheClusterNotFound",
    "CacheClusterNotFoundFault",
    "ReplicationGroupNotFoundFault",
    "NotFoundException",
    "ParameterNotFound",
];

enum Lookup<T> {
    Found(T),
    NotFound,
    /// The call failed for another reason (credentials, permissions, network).
    Failed(String),
}

fn classify<T, E, R>(result: Result<T, SdkError<E, R>>) -> Lookup<T>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match result {
        Ok(value) => Lookup::Found(value),
        Err(e) if e.code().is_some_and(|c| NOT_FOUND_CODES.contains(&c)) => Lookup::NotFound,
        Err(e) => Lookup::Failed(describe_error(&e)),
    }
}

/// One line: `Code: message` when AWS answered, else what kept the call from AWS (no
/// credentials, no network) with what to do; never the SDK's whole error chain.
fn describe_error<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let error = AwsError::from_sdk("AWS", e);
    if error.is_access() {
        error.to_string()
    } else {
        kaapi_aws::error::said(e)
    }
}

/// The keys of a JSON-object secret; the reason (never the value) when it is not one.
fn json_keys(value: Option<&str>) -> Result<Vec<String>, String> {
    let text = value.ok_or("the secret holds binary data, not a JSON object")?;
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map.keys().cloned().collect()),
        // serde_json's message names a line and column, never the text.
        Ok(_) => Err("the secret's value is JSON but not an object of keys".to_owned()),
        Err(e) => Err(format!("the secret's value is not JSON ({e})")),
    }
}

fn cannot_check(name: &str, error: &str) -> CheckItem {
    CheckItem::missing(
        name,
        format!("could not be checked: {error}"),
        "check the AWS credentials, region and the permissions of `kaapi-deploy infra policy`",
    )
}

/// The item of one ECS service, from what DescribeServices said about it (None: absent).
fn service_item(
    service: &str,
    cluster: &str,
    found: Option<&aws_sdk_ecs::types::Service>,
    template_fix: &str,
    region_flag: &str,
) -> CheckItem {
    let name = format!("service {service}");
    let Some(svc) = found else {
        return CheckItem::missing(
            name,
            format!("does not exist in cluster {cluster}"),
            template_fix,
        );
    };
    if svc.status() != Some("ACTIVE") {
        return CheckItem::missing(
            name,
            format!("status {} (not ACTIVE)", svc.status().unwrap_or("unknown")),
            template_fix,
        );
    }
    let breaker = svc
        .deployment_configuration()
        .and_then(|d| d.deployment_circuit_breaker());
    let breaker_fix = format!(
        "aws ecs update-service --cluster {cluster} --service {service} --deployment-configuration 'deploymentCircuitBreaker={{enable=true,rollback=true}}'{region_flag}"
    );
    match breaker {
        Some(b) if b.enable() && b.rollback() => {
            CheckItem::ok(name, "ACTIVE, circuit breaker with rollback")
        }
        Some(b) if b.enable() => CheckItem::warning(
            name,
            "ACTIVE, circuit breaker on without rollback",
            breaker_fix,
        ),
        _ => CheckItem::warning(
            name,
            "ACTIVE, but the deployment circuit breaker is off (a failing rollout never stops)",
            breaker_fix,
        ),
    }
}

impl Checker {
    fn region_flag(&self) -> String {
        self.names
            .region
            .as_ref()
            .map(|r| format!(" --region {r}"))
            .unwrap_or_default()
    }

    fn template_fix(&self) -> String {
        format!(
            "kaapi-deploy infra template {} (CloudFormation creates it)",
            self.names.environment
        )
    }

    async fn run(&self) -> Vec<CheckItem> {
        let mut items = vec![self.cluster().await, self.repository().await];
        let (definitions, passed_roles) = self.task_definitions().await;
        items.extend(definitions);
        items.extend(self.passed_roles(&passed_roles));
        let (services, live) = self.services().await;
        items.extend(services);
        items.extend(self.log_groups().await);
        items.push(self.lock_table().await);
        items.push(
            self.task_role(&self.names.execution_role, "execution role")
                .await,
        );
        let task_role = self.task_role(&self.names.task_role, "task role").await;
        // A missing task role is reported once, not again as missing ECS Exec permissions.
        let task_role_exists = task_role.status != Status::Missing;
        items.push(task_role);
        items.extend(self.ecs_exec(&live, task_role_exists).await);
        let provider = self.oidc_provider().await;
        items.push(provider);
        items.push(self.deploy_role().await);
        if let Some(id) = &self.names.database {
            items.push(self.database(id).await);
        }
        if let Some(id) = &self.names.cache {
            items.push(self.cache(id).await);
        }
        if let Some(id) = &self.names.broker {
            items.push(self.broker(id).await);
        }
        items.extend(self.secrets().await);
        items
    }

    async fn cluster(&self) -> CheckItem {
        let cluster = &self.names.cluster;
        let name = format!("cluster {cluster}");
        let fix = format!(
            "aws ecs create-cluster --cluster-name {cluster}{}",
            self.region_flag()
        );
        match classify(self.ecs.describe_clusters().clusters(cluster).send().await) {
            Lookup::Found(out) => match out
                .clusters()
                .iter()
                .find(|c| c.cluster_name() == Some(cluster))
            {
                Some(c) if c.status() == Some("ACTIVE") => CheckItem::ok(name, "ACTIVE"),
                Some(c) => CheckItem::missing(
                    name,
                    format!("status {} (not ACTIVE)", c.status().unwrap_or("unknown")),
                    fix,
                ),
                None => CheckItem::missing(name, "does not exist", fix),
            },
            Lookup::NotFound => CheckItem::missing(name, "does not exist", fix),
            Lookup::Failed(e) => cannot_check(&name, &e),
        }
    }

    async fn repository(&self) -> CheckItem {
        let repo = &self.names.repository;
        let name = format!("repository {repo}");
        let region = self.region_flag();
        let create = format!(
            "aws ecr create-repository --repository-name {repo} --image-tag-mutability IMMUTABLE --image-scanning-configuration scanOnPush=true{region}"
        );
        let found = match classify(
            self.ecr
                .describe_repositories()
                .repository_names(repo)
                .send()
                .await,
        ) {
            Lookup::Found(out) => out.repositories().first().cloned(),
            Lookup::NotFound => None,
            Lookup::Failed(e) => return cannot_check(&name, &e),
        };
        let Some(found) = found else {
            return CheckItem::missing(name, "does not exist", create);
        };
        let mutable = found
            .image_tag_mutability()
            .is_some_and(|m| m.as_str().starts_with("MUTABLE"));
        let scan = found
            .image_scanning_configuration()
            .is_some_and(|s| s.scan_on_push());
        let mut problems = Vec::new();
        let mut fixes = Vec::new();
        if mutable {
            problems.push("tags are mutable (a tag can be moved to another image)");
            fixes.push(format!(
                "aws ecr put-image-tag-mutability --repository-name {repo} --image-tag-mutability IMMUTABLE{region}"
            ));
        }
        if !scan {
            problems.push("scan on push is off");
            fixes.push(format!(
                "aws ecr put-image-scanning-configuration --repository-name {repo} --image-scanning-configuration scanOnPush=true{region}"
            ));
        }
        if problems.is_empty() {
            CheckItem::ok(name, "exists, immutable tags, scan on push")
        } else {
            CheckItem::warning(name, problems.join("; "), fixes.join(" && "))
        }
    }

    /// One item per family, and the (family, role ARN) pairs its latest revision passes to ECS:
    /// new revisions are derived from it and keep its roles.
    async fn task_definitions(&self) -> (Vec<CheckItem>, Vec<(String, String)>) {
        let mut items = Vec::new();
        let mut roles = Vec::new();
        for (service, names) in &self.names.services {
            let family = &names.family;
            let name = format!("task definition {family}");
            let fix = format!(
                "{} or register one: aws ecs register-task-definition --family {family} --cli-input-json file://{service}-task-definition.json{}",
                self.template_fix(),
                self.region_flag()
            );
            let result = self
                .ecs
                .describe_task_definition()
                .task_definition(family)
                .send()
                .await;
            items.push(match result {
                Ok(out) => match out.task_definition() {
                    // Some implementations answer with the latest revision even when inactive.
                    Some(td) if td.status().is_none_or(|s| s.as_str() == "ACTIVE") => {
                        for role in [td.execution_role_arn(), td.task_role_arn()]
                            .into_iter()
                            .flatten()
                        {
                            roles.push((family.clone(), role.to_owned()));
                        }
                        let settings = self.target.config().services.get(service);
                        match crate::task_size::problem(
                            service,
                            settings.and_then(|s| s.cpu),
                            settings.and_then(|s| s.memory),
                            td,
                        ) {
                            Some(problem) => CheckItem::missing(
                                name,
                                format!("revision {}: {problem}", td.revision()),
                                format!(
                                    "edit services.{service} in {}",
                                    self.target.path().display()
                                ),
                            ),
                            None => CheckItem::ok(name, format!("revision {}", td.revision())),
                        }
                    }
                    Some(_) => CheckItem::missing(name, "no active revision", fix),
                    None => CheckItem::missing(name, "no active revision", fix),
                },
                // ECS answers ClientException for an unknown family.
                Err(e)
                    if e.code().is_some_and(|c| {
                        c == "ClientException" || NOT_FOUND_CODES.contains(&c)
                    }) =>
                {
                    CheckItem::missing(name, "no active revision", fix)
                }
                Err(e) => cannot_check(&name, &describe_error(&e)),
            });
        }
        (items, roles)
    }

    fn passed_roles(&self, roles: &[(String, String)]) -> Vec<CheckItem> {
        passed_role_items(&self.target, &self.names, roles)
    }

    /// One item per service, and the ACTIVE services found (for the ECS Exec items).
    async fn services(&self) -> (Vec<CheckItem>, Vec<aws_sdk_ecs::types::Service>) {
        let cluster = &self.names.cluster;
        let wanted: Vec<&String> = self.names.services.values().map(|n| &n.service).collect();
        let mut found = Vec::new();
        let mut failure = None;
        for chunk in wanted.chunks(10) {
            let mut request = self.ecs.describe_services().cluster(cluster);
            for service in chunk {
                request = request.services(service.as_str());
            }
            match classify(request.send().await) {
                Lookup::Found(out) => found.extend(out.services().iter().cloned()),
                // A missing cluster makes every service missing.
                Lookup::NotFound => {}
                Lookup::Failed(e) if e.starts_with("ClusterNotFoundException") => {}
                Lookup::Failed(e) => failure = Some(e),
            }
        }
        let mut items = Vec::new();
        let mut live = Vec::new();
        for service in wanted {
            let name = format!("service {service}");
            if let Some(e) = &failure {
                items.push(cannot_check(&name, e));
                continue;
            }
            let svc = found
                .iter()
                .find(|s| s.service_name() == Some(service) && s.status() != Some("INACTIVE"));
            items.push(service_item(
                service,
                cluster,
                svc,
                &self.template_fix(),
                &self.region_flag(),
            ));
            live.extend(svc.filter(|s| s.status() == Some("ACTIVE")).cloned());
        }
        (items, live)
    }

    /// ECS Exec (`kaapi-deploy exec`): one item per live service, then the task role's and the
    /// deploy policy's permissions; nothing when no service runs yet.
    async fn ecs_exec(
        &self,
        live: &[aws_sdk_ecs::types::Service],
        task_role_exists: bool,
    ) -> Vec<CheckItem> {
        if live.is_empty() {
            return Vec::new();
        }
        let mut items: Vec<CheckItem> = live
            .iter()
            .map(|s| ecs_exec::service_item(s, &self.names.cluster, &self.region_flag()))
            .collect();
        items.push(ecs_exec::deploy_policy_item(&self.target, &self.names));
        if !task_role_exists {
            return items;
        }
        let role = &self.names.task_role;
        let read = self
            .iam
            .get_role_policy()
            .role_name(role)
            .policy_name(ecs_exec::TASK_ROLE_POLICY_NAME)
            .send()
            .await;
        let policy = match classify(read) {
            Lookup::Found(out) => ecs_exec::TaskRolePolicy::from_encoded(out.policy_document()),
            Lookup::NotFound => ecs_exec::TaskRolePolicy::Absent,
            Lookup::Failed(e) => ecs_exec::TaskRolePolicy::Unreadable(e),
        };
        let generated = self.target.env().names.task_role.is_none();
        items.push(ecs_exec::task_role_item(&self.names, generated, &policy));
        items
    }

    /// The deploy lock's DynamoDB table (kaapi-ecs `lock.rs` writes one item in it).
    async fn lock_table(&self) -> CheckItem {
        let table = &self.names.lock_table;
        let name = format!("deploy lock table {table}");
        let fix = format!(
            "{}, or aws dynamodb create-table --table-name {table} --attribute-definitions AttributeName=pk,AttributeType=S --key-schema AttributeName=pk,KeyType=HASH --billing-mode PAY_PER_REQUEST{region} && aws dynamodb update-time-to-live --table-name {table} --time-to-live-specification Enabled=true,AttributeName=purge_at{region}",
            self.template_fix(),
            region = self.region_flag()
        );
        match classify(
            self.dynamodb
                .describe_table()
                .table_name(table)
                .send()
                .await,
        ) {
            Lookup::Found(_) => CheckItem::ok(name, "exists"),
            Lookup::NotFound => CheckItem::missing(name, "does not exist", fix),
            Lookup::Failed(e) => cannot_check(&name, &e),
        }
    }

    async fn log_groups(&self) -> Vec<CheckItem> {
        let mut items = Vec::new();
        for names in self.names.services.values() {
            let group = &names.log_group;
            let name = format!("log group {group}");
            let fix = format!(
                "aws logs create-log-group --log-group-name {group}{}",
                self.region_flag()
            );
            let result = self
                .logs
                .describe_log_groups()
                .log_group_name_prefix(group)
                .send()
                .await;
            items.push(match classify(result) {
                Lookup::Found(out) => {
                    if out
                        .log_groups()
                        .iter()
                        .any(|g| g.log_group_name() == Some(group))
                    {
                        CheckItem::ok(name, "exists")
                    } else {
                        CheckItem::missing(name, "does not exist", fix)
                    }
                }
                Lookup::NotFound => CheckItem::missing(name, "does not exist", fix),
                Lookup::Failed(e) => cannot_check(&name, &e),
            });
        }
        items
    }

    async fn role_document(&self, role: &str) -> Lookup<Option<Value>> {
        match classify(self.iam.get_role().role_name(role).send().await) {
            Lookup::Found(out) => Lookup::Found(
                out.role()
                    .and_then(|r| r.assume_role_policy_document())
                    .and_then(trust::parse_document),
            ),
            Lookup::NotFound => Lookup::NotFound,
            Lookup::Failed(e) => Lookup::Failed(e),
        }
    }

    async fn task_role(&self, role: &str, what: &str) -> CheckItem {
        let name = format!("{what} {role}");
        let trust_document = format!(
            "'{{\"Version\":\"2012-10-17\",\"Statement\":[{{\"Effect\":\"Allow\",\"Principal\":{{\"Service\":\"{ECS_TASKS_SERVICE}\"}},\"Action\":\"sts:AssumeRole\"}}]}}'"
        );
        match self.role_document(role).await {
            Lookup::Found(Some(doc)) if trust::trusts_service(&doc, ECS_TASKS_SERVICE) => {
                CheckItem::ok(name, format!("exists, trusts {ECS_TASKS_SERVICE}"))
            }
            Lookup::Found(_) => CheckItem::missing(
                name,
                format!("exists but does not trust {ECS_TASKS_SERVICE}"),
                format!("aws iam update-assume-role-policy --role-name {role} --policy-document {trust_document}"),
            ),
            Lookup::NotFound => CheckItem::missing(
                name,
                "does not exist",
                format!(
                    "{} or: aws iam create-role --role-name {role} --assume-role-policy-document {trust_document}",
                    self.template_fix()
                ),
            ),
            Lookup::Failed(e) => cannot_check(&name, &e),
        }
    }

    async fn oidc_provider(&self) -> CheckItem {
        let name = format!("OIDC provider {GITHUB_OIDC_HOST}");
        let fix = format!(
            "aws iam create-open-id-connect-provider --url https://{GITHUB_OIDC_HOST} --client-id-list {OIDC_AUDIENCE}"
        );
        let suffix = format!("oidc-provider/{GITHUB_OIDC_HOST}");
        let list = match classify(self.iam.list_open_id_connect_providers().send().await) {
            Lookup::Found(out) => out,
            Lookup::NotFound => return CheckItem::missing(name, "does not exist", fix),
            Lookup::Failed(e) => return cannot_check(&name, &e),
        };
        let Some(arn) = list
            .open_id_connect_provider_list()
            .iter()
            .filter_map(|p| p.arn())
            .find(|arn| arn.ends_with(&suffix))
        else {
            return CheckItem::missing(name, "does not exist", fix);
        };
        match classify(self.iam.get_open_id_connect_provider().open_id_connect_provider_arn(arn).send().await) {
            Lookup::Found(out) if out.client_id_list().iter().any(|c| c == OIDC_AUDIENCE) => {
                CheckItem::ok(name, format!("exists, audience {OIDC_AUDIENCE}"))
            }
            Lookup::Found(_) => CheckItem::warning(
                name,
                format!("exists, but its audiences (client IDs) lack {OIDC_AUDIENCE}"),
                format!("aws iam add-client-id-to-open-id-connect-provider --open-id-connect-provider-arn {arn} --client-id {OIDC_AUDIENCE}"),
            ),
            Lookup::NotFound => CheckItem::missing(name, "does not exist", fix),
            Lookup::Failed(e) => cannot_check(&name, &e),
        }
    }

    async fn deploy_role(&self) -> CheckItem {
        let env = &self.names.environment;
        let Some(role) = &self.names.deploy_role else {
            return CheckItem::missing(
                "deploy role",
                format!("environment `{env}` has no role_arn"),
                format!("set environments.{env}.role_arn in deploy.toml to the role GitHub Actions assumes ({})", self.template_fix()),
            );
        };
        let name = format!("deploy role {role}");
        let trust_fix = format!(
            "kaapi-deploy infra policy {env} --out DIR, then aws iam update-assume-role-policy --role-name {role} --policy-document file://DIR/{env}-deploy-trust.json"
        );
        let document = match self.role_document(role).await {
            Lookup::Found(Some(doc)) => doc,
            Lookup::Found(None) => {
                return CheckItem::missing(name, "its trust policy cannot be read", trust_fix)
            }
            Lookup::NotFound => {
                return CheckItem::missing(name, "does not exist", self.template_fix())
            }
            Lookup::Failed(e) => return cannot_check(&name, &e),
        };
        let github = trust::github_trust(&document, GITHUB_OIDC_HOST);
        if !github.trusted {
            return CheckItem::missing(
                name,
                format!("does not trust the GitHub OIDC provider ({GITHUB_OIDC_HOST}) with sts:AssumeRoleWithWebIdentity"),
                trust_fix,
            );
        }
        if github.subjects.is_empty() {
            return CheckItem::warning(
                name,
                "trusts GitHub without limiting `sub`: any GitHub repository can assume it",
                trust_fix,
            );
        }
        let repository = self.options.repository.as_deref();
        let problems: Vec<String> = github
            .subjects
            .iter()
            .filter_map(|s| trust::subject_problem(s, repository))
            .collect();
        if !problems.is_empty() {
            return CheckItem::warning(name, problems.join("; "), trust_fix);
        }
        if !github.audiences.iter().any(|a| a == OIDC_AUDIENCE) {
            return CheckItem::warning(
                name,
                format!("trust does not require audience {OIDC_AUDIENCE}"),
                trust_fix,
            );
        }
        if let Some(refused) = self.refused_claims(&document, repository) {
            return CheckItem::missing(name, refused, trust_fix);
        }
        let whom = repository.map_or_else(
            || "one repository".to_owned(),
            |r| format!("repository {r}"),
        );
        CheckItem::ok(name, format!("trusts GitHub OIDC, `sub` limited to {whom}"))
    }

    /// The claims the environment's workflow sends: the committed workflow when there is one,
    /// else the one `init --github` writes.
    fn workflow_claims(&self, repository: &str) -> Result<Vec<JobClaims>, String> {
        let env = &self.names.environment;
        let committed = repo_root(self.target.dir())
            .map(|root| github_claims::committed_claims(&root, env, repository))
            .transpose()
            .map_err(|e| e.to_string())?
            .flatten();
        match committed {
            Some(claims) => Ok(claims),
            None => github_claims::generated_claims(
                self.target.config(),
                env,
                repository,
                &kaapi_ci::workflows::WorkflowOptions::default(),
            )
            .or_else(|e| match e {
                github_claims::ClaimsError::Render(
                    kaapi_ci::workflows::WorkflowError::NoTriggers,
                ) => Ok(Vec::new()),
                other => Err(other.to_string()),
            }),
        }
    }

    /// Why the trust would refuse the environment's workflow, naming the subject it sends.
    fn refused_claims(&self, document: &Value, repository: Option<&str>) -> Option<String> {
        let repository = repository?;
        let role_arn = self.names.deploy_role_arn.as_deref()?;
        let account = role_arn.split(':').nth(4)?;
        let partition = role_arn.split(':').nth(1)?;
        let provider = format!("arn:{partition}:iam::{account}:oidc-provider/{GITHUB_OIDC_HOST}");
        let claims = match self.workflow_claims(repository) {
            Ok(claims) => claims,
            Err(e) => return Some(format!("the workflow's claims cannot be derived: {e}")),
        };
        refused_subjects(document, &claims, role_arn, &provider)
    }

    async fn database(&self, id: &str) -> CheckItem {
        let name = format!("database {id}");
        let fix = format!(
            "{} with CreateDatabase=true, or: aws rds create-db-instance --db-instance-identifier {id} --engine postgres --db-instance-class db.t4g.micro --allocated-storage 20 --master-username postgres --manage-master-user-password{}",
            self.template_fix(),
            self.region_flag()
        );
        let out = match classify(
            self.rds
                .describe_db_instances()
                .db_instance_identifier(id)
                .send()
                .await,
        ) {
            Lookup::Found(out) => out,
            Lookup::NotFound => {
                return CheckItem::missing(name, "RDS instance does not exist", fix)
            }
            Lookup::Failed(e) => return cannot_check(&name, &e),
        };
        let Some(db) = out.db_instances().first() else {
            return CheckItem::missing(name, "RDS instance does not exist", fix);
        };
        let status = db.db_instance_status().unwrap_or("unknown");
        let engine = db.engine().unwrap_or("unknown");
        let start = format!(
            "aws rds start-db-instance --db-instance-identifier {id}{}",
            self.region_flag()
        );
        if !engine.contains("postgres") {
            CheckItem::warning(name, format!("engine is {engine}, not PostgreSQL"), fix)
        } else if status == "available" {
            CheckItem::ok(name, format!("{engine}, available"))
        } else if matches!(
            status,
            "stopped" | "stopping" | "failed" | "deleting" | "storage-full"
        ) || status.starts_with("inaccessible")
            || status.starts_with("incompatible")
        {
            CheckItem::missing(name, format!("status {status} (not available)"), start)
        } else {
            CheckItem::warning(
                name,
                format!("status {status} (not yet available)"),
                "wait until it is available".to_owned(),
            )
        }
    }

    async fn cache(&self, id: &str) -> CheckItem {
        let name = format!("cache {id}");
        let fix = format!(
            "{} with CreateCache=true, or: aws elasticache create-cache-cluster --cache-cluster-id {id} --engine redis --cache-node-type cache.t4g.micro --num-cache-nodes 1{}",
            self.template_fix(),
            self.region_flag()
        );
        match classify(
            self.elasticache
                .describe_cache_clusters()
                .cache_cluster_id(id)
                .send()
                .await,
        ) {
            Lookup::Found(out) if !out.cache_clusters().is_empty() => {
                let status = out.cache_clusters()[0]
                    .cache_cluster_status()
                    .unwrap_or("unknown")
                    .to_owned();
                return CheckItem::ok(name, format!("ElastiCache cluster, {status}"));
            }
            Lookup::Failed(e) => return cannot_check(&name, &e),
            _ => {}
        }
        match classify(
            self.elasticache
                .describe_replication_groups()
                .replication_group_id(id)
                .send()
                .await,
        ) {
            Lookup::Found(out) if !out.replication_groups().is_empty() => {
                let status = out.replication_groups()[0]
                    .status()
                    .unwrap_or("unknown")
                    .to_owned();
                CheckItem::ok(name, format!("ElastiCache replication group, {status}"))
            }
            Lookup::Failed(e) => cannot_check(&name, &e),
            _ => CheckItem::missing(
                name,
                "no ElastiCache cluster or replication group of that id",
                fix,
            ),
        }
    }

    async fn broker(&self, id: &str) -> CheckItem {
        let name = format!("broker {id}");
        let fix = format!(
            "{} with CreateBroker=true (Amazon MQ for RabbitMQ)",
            self.template_fix()
        );
        let mut next: Option<String> = None;
        loop {
            let result = self
                .mq
                .list_brokers()
                .set_next_token(next.clone())
                .send()
                .await;
            let out = match classify(result) {
                Lookup::Found(out) => out,
                Lookup::NotFound => break,
                Lookup::Failed(e) => return cannot_check(&name, &e),
            };
            if let Some(b) = out
                .broker_summaries()
                .iter()
                .find(|b| b.broker_name() == Some(id) || b.broker_id() == Some(id))
            {
                let state = b
                    .broker_state()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default();
                return match state.as_str() {
                    "RUNNING" => CheckItem::ok(name, "Amazon MQ broker, RUNNING"),
                    "DELETION_IN_PROGRESS" | "CRITICAL_ACTION_REQUIRED" => {
                        CheckItem::missing(name, format!("state {state}"), fix)
                    }
                    _ => CheckItem::warning(
                        name,
                        format!("state {state} (not yet RUNNING)"),
                        "wait until it is RUNNING",
                    ),
                };
            }
            next = out.next_token().map(str::to_owned);
            if next.is_none() {
                break;
            }
        }
        CheckItem::missing(name, "no Amazon MQ broker of that name or id", fix)
    }

    async fn secrets(&self) -> Vec<CheckItem> {
        if self.names.secrets.is_empty() {
            return Vec::new();
        }
        let env = &self.names.environment;
        let push = format!("kaapi-deploy secrets push {env} --from FILE");
        let Some(store) = &self.names.secret_store else {
            return vec![CheckItem::missing(
                "secret store",
                format!("the config lists secrets but environment `{env}` has no secrets_from.ssm or secrets_from.secrets_manager"),
                format!("set environments.{env}.secrets_from.ssm = \"/{}/\" in deploy.toml, then {push}", self.names.stem),
            )];
        };
        match store {
            SecretStore::Ssm { .. } => self.ssm_secrets(store, &push).await,
            SecretStore::SecretsManager { .. } => self.secrets_manager_secrets(store, &push).await,
            SecretStore::SecretsManagerJson { secret } => self.json_secret_keys(secret).await,
        }
    }

    async fn ssm_secrets(&self, store: &SecretStore, push: &str) -> Vec<CheckItem> {
        let wanted: Vec<String> = self
            .names
            .secrets
            .iter()
            .map(|s| store.name_of(s))
            .collect();
        let mut items = Vec::new();
        for chunk in wanted.chunks(10) {
            // Without decryption a SecureString comes back encrypted; only names and types are used.
            let result = self
                .ssm
                .get_parameters()
                .set_names(Some(chunk.to_vec()))
                .with_decryption(false)
                .send()
                .await;
            let out = match classify(result) {
                Lookup::Found(out) => out,
                Lookup::NotFound => {
                    items.extend(chunk.iter().map(|n| {
                        CheckItem::missing(
                            format!("secret {n}"),
                            "SSM parameter does not exist",
                            push,
                        )
                    }));
                    continue;
                }
                Lookup::Failed(e) => {
                    items.extend(
                        chunk
                            .iter()
                            .map(|n| cannot_check(&format!("secret {n}"), &e)),
                    );
                    continue;
                }
            };
            for parameter_name in chunk {
                let name = format!("secret {parameter_name}");
                match out
                    .parameters()
                    .iter()
                    .find(|p| p.name() == Some(parameter_name))
                {
                    Some(p) if p.r#type().is_some_and(|t| t.as_str() == "SecureString") => {
                        items.push(CheckItem::ok(name, "SSM SecureString parameter exists"));
                    }
                    Some(p) => items.push(CheckItem::warning(
                        name,
                        format!(
                            "SSM parameter exists but is {} (not encrypted)",
                            p.r#type().map(|t| t.as_str()).unwrap_or("unknown")
                        ),
                        push,
                    )),
                    None => items.push(CheckItem::missing(
                        name,
                        "SSM parameter does not exist",
                        push,
                    )),
                }
            }
        }
        items
    }

    /// Every secret is a key of one JSON secret: the keys can only be listed by reading the
    /// value (`secretsmanager:GetSecretValue`); values are dropped unread and never printed.
    async fn json_secret_keys(&self, secret: &str) -> Vec<CheckItem> {
        let name = format!("secret {secret}");
        let fix = format!(
            "add the key to the JSON object of `{secret}` (aws secretsmanager put-secret-value --secret-id {secret} --secret-string file://secret.json, keeping the other keys)"
        );
        let result = self
            .secretsmanager
            .get_secret_value()
            .secret_id(secret)
            .send()
            .await;
        let keys = match classify(result) {
            Lookup::Found(out) => json_keys(out.secret_string()),
            Lookup::NotFound => {
                return vec![CheckItem::missing(
                    name,
                    "Secrets Manager secret does not exist",
                    format!("aws secretsmanager create-secret --name {secret} --secret-string file://secret.json (a JSON object with one key per secret)"),
                )]
            }
            Lookup::Failed(e) => return vec![cannot_check(&name, &e)],
        };
        let keys = match keys {
            Ok(keys) => keys,
            Err(reason) => return vec![CheckItem::missing(name, reason, fix)],
        };
        self.names
            .secrets
            .iter()
            .map(|key| {
                let item = format!("secret {secret}:{key}");
                if keys.iter().any(|k| k == key) {
                    CheckItem::ok(item, "key present in the JSON secret")
                } else {
                    CheckItem::missing(
                        item,
                        format!("key `{key}` is not in the JSON secret `{secret}`"),
                        &fix,
                    )
                }
            })
            .collect()
    }

    async fn secrets_manager_secrets(&self, store: &SecretStore, push: &str) -> Vec<CheckItem> {
        let mut items = Vec::new();
        for secret in &self.names.secrets {
            let id = store.name_of(secret);
            let name = format!("secret {id}");
            let result = self
                .secretsmanager
                .describe_secret()
                .secret_id(&id)
                .send()
                .await;
            items.push(match classify(result) {
                Lookup::Found(out) if out.deleted_date().is_none() => {
                    CheckItem::ok(name, "Secrets Manager secret exists")
                }
                Lookup::Found(_) => CheckItem::missing(
                    name,
                    "Secrets Manager secret is scheduled for deletion",
                    format!("aws secretsmanager restore-secret --secret-id {id}"),
                ),
                Lookup::NotFound => {
                    CheckItem::missing(name, "Secrets Manager secret does not exist", push)
                }
                Lookup::Failed(e) => cannot_check(&name, &e),
            });
        }
        items
    }
}

/// Why the trust `document` of `role_arn` refuses some of `claims`, naming each refused `sub`.
fn refused_subjects(
    document: &Value,
    claims: &[JobClaims],
    role_arn: &str,
    provider: &str,
) -> Option<String> {
    let refused: Vec<String> = claims
        .iter()
        .filter(|c| {
            !iam_eval::evaluate(document, &c.request(role_arn, provider))
                .is_ok_and(|d| d.is_allowed())
        })
        .map(|c| format!("`{}` (aud {}, from {})", c.sub, c.aud, c.job))
        .collect();
    (!refused.is_empty()).then(|| {
        format!(
            "its trust refuses the token GitHub sends the deploy workflow: sub {}",
            refused.join(", ")
        )
    })
}

/// A role a new revision would carry (the live revisions' `(family, role ARN)` pairs) but the
/// policy of `infra policy` does not let the deploy pass: its RegisterTaskDefinition would be
/// denied.
fn passed_role_items(
    target: &ResolvedEnvironment,
    names: &InfraNames,
    roles: &[(String, String)],
) -> Vec<CheckItem> {
    let env = &names.environment;
    let mut items: Vec<CheckItem> = Vec::new();
    for (family, role) in roles {
        let name = format!("role {role}");
        if items.iter().any(|i| i.name == name) {
            continue;
        }
        let Some(account) = role.split(':').nth(4).filter(|a| !a.is_empty()) else {
            continue;
        };
        let scope = Scope::new(names.region.as_deref().unwrap_or("us-east-1"), account);
        let policy = policy::deploy_policy(target, &scope);
        let request =
            Request::new("iam:PassRole", role).with("iam:PassedToService", &[ECS_TASKS_SERVICE]);
        if iam_eval::evaluate(&policy, &request).is_ok_and(|d| d.is_allowed()) {
            continue;
        }
        let deploy_role = names.deploy_role.as_deref().unwrap_or("DEPLOY_ROLE");
        let document = serde_json::json!({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": "iam:PassRole", "Resource": role,
                "Condition": {"StringEquals": {"iam:PassedToService": ECS_TASKS_SERVICE}}}]});
        items.push(CheckItem::missing(
                name,
                format!("task definition {family} runs with it, so the deploy passes it (iam:PassRole) to every new revision, but the policy of `kaapi-deploy infra policy {env}` does not allow passing it"),
                format!("aws iam put-role-policy --role-name {deploy_role} --policy-name pass-live-task-roles --policy-document '{document}', or set names.execution_role / names.task_role in deploy.toml to the role"),
            ));
    }
    items
}

/// The git repository `dir` belongs to: the nearest ancestor with a `.git`.
fn repo_root(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .map(std::path::Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::{DeploymentCircuitBreaker, DeploymentConfiguration, Service};

    fn service(status: &str, breaker: Option<(bool, bool)>) -> Service {
        let mut config = DeploymentConfiguration::builder();
        if let Some((enable, rollback)) = breaker {
            config = config.deployment_circuit_breaker(
                DeploymentCircuitBreaker::builder()
                    .enable(enable)
                    .rollback(rollback)
                    .build(),
            );
        }
        Service::builder()
            .service_name("s")
            .status(status)
            .deployment_configuration(config.build())
            .build()
    }

    fn status_of(found: Option<&Service>) -> Status {
        service_item("s", "c", found, "template", "").status
    }

    #[test]
    fn services_need_active_status_and_a_circuit_breaker_with_rollback() {
        assert_eq!(status_of(None), Status::Missing);
        assert_eq!(
            status_of(Some(&service("DRAINING", Some((true, true))))),
            Status::Missing
        );
        assert_eq!(
            status_of(Some(&service("ACTIVE", Some((true, true))))),
            Status::Ok
        );
        assert_eq!(
            status_of(Some(&service("ACTIVE", Some((true, false))))),
            Status::Warning
        );
        assert_eq!(
            status_of(Some(&service("ACTIVE", Some((false, false))))),
            Status::Warning
        );
        assert_eq!(status_of(Some(&service("ACTIVE", None))), Status::Warning);
        let item = service_item("s", "c", Some(&service("ACTIVE", None)), "t", " --region r");
        assert!(item.fix.as_deref().is_some_and(|f| f
            .contains("deploymentCircuitBreaker={enable=true,rollback=true}")
            && f.ends_with("--region r")));
    }

    #[test]
    fn a_live_role_the_policy_cannot_pass_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (loaded, _) = crate::conformance::configs(dir.path()).remove(0);
        let target = ResolvedEnvironment::resolve(loaded, "staging").expect("staging");
        let names = InfraNames::new(&target);
        let account = "arn:aws:iam::123456789012:role";
        let roles = [
            (
                "kaapi-staging-web".to_owned(),
                format!("{account}/kaapi-staging-execution-role"),
            ),
            (
                "kaapi-staging-web".to_owned(),
                format!("{account}/ecsTaskExecutionRole"),
            ),
            (
                "kaapi-staging-worker".to_owned(),
                format!("{account}/ecsTaskExecutionRole"),
            ),
        ];
        let items = passed_role_items(&target, &names, &roles);
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(
            items[0].name,
            format!("role {account}/ecsTaskExecutionRole")
        );
        assert_eq!(items[0].status, Status::Missing);
        assert!(
            items[0].detail.contains("kaapi-staging-web"),
            "{}",
            items[0].detail
        );
    }

    #[test]
    fn a_trust_that_refuses_the_workflow_names_the_subject() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (loaded, _) = crate::conformance::configs(dir.path()).remove(0);
        let target = ResolvedEnvironment::resolve(loaded, "staging").expect("staging");
        let repository = "o/r";
        let claims = github_claims::generated_claims(
            target.config(),
            "staging",
            repository,
            &kaapi_ci::workflows::WorkflowOptions::default(),
        )
        .expect("claims");
        let scope = Scope::new("eu-west-1", "123456789012");
        let role = scope.role_arn("kaapi-deploy");
        let provider = scope.oidc_provider_arn();
        let generated = policy::trust_policy(&target, repository, &scope).expect("trust");
        assert_eq!(
            refused_subjects(&generated, &claims, &role, &provider),
            None
        );
        // A trust of refs only, as older versions wrote it.
        let mut refs_only = generated;
        refs_only["Statement"][0]["Condition"] = serde_json::json!({"StringEquals": {
            "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
            "token.actions.githubusercontent.com:sub": ["repo:o/r:ref:refs/heads/main"]}});
        let refused = refused_subjects(&refs_only, &claims, &role, &provider);
        assert!(
            refused
                .as_deref()
                .is_some_and(|r| r.contains("`repo:o/r:environment:AWS_ENV_VARS`")),
            "{refused:?}"
        );
    }

    #[test]
    fn rendering_and_exit_code() {
        let items = vec![
            CheckItem::ok("a", "fine"),
            CheckItem::warning("b", "meh", "do x"),
        ];
        assert_eq!(exit_code(&items), 0);
        let text = render(&items);
        assert!(
            text.contains("ok       a: fine\n")
                && text.contains("warning  b: meh\n         fix: do x\n"),
            "{text}"
        );
        let mut items = items;
        items.push(CheckItem::missing("c", "gone", "make it"));
        assert_eq!(exit_code(&items), 1);
        let json = serde_json::to_value(&items).expect("json");
        assert_eq!(json[2]["status"], "missing");
        assert_eq!(json[2]["fix"], "make it");
    }
}
