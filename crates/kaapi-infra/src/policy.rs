//! The deploy role's least-privilege IAM policy and its GitHub OIDC trust policy. Every
//! resource is scoped to the environment's names, region and account; the same builder feeds
//! the CloudFormation template with `${AWS::…}` pseudo parameters in place of the scope.

use kaapi_ci::workflows::DEFAULT_GITHUB_ENVIRONMENT;
use kaapi_core::config::ResolvedEnvironment;
use serde_json::{json, Value};

use crate::names::{InfraNames, SecretStore, GITHUB_OIDC_HOST};
use crate::preflight::{ECS_TASKS_SERVICE, OIDC_AUDIENCE};

/// Where ARNs point: partition, region and account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub partition: String,
    pub region: String,
    pub account: String,
}

impl Scope {
    /// A real scope; the partition follows the region (`cn-…` → `aws-cn`, `us-gov-…` → `aws-us-gov`).
    pub fn new(region: &str, account: &str) -> Self {
        let partition = if region.starts_with("cn-") {
            "aws-cn"
        } else if region.starts_with("us-gov-") {
            "aws-us-gov"
        } else {
            "aws"
        };
        Self {
            partition: partition.to_owned(),
            region: region.to_owned(),
            account: account.to_owned(),
        }
    }

    /// CloudFormation pseudo parameters, for documents wrapped in `Fn::Sub`.
    pub fn cloudformation() -> Self {
        Self {
            partition: "${AWS::Partition}".to_owned(),
            region: "${AWS::Region}".to_owned(),
            account: "${AWS::AccountId}".to_owned(),
        }
    }

    /// `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`.
    pub fn arn(&self, service: &str, resource: &str) -> String {
        format!(
            "arn:{}:{service}:{}:{}:{resource}",
            self.partition, self.region, self.account
        )
    }

    /// IAM ARNs are global: no region.
    fn iam_arn(&self, resource: &str) -> String {
        format!("arn:{}:iam::{}:{resource}", self.partition, self.account)
    }

    pub fn role_arn(&self, role: &str) -> String {
        self.iam_arn(&format!("role/{role}"))
    }

    pub fn oidc_provider_arn(&self) -> String {
        self.iam_arn(&format!("oidc-provider/{GITHUB_OIDC_HOST}"))
    }

    /// SSM parameter ARNs drop the name's leading slash.
    pub fn parameter_arn(&self, name: &str) -> String {
        self.arn(
            "ssm",
            &format!("parameter/{}", name.trim_start_matches('/')),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("`{0}` is not an AWS account ID (12 digits); pass --account ID")]
    InvalidAccount(String),
    #[error("`{0}` is not a GitHub repository; pass --repository OWNER/REPO")]
    InvalidRepository(String),
}

pub fn validate_account(account: &str) -> Result<(), PolicyError> {
    if account.len() == 12 && account.chars().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(PolicyError::InvalidAccount(account.to_owned()))
    }
}

fn statement(sid: &str, actions: &[&str], resources: Vec<String>) -> Value {
    json!({
        "Sid": sid,
        "Effect": "Allow",
        "Action": actions,
        "Resource": resources,
    })
}

fn repository_arns(scope: &Scope, repository: &str) -> Vec<String> {
    vec![scope.arn("ecr", &format!("repository/{repository}"))]
}

/// The tag keys the deploy writes on an existing revision to record a release's outcome and
/// schema version (kaapi-ecs `history.rs`, one standalone `ecs:TagResource` each).
pub const OUTCOME_TAG_KEYS: [&str; 3] = ["kaapi:outcome", "kaapi:detail", "kaapi:schema-version"];

/// The tag key `scale` writes on an ECS service: its last scaling event (kaapi-ecs `scale.rs`).
pub const SCALING_TAG_KEYS: [&str; 1] = ["kaapi:scaled"];

