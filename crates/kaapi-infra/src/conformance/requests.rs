//! Every AWS request the ECS engine, `ci` and `check` make for one environment, as AWS
//! authorizes it: action, resource ARN built from the config's names, the condition keys AWS
//! sends, and the authorizations a call implies (`ecs:TagResource` with `ecs:CreateAction` when
//! a create call tags, `iam:PassRole` with `iam:PassedToService` for each role of a registered
//! revision). Written by hand from the code each line names; keep it in step with those calls.

use kaapi_core::config::ResolvedEnvironment;

use crate::iam_eval::Request;
use crate::names::{InfraNames, SecretStore};
use crate::policy::{Scope, OUTCOME_TAG_KEYS};
use crate::preflight::ECS_TASKS_SERVICE;

/// The tag keys RegisterTaskDefinition carries (kaapi-ecs `history.rs` `tags`).
const RELEASE_TAG_KEYS: &[&str] = &[
    "kaapi:release",
    "kaapi:service",
    "kaapi:commit",
    "kaapi:deployer",
    "kaapi:time",
    "kaapi:image",
    "kaapi:image-tags",
];

/// One request and the command that makes it.
pub struct Made {
    pub command: &'static str,
    pub request: Request,
}

struct Table<'a> {
    names: &'a InfraNames,
    scope: &'a Scope,
    made: Vec<Made>,
}

impl Table<'_> {
    fn add(&mut self, commands: &[&'static str], request: Request) {
        for command in commands {
            self.made.push(Made {
                command,
                request: request.clone(),
            });
        }
    }

    fn ecs(&self, resource: &str) -> String {
        format!(
            "arn:{}:ecs:{}:{}:{resource}",
            self.scope.partition, self.scope.region, self.scope.account
        )
    }

    fn cluster(&self) -> String {
        self.ecs(&format!("cluster/{}", self.names.cluster))
    }

    fn task(&self) -> String {
        self.ecs(&format!(
            "task/{}/0123456789abcdef0123456789abcdef",
            self.names.cluster
        ))
    }

    fn revision(&self, family: &str) -> String {
        self.ecs(&format!("task-definition/{family}:42"))
    }
}

const DEPLOYS: &[&str] = &["deploy", "ci", "rollback"];
const RUNS_TASKS: &[&str] = &["deploy", "ci", "migrate", "run"];