/// The permissions `kaapi-deploy` needs to deploy, roll back, inspect and check `target`.
pub fn deploy_policy(target: &ResolvedEnvironment, scope: &Scope) -> Value {
    deploy_policy_with(target, scope, &[])
}

/// The roles the deploy passes to ECS: the execution and task roles the config names, then
/// `extra` (full ARNs, e.g. the roles of the live task definitions, which new revisions keep).
pub fn pass_role_arns(names: &InfraNames, scope: &Scope, extra: &[String]) -> Vec<String> {
    let mut roles = vec![
        scope.role_arn(&names.execution_role),
        scope.role_arn(&names.task_role),
    ];
    for arn in extra {
        if !roles.contains(arn) {
            roles.push(arn.clone());
        }
    }
    roles
}

/// [`deploy_policy`], also allowing `iam:PassRole` on `extra_pass_roles` (full role ARNs).
pub fn deploy_policy_with(
    target: &ResolvedEnvironment,
    scope: &Scope,
    extra_pass_roles: &[String],
) -> Value {
    let names = InfraNames::new(target);
    let cluster_arn = scope.arn("ecs", &format!("cluster/{}", names.cluster));
    let families: Vec<String> = names
        .services
        .values()
        .map(|s| scope.arn("ecs", &format!("task-definition/{}:*", s.family)))
        .collect();
    let services: Vec<String> = names
        .services
        .values()
        .map(|s| scope.arn("ecs", &format!("service/{}/{}", names.cluster, s.service)))
        .collect();
    let tasks = vec![scope.arn("ecs", &format!("task/{}/*", names.cluster))];
    let log_groups: Vec<String> = names
        .services
        .values()
        .map(|s| scope.arn("logs", &format!("log-group:{}:*", s.log_group)))
        .collect();
    let log_streams: Vec<String> = names
        .services
        .values()
        .map(|s| scope.arn("logs", &format!("log-group:{}:log-stream:*", s.log_group)))
        .collect();
    let cluster_condition = json!({"ArnEquals": {"ecs:cluster": cluster_arn}});

    let mut statements = vec![
        statement(
            "EcrLogin",
            &["ecr:GetAuthorizationToken"],
            vec!["*".to_owned()],
        ),
        statement(
            "EcrPushPull",
            &[
                "ecr:BatchCheckLayerAvailability",
                "ecr:BatchGetImage",
                "ecr:CompleteLayerUpload",
                "ecr:DescribeImages",
                "ecr:DescribeRepositories",
                "ecr:GetDownloadUrlForLayer",
                "ecr:InitiateLayerUpload",
                "ecr:PutImage",
                "ecr:UploadLayerPart",
            ],
            repository_arns(scope, &names.repository),
        ),
    ];
    // Promotion copies the image the source environment runs: pull only.
    if let Some(source) = promotion_source(target) {
        let source_names = InfraNames::new(&source);
        if source_names.repository != names.repository {
            statements.push(statement(
                "EcrPullPromotionSource",
                &[
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchGetImage",
                    "ecr:DescribeImages",
                    "ecr:GetDownloadUrlForLayer",
                ],
                repository_arns(scope, &source_names.repository),
            ));
        }
    }
    statements.extend([
        // Releases are recorded as tags on the revisions, read with DescribeTaskDefinition
        // (`include: TAGS`, which needs no ecs:ListTagsForResource).
        statement(
            "EcsTaskDefinitions",
            &["ecs:RegisterTaskDefinition"],
            families.clone(),
        ),
        statement(
            "EcsReadTaskDefinitions",
            &["ecs:DescribeTaskDefinition", "ecs:ListTaskDefinitions"],
            vec!["*".to_owned()],
        ),
        json!({
            "Sid": "EcsTagOnCreate",
            "Effect": "Allow",
            "Action": ["ecs:TagResource"],
            "Resource": families.iter().cloned().chain(tasks.iter().cloned()).collect::<Vec<_>>(),
            "Condition": {"StringEquals": {"ecs:CreateAction": ["RegisterTaskDefinition", "RunTask"]}},
        }),
        // Recording an outcome tags an existing revision: a standalone TagResource carries no
        // `ecs:CreateAction`, so it needs its own statement, limited to the outcome's keys.
        json!({
            "Sid": "EcsRecordOutcome",
            "Effect": "Allow",
            "Action": ["ecs:TagResource"],
            "Resource": families.clone(),
            "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": OUTCOME_TAG_KEYS}},
        }),
        // `scale` records its event on the service; deploys, `releases` and `status` read it
        // with DescribeServices (`include: TAGS`, which needs no ecs:ListTagsForResource).
        json!({
            "Sid": "EcsRecordScaling",
            "Effect": "Allow",
            "Action": ["ecs:TagResource"],
            "Resource": services.clone(),
            "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": SCALING_TAG_KEYS}},
        }),
        statement(
            "EcsServices",
            &["ecs:DescribeServices", "ecs:UpdateService"],
            services,
        ),
        statement("EcsCluster", &["ecs:DescribeClusters"], vec![cluster_arn.clone()]),
        json!({
            "Sid": "EcsOneOffTasks",
            "Effect": "Allow",
            "Action": ["ecs:RunTask"],
            "Resource": families,
            "Condition": cluster_condition,
        }),
        json!({
            "Sid": "EcsTasks",
            "Effect": "Allow",
            "Action": ["ecs:DescribeTasks", "ecs:StopTask"],
            "Resource": tasks,
            "Condition": cluster_condition,
        }),
        // `exec` on ECS: IAM authorizes ExecuteCommand on both the cluster and the task.
        statement(
            "EcsExec",
            &["ecs:ExecuteCommand"],
            vec![
                cluster_arn.clone(),
                scope.arn("ecs", &format!("task/{}/*", names.cluster)),
            ],
        ),
        json!({
            "Sid": "EcsListTasks",
            "Effect": "Allow",
            "Action": ["ecs:ListTasks"],
            "Resource": [scope.arn("ecs", &format!("container-instance/{}/*", names.cluster))],
            "Condition": cluster_condition,
        }),
        statement(
            "LogsRead",
            &["logs:DescribeLogStreams", "logs:FilterLogEvents", "logs:StartLiveTail"],
            log_groups.clone(),
        ),
        statement("LogsReadStreams", &["logs:GetLogEvents"], log_streams),
        statement(
            "ReadOnlyListings",
            &[
                "cloudwatch:GetMetricData",
                "iam:ListOpenIDConnectProviders",
                "logs:DescribeLogGroups",
                "mq:ListBrokers",
            ],
            vec!["*".to_owned()],
        ),
        statement(
            "DeployLock",
            // Conditional writes make it a compare-and-swap lock (kaapi-ecs lock.rs).
            &[
                "dynamodb:DeleteItem",
                "dynamodb:DescribeTable",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
            ],
            vec![scope.arn("dynamodb", &format!("table/{}", names.lock_table))],
        ),
        statement(
            "CreateLogGroups",
            // A deploy creates a service's log group when it is missing.
            &["logs:CreateLogGroup"],
            log_groups,
        ),
        json!({
            "Sid": "PassTaskRoles",
            "Effect": "Allow",
            "Action": ["iam:PassRole"],
            "Resource": pass_role_arns(&names, scope, extra_pass_roles),
            "Condition": {"StringEquals": {"iam:PassedToService": ECS_TASKS_SERVICE}},
        }),
    ]);
    let mut check_roles = vec![
        scope.role_arn(&names.execution_role),
        scope.role_arn(&names.task_role),
    ];
    if let Some(role) = &names.deploy_role {
        check_roles.push(scope.role_arn(role));
    }
    statements.push(statement("CheckRoles", &["iam:GetRole"], check_roles));
    // `check` reads the task role's ECS Exec policy (crate::ecs_exec), nothing else of it.
    statements.push(statement(
        "CheckTaskRoleExecPolicy",
        &["iam:GetRolePolicy"],
        vec![scope.role_arn(&names.task_role)],
    ));
    statements.push(statement(
        "CheckOidcProvider",
        &["iam:GetOpenIDConnectProvider"],
        vec![scope.oidc_provider_arn()],
    ));
    match &names.secret_store {
        Some(SecretStore::Ssm { path }) if !names.secrets.is_empty() => {
            // Names and types only: the check reads without decryption, and no kms:Decrypt is granted.
            statements.push(statement(
                "CheckSecretNames",
                &["ssm:GetParameters"],
                vec![scope.parameter_arn(&format!("{path}*"))],
            ));
        }
        Some(SecretStore::SecretsManager { prefix }) if !names.secrets.is_empty() => {
            statements.push(statement(
                "CheckSecretNames",
                &["secretsmanager:DescribeSecret"],
                vec![scope.arn("secretsmanager", &format!("secret:{prefix}*"))],
            ));
        }
        Some(SecretStore::SecretsManagerJson { secret }) if !names.secrets.is_empty() => {
            // A JSON secret's keys can only be listed by reading its value.
            statements.push(statement(
                "CheckSecretKeys",
                &["secretsmanager:GetSecretValue"],
                vec![json_secret_arn(scope, secret)],
            ));
        }
        _ => {}
    }
    if let Some(db) = &names.database {
        statements.push(statement(
            "CheckDatabase",
            &["rds:DescribeDBInstances"],
            vec![scope.arn("rds", &format!("db:{db}"))],
        ));
    }
    if let Some(cache) = &names.cache {
        statements.push(statement(
            "CheckCacheCluster",
            &["elasticache:DescribeCacheClusters"],
            vec![scope.arn("elasticache", &format!("cluster:{cache}*"))],
        ));
        statements.push(statement(
            "CheckCacheReplicationGroup",
            &["elasticache:DescribeReplicationGroups"],
            vec![scope.arn("elasticache", &format!("replicationgroup:{cache}"))],
        ));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

fn promotion_source(target: &ResolvedEnvironment) -> Option<ResolvedEnvironment> {
    let source = target.env().promote_from.as_deref()?;
    target.sibling(source).ok()
}

/// The `sub` claims allowed to assume the deploy role. A job that names a GitHub environment
/// (the generated workflows do) is sent `repo:R:environment:NAME`, one without it
/// `repo:R:ref:REF`, so both are trusted: one `environment:` subject per `github_environments`,
/// and the refs of the triggers of every environment that shares this environment's role (one
/// role often serves staging and production); without triggers, the `main` branch and `v*` tags.
pub fn trusted_subjects(
    target: &ResolvedEnvironment,
    repository: &str,
    github_environments: &[&str],
) -> Vec<String> {
    let (environment, role) = (target.name(), target.env().role_arn.clone());
    let mut refs = Vec::new();
    for (name, env) in &target.config().environments {
        let shares_role = name == environment || (role.is_some() && env.role_arn == role);
        if !shares_role {
            continue;
        }
        if let Some(trigger) = &env.trigger {
            if let Some(branch) = &trigger.branch {
                refs.push(format!("refs/heads/{branch}"));
            }
            if let Some(tags) = &trigger.tags {
                refs.push(format!("refs/tags/{tags}"));
            }
        }
    }
    if refs.is_empty() {
        refs = vec!["refs/heads/main".to_owned(), "refs/tags/v*".to_owned()];
    }
    let mut subjects: Vec<String> = github_environments
        .iter()
        .map(|name| format!("repo:{repository}:environment:{name}"))
        .chain(
            refs.into_iter()
                .map(|r| format!("repo:{repository}:ref:{r}")),
        )
        .collect();
    subjects.dedup();
    subjects
}

/// The deploy role's trust policy: GitHub's OIDC provider, audience `sts.amazonaws.com`,
/// `sub` limited to this repository's deploying refs and the GitHub environment the generated
/// workflows run in (`AWS_ENV_VARS`).
pub fn trust_policy(
    target: &ResolvedEnvironment,
    repository: &str,
    scope: &Scope,
) -> Result<Value, PolicyError> {
    trust_policy_for(target, repository, &[DEFAULT_GITHUB_ENVIRONMENT], scope)
}

/// [`trust_policy`] for workflows written with `init --github-environment NAME`.
pub fn trust_policy_for(
    target: &ResolvedEnvironment,
    repository: &str,
    github_environments: &[&str],
    scope: &Scope,
) -> Result<Value, PolicyError> {
    if !crate::repository::is_owner_repo(repository) {
        return Err(PolicyError::InvalidRepository(repository.to_owned()));
    }
    Ok(trust_document_for(
        target,
        repository,
        github_environments,
        scope,
    ))
}

/// [`trust_policy`] without checking `repository` (the template passes `${GitHubRepository}`).
pub fn trust_document(target: &ResolvedEnvironment, repository: &str, scope: &Scope) -> Value {
    trust_document_for(target, repository, &[DEFAULT_GITHUB_ENVIRONMENT], scope)
}

fn trust_document_for(
    target: &ResolvedEnvironment,
    repository: &str,
    github_environments: &[&str],
    scope: &Scope,
) -> Value {
    let subjects = trusted_subjects(target, repository, github_environments);
    let operator = if subjects.iter().any(|s| s.contains('*')) {
        "StringLike"
    } else {
        "StringEquals"
    };
    let mut condition = json!({
        "StringEquals": {format!("{GITHUB_OIDC_HOST}:aud"): OIDC_AUDIENCE},
    });
    condition[operator][format!("{GITHUB_OIDC_HOST}:sub")] = json!(subjects);
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "GitHubActionsDeploy",
            "Effect": "Allow",
            "Principal": {"Federated": scope.oidc_provider_arn()},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": condition,
        }],
    })
}