/// The requests of every command on `environment`; `live_roles` are the execution and task
/// role ARNs of the live task definitions, which derived revisions keep.
pub fn requests(target: &ResolvedEnvironment, scope: &Scope, live_roles: &[String]) -> Vec<Made> {
    let names = InfraNames::new(target);
    let mut t = Table {
        names: &names,
        scope,
        made: Vec::new(),
    };
    let arn = |service: &str, resource: &str| {
        format!(
            "arn:{}:{service}:{}:{}:{resource}",
            scope.partition, scope.region, scope.account
        )
    };
    let cluster = t.cluster();
    let repository = arn("ecr", &format!("repository/{}", names.repository));
    let lock = arn("dynamodb", &format!("table/{}", names.lock_table));

    // kaapi-ecs lock.rs: conditional PutItem (take), UpdateItem (renew), DeleteItem (release,
    // force unlock), GetItem (who holds it).
    let all = &["deploy", "ci", "rollback", "migrate"];
    for action in [
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
    ] {
        t.add(all, Request::new(action, &lock));
    }
    // check: the lock table exists.
    t.add(&["check"], Request::new("dynamodb:DescribeTable", &lock));

    // kaapi-ecs image.rs and kaapi-ci ecr.rs: login, look the image up; the push (docker and
    // kaapi-ci registry.rs) is the registry API, authorized as these ECR actions.
    t.add(
        &["deploy", "ci", "run"],
        Request::new("ecr:GetAuthorizationToken", "*"),
    );
    t.add(
        &["deploy", "ci", "rollback", "status"],
        Request::new("ecr:DescribeImages", &repository),
    );
    for action in [
        "ecr:BatchCheckLayerAvailability",
        "ecr:InitiateLayerUpload",
        "ecr:UploadLayerPart",
        "ecr:CompleteLayerUpload",
        "ecr:PutImage",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
    ] {
        t.add(&["deploy", "ci"], Request::new(action, &repository));
    }

    // kaapi-ecs context.rs (DescribeServices, DescribeTaskDefinition), history.rs
    // (ListTaskDefinitions), rollout.rs (UpdateService).
    let reads = &[
        "deploy", "ci", "rollback", "migrate", "run", "status", "logs",
    ];
    t.add(reads, Request::new("ecs:DescribeTaskDefinition", "*"));
    t.add(reads, Request::new("ecs:ListTaskDefinitions", "*"));
    for service in names.services.values() {
        let arn = t.ecs(&format!("service/{}/{}", names.cluster, service.service));
        t.add(
            reads,
            Request::new("ecs:DescribeServices", &arn).with("ecs:cluster", &[&cluster]),
        );
        let revision = t.revision(&service.family);
        t.add(
            DEPLOYS,
            Request::new("ecs:UpdateService", &arn)
                .with("ecs:cluster", &[&cluster])
                .with("ecs:task-definition", &[&revision]),
        );
        // taskdef.rs register: the revision carries the release's tags, which ECS authorizes
        // as TagResource with ecs:CreateAction; each role it carries is passed to ECS.
        t.add(
            &["deploy", "ci", "rollback", "migrate"],
            Request::new("ecs:RegisterTaskDefinition", &revision)
                .with("aws:TagKeys", RELEASE_TAG_KEYS)
                .with("aws:RequestTag/kaapi:release", &["7"]),
        );
        t.add(
            &["deploy", "ci", "rollback", "migrate"],
            Request::new("ecs:TagResource", &revision)
                .with("ecs:CreateAction", &["RegisterTaskDefinition"])
                .with("aws:TagKeys", RELEASE_TAG_KEYS),
        );
        // migrate.rs run_task: one-off tasks of the release's revision, tags propagated from it.
        t.add(
            RUNS_TASKS,
            Request::new("ecs:RunTask", &revision).with("ecs:cluster", &[&cluster]),
        );
        // history.rs record: the outcome, a standalone TagResource on the history revision.
        t.add(
            DEPLOYS,
            Request::new("ecs:TagResource", &revision).with("aws:TagKeys", &OUTCOME_TAG_KEYS),
        );
    }
    let roles: Vec<String> = [
        scope.role_arn(&names.execution_role),
        scope.role_arn(&names.task_role),
    ]
    .into_iter()
    .chain(live_roles.iter().cloned())
    .collect();
    for role in &roles {
        t.add(
            &["deploy", "ci", "rollback", "migrate"],
            Request::new("iam:PassRole", role).with("iam:PassedToService", &[ECS_TASKS_SERVICE]),
        );
    }
    let task = t.task();
    t.add(
        RUNS_TASKS,
        Request::new("ecs:TagResource", &task)
            .with("ecs:CreateAction", &["RunTask"])
            .with("aws:TagKeys", RELEASE_TAG_KEYS),
    );
    // migrate.rs and status.rs: DescribeTasks, StopTask (a timed-out one-off), ListTasks.
    t.add(
        &["deploy", "ci", "migrate", "run", "status"],
        Request::new("ecs:DescribeTasks", &task).with("ecs:cluster", &[&cluster]),
    );
    t.add(
        RUNS_TASKS,
        Request::new("ecs:StopTask", &task).with("ecs:cluster", &[&cluster]),
    );
    let instances = t.ecs(&format!(
        "container-instance/{}/0123456789abcdef",
        names.cluster
    ));
    t.add(
        &["status"],
        Request::new("ecs:ListTasks", &instances).with("ecs:cluster", &[&cluster]),
    );
    // status.rs metrics; logs.rs FilterLogEvents (AWS authorizes log groups as `NAME:*`).
    t.add(&["status"], Request::new("cloudwatch:GetMetricData", "*"));
    for service in names.services.values() {
        let group = arn("logs", &format!("log-group:{}:*", service.log_group));
        t.add(
            &["logs", "deploy", "ci", "migrate", "run"],
            Request::new("logs:FilterLogEvents", &group),
        );
        // kaapi-ecs log_groups.rs: a deploy creates a missing log group.
        t.add(
            &["deploy", "ci"],
            Request::new("logs:CreateLogGroup", &group),
        );
    }
    t.add(
        &["deploy", "ci"],
        Request::new("logs:DescribeLogGroups", "*"),
    );
    // Promotion (kaapi-ci promote.rs) pulls from the source environment's repository.
    if let Some(source) = target
        .env()
        .promote_from
        .as_deref()
        .and_then(|s| target.sibling(s).ok())
    {
        let source = InfraNames::new(&source);
        let from = arn("ecr", &format!("repository/{}", source.repository));
        for action in [
            "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer",
            "ecr:DescribeImages",
        ] {
            t.add(&["ci"], Request::new(action, &from));
        }
    }
    check_requests(&mut t, &arn);
    t.made
}