/// The trust policy of the task execution role and the task role.
pub fn ecs_tasks_trust_policy() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": ECS_TASKS_SERVICE},
            "Action": "sts:AssumeRole",
        }],
    })
}

/// The ARN pattern of one JSON secret: its name plus the random suffix AWS appends.
fn json_secret_arn(scope: &Scope, secret: &str) -> String {
    if secret.starts_with("arn:") {
        secret.to_owned()
    } else {
        scope.arn("secretsmanager", &format!("secret:{secret}-??????"))
    }
}

/// What the execution role needs beyond AWS's managed `AmazonECSTaskExecutionRolePolicy`:
/// reading the environment's secrets when tasks start.
pub fn execution_secrets_policy(names: &InfraNames, scope: &Scope) -> Option<Value> {
    let statement = match &names.secret_store {
        Some(SecretStore::Ssm { path }) => statement(
            "ReadSecrets",
            &["ssm:GetParameters"],
            vec![scope.parameter_arn(&format!("{path}*"))],
        ),
        Some(SecretStore::SecretsManager { prefix }) => statement(
            "ReadSecrets",
            &["secretsmanager:GetSecretValue"],
            vec![scope.arn("secretsmanager", &format!("secret:{prefix}*"))],
        ),
        Some(SecretStore::SecretsManagerJson { secret }) => statement(
            "ReadSecrets",
            &["secretsmanager:GetSecretValue"],
            vec![json_secret_arn(scope, secret)],
        ),
        None => return None,
    };
    Some(json!({"Version": "2012-10-17", "Statement": [statement]}))
}

/// The task role's inline policy for ECS Exec: the Session Manager channels the exec agent in
/// each task opens. `ssmmessages` has no resource types, so the resource is `*`.
pub fn exec_task_role_policy() -> Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "EcsExecSessions",
        "Effect": "Allow",
        "Action": crate::ecs_exec::TASK_ROLE_ACTIONS,
        "Resource": "*",
    }]})
}