/// preflight.rs: what `check` reads (names only for secrets).
fn check_requests(t: &mut Table<'_>, arn: &dyn Fn(&str, &str) -> String) {
    let names = t.names;
    let scope = t.scope;
    let c = &["check"];
    t.add(c, Request::new("ecs:DescribeClusters", &t.cluster()));
    t.add(
        c,
        Request::new(
            "ecr:DescribeRepositories",
            &arn("ecr", &format!("repository/{}", names.repository)),
        ),
    );
    t.add(c, Request::new("ecs:DescribeTaskDefinition", "*"));
    t.add(c, Request::new("logs:DescribeLogGroups", "*"));
    t.add(c, Request::new("iam:ListOpenIDConnectProviders", "*"));
    t.add(
        c,
        Request::new("iam:GetOpenIDConnectProvider", &scope.oidc_provider_arn()),
    );
    t.add(c, Request::new("mq:ListBrokers", "*"));
    let mut roles = vec![names.execution_role.clone(), names.task_role.clone()];
    roles.extend(names.deploy_role.clone());
    for role in roles {
        t.add(c, Request::new("iam:GetRole", &scope.role_arn(&role)));
    }
    for service in names.services.values() {
        let arn = t.ecs(&format!("service/{}/{}", names.cluster, service.service));
        t.add(
            c,
            Request::new("ecs:DescribeServices", &arn).with("ecs:cluster", &[&t.cluster()]),
        );
    }
    if let Some(db) = &names.database {
        t.add(
            c,
            Request::new("rds:DescribeDBInstances", &arn("rds", &format!("db:{db}"))),
        );
    }
    if let Some(cache) = &names.cache {
        t.add(
            c,
            Request::new(
                "elasticache:DescribeCacheClusters",
                &arn("elasticache", &format!("cluster:{cache}")),
            ),
        );
        t.add(
            c,
            Request::new(
                "elasticache:DescribeReplicationGroups",
                &arn("elasticache", &format!("replicationgroup:{cache}")),
            ),
        );
    }
    for secret in &names.secrets {
        match &names.secret_store {
            Some(store @ SecretStore::Ssm { .. }) => {
                t.add(
                    c,
                    Request::new(
                        "ssm:GetParameters",
                        &scope.parameter_arn(&store.name_of(secret)),
                    ),
                );
            }
            Some(store @ SecretStore::SecretsManager { .. }) => {
                // Secrets Manager ARNs end in a random six-character suffix.
                let id = format!("secret:{}-AbCdEf", store.name_of(secret));
                t.add(
                    c,
                    Request::new("secretsmanager:DescribeSecret", &arn("secretsmanager", &id)),
                );
            }
            Some(SecretStore::SecretsManagerJson { secret }) => {
                // `check` reads the one JSON secret's keys (never printing a value).
                let id = format!("secret:{secret}-AbCdEf");
                t.add(
                    c,
                    Request::new("secretsmanager:GetSecretValue", &arn("secretsmanager", &id)),
                );
            }
            None => {}
        }
    }
}
