//! What IAM authorizes for one AWS API call, read off the request as it went on the wire: the
//! action, the resource ARN(s) built from the request's own parameters, the condition keys AWS
//! sends with it, and the authorizations the call implies (`ecs:TagResource` with
//! `ecs:CreateAction` when a create call tags, `iam:PassRole` with `iam:PassedToService` for
//! each role a task definition carries). A call this module does not know is an error, never
//! skipped: a new call in the code must be mapped before the conformance tests pass.

use serde_json::Value;

use crate::iam_eval::Request;
use crate::policy::Scope;
use crate::preflight::ECS_TASKS_SERVICE;

/// One recorded call: `service` the SigV4 signing name, `operation` the API operation (or
/// `METHOD /path` for REST routes), `params` the request body as JSON.
#[derive(Debug, Clone, Copy)]
pub struct ApiCall<'a> {
    pub service: &'a str,
    pub operation: &'a str,
    pub params: &'a Value,
}

impl std::fmt::Display for ApiCall<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{} {}", self.service, self.operation, self.params)
    }
}

/// Resources that exist only once the call made them (a task RunTask starts, the revision
/// RegisterTaskDefinition creates): AWS authorizes the ARN they get, any one of which matches
/// the same statements; these stand for it.
const NEW_TASK_ID: &str = "0123456789abcdef0123456789abcdef";
const NEW_REVISION: &str = "1";
/// Secrets Manager ARNs end in a random six-character suffix AWS adds to the name.
const SECRET_SUFFIX: &str = "AbCdEf";

/// The requests IAM evaluates for `call` in the account and region of `scope`.
pub fn authorizations(call: &ApiCall<'_>, scope: &Scope) -> Result<Vec<Request>, String> {
    let on = Params { call, scope };
    match call.service {
        "ecs" => on.ecs(),
        "ecr" => on.ecr(),
        "logs" => on.logs(),
        "dynamodb" => {
            let table = scope.arn("dynamodb", &format!("table/{}", on.text("TableName")?));
            on.known(
                &[
                    "PutItem",
                    "UpdateItem",
                    "DeleteItem",
                    "GetItem",
                    "DescribeTable",
                ],
                &table,
            )
        }
        // CloudWatch signs as `monitoring`; its metric reads have no resource.
        "monitoring" => match call.operation {
            "GetMetricData" | "GetMetricStatistics" | "ListMetrics" => Ok(vec![Request::new(
                &format!("cloudwatch:{}", call.operation),
                "*",
            )]),
            _ => Err(on.unknown()),
        },
        // Every identity may call GetCallerIdentity; IAM evaluates nothing for it.
        "sts" if call.operation == "GetCallerIdentity" => Ok(Vec::new()),
        "iam" => on.iam(),
        "rds" if call.operation == "DescribeDBInstances" => {
            let id = on.text("DBInstanceIdentifier")?;
            on.one(&scope.arn("rds", &format!("db:{id}")))
        }
        "elasticache" => match call.operation {
            "DescribeCacheClusters" => {
                let id = on.text("CacheClusterId")?;
                on.one(&scope.arn("elasticache", &format!("cluster:{id}")))
            }
            "DescribeReplicationGroups" => {
                let id = on.text("ReplicationGroupId")?;
                on.one(&scope.arn("elasticache", &format!("replicationgroup:{id}")))
            }
            _ => Err(on.unknown()),
        },
        "mq" if call.operation == "GET /v1/brokers" => {
            Ok(vec![Request::new("mq:ListBrokers", "*")])
        }
        "ssm" => on.ssm(),
        "secretsmanager" => {
            let id = on.text("SecretId")?;
            let arn = if id.starts_with("arn:") {
                id.to_owned()
            } else {
                scope.arn("secretsmanager", &format!("secret:{id}-{SECRET_SUFFIX}"))
            };
            on.known(&["DescribeSecret", "GetSecretValue"], &arn)
        }
        _ => Err(on.unknown()),
    }
}

struct Params<'a> {
    call: &'a ApiCall<'a>,
    scope: &'a Scope,
}

impl Params<'_> {
    fn unknown(&self) -> String {
        format!(
            "no IAM mapping for {}: map it in conformance/authorizations.rs",
            self.call
        )
    }

    fn action(&self) -> String {
        format!("{}:{}", self.call.service, self.call.operation)
    }

    fn text(&self, key: &str) -> Result<&str, String> {
        self.call
            .params
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{}: no `{key}` in the request", self.call))
    }

    fn texts(&self, key: &str) -> Vec<&str> {
        self.call
            .params
            .get(key)
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    /// The request's `tags` as (key, value), ECS's `[{key, value}]` shape.
    fn tags(&self) -> Vec<(&str, &str)> {
        self.call
            .params
            .get("tags")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|t| Some((t.get("key")?.as_str()?, t.get("value")?.as_str()?)))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn one(&self, resource: &str) -> Result<Vec<Request>, String> {
        Ok(vec![Request::new(&self.action(), resource)])
    }

    /// The action on `resource` when the operation is one of `operations`.
    fn known(&self, operations: &[&str], resource: &str) -> Result<Vec<Request>, String> {
        if operations.contains(&self.call.operation) {
            self.one(resource)
        } else {
            Err(self.unknown())
        }
    }

    fn ecs_arn(&self, resource: &str) -> String {
        self.scope.arn("ecs", resource)
    }

    /// The cluster's name and ARN (ECS's default cluster when the request names none).
    fn cluster(&self) -> (String, String) {
        let given = self.text("cluster").unwrap_or("default");
        let name = given.rsplit('/').next().unwrap_or(given).to_owned();
        let arn = if given.starts_with("arn:") {
            given.to_owned()
        } else {
            self.ecs_arn(&format!("cluster/{name}"))
        };
        (name, arn)
    }

    fn within_cluster(&self, kind: &str, reference: &str) -> String {
        if reference.starts_with("arn:") {
            return reference.to_owned();
        }
        let (cluster, _) = self.cluster();
        self.ecs_arn(&format!("{kind}/{cluster}/{reference}"))
    }

    fn task_definition(&self, reference: &str) -> String {
        if reference.starts_with("arn:") {
            reference.to_owned()
        } else {
            self.ecs_arn(&format!("task-definition/{reference}"))
        }
    }

    fn ecs(&self) -> Result<Vec<Request>, String> {
        let (_, cluster) = self.cluster();
        let in_cluster = |request: Request| request.with("ecs:cluster", &[cluster.as_str()]);
        let tags = self.tags();
        let tag_keys: Vec<&str> = tags.iter().map(|(k, _)| *k).collect();
        let with_tags = |mut request: Request| {
            if !tags.is_empty() {
                request = request.with("aws:TagKeys", &tag_keys);
                for (key, value) in &tags {
                    request = request.with(&format!("aws:RequestTag/{key}"), &[*value]);
                }
            }
            request
        };
        // Tags given to a create call are authorized as TagResource on what it creates.
        let tag_on_create = |resource: &str| {
            let request = Request::new("ecs:TagResource", resource)
                .with("ecs:CreateAction", &[self.call.operation]);
            if tag_keys.is_empty() {
                request
            } else {
                request.with("aws:TagKeys", &tag_keys)
            }
        };
        let action = self.action();
        match self.call.operation {
            "DescribeTaskDefinition" | "ListTaskDefinitions" | "ListTaskDefinitionFamilies" => {
                self.one("*")
            }
            "RegisterTaskDefinition" => {
                let family = self.text("family")?;
                let revision = self.ecs_arn(&format!("task-definition/{family}:{NEW_REVISION}"));
                let mut requests = vec![with_tags(Request::new(&action, &revision))];
                if !tags.is_empty() {
                    requests.push(tag_on_create(&revision));
                }
                for key in ["executionRoleArn", "taskRoleArn"] {
                    if let Ok(role) = self.text(key) {
                        requests.push(
                            Request::new("iam:PassRole", role)
                                .with("iam:PassedToService", &[ECS_TASKS_SERVICE]),
                        );
                    }
                }
                Ok(requests)
            }
            "RunTask" => {
                let revision = self.task_definition(self.text("taskDefinition")?);
                let mut requests = vec![with_tags(in_cluster(Request::new(&action, &revision)))];
                // Tags given or propagated from the task definition tag the new task.
                if !tags.is_empty() || self.text("propagateTags").is_ok() {
                    requests.push(tag_on_create(&self.within_cluster("task", NEW_TASK_ID)));
                }
                Ok(requests)
            }
            "DescribeTasks" => Ok(self
                .texts("tasks")
                .into_iter()
                .map(|t| in_cluster(Request::new(&action, &self.within_cluster("task", t))))
                .collect()),
            "StopTask" => {
                let task = self.within_cluster("task", self.text("task")?);
                Ok(vec![in_cluster(Request::new(&action, &task))])
            }
            "ListTasks" => {
                let instances = self.within_cluster("container-instance", NEW_TASK_ID);
                Ok(vec![in_cluster(Request::new(&action, &instances))])
            }
            // `include: ["TAGS"]` (the services' tags in the answer) authorizes nothing more:
            // the Service Authorization Reference lists no dependent action for
            // ecs:DescribeServices (https://docs.aws.amazon.com/service-authorization/latest/
            // reference/list_amazonelasticcontainerservice.html), as for DescribeTaskDefinition
            // with `include: ["TAGS"]`.
            "DescribeServices" => Ok(self
                .texts("services")
                .into_iter()
                .map(|s| in_cluster(Request::new(&action, &self.within_cluster("service", s))))
                .collect()),
            "UpdateService" => {
                let service = self.within_cluster("service", self.text("service")?);
                let mut request = in_cluster(Request::new(&action, &service));
                if let Ok(revision) = self.text("taskDefinition") {
                    let revision = self.task_definition(revision);
                    request = request.with("ecs:task-definition", &[revision.as_str()]);
                }
                Ok(vec![request])
            }
            "DescribeClusters" => Ok(self
                .texts("clusters")
                .into_iter()
                .map(|c| {
                    let arn = if c.starts_with("arn:") {
                        c.to_owned()
                    } else {
                        self.ecs_arn(&format!("cluster/{c}"))
                    };
                    Request::new(&action, &arn)
                })
                .collect()),
            "TagResource" => Ok(vec![with_tags(Request::new(
                &action,
                self.text("resourceArn")?,
            ))]),
            "ListTagsForResource" => self.one(self.text("resourceArn")?),
            _ => Err(self.unknown()),
        }
    }

    fn ecr(&self) -> Result<Vec<Request>, String> {
        if self.call.operation == "GetAuthorizationToken" {
            return self.one("*");
        }
        let repository = |name: &str| {
            let account = self
                .text("registryId")
                .unwrap_or(self.scope.account.as_str());
            format!(
                "arn:{}:ecr:{}:{account}:repository/{name}",
                self.scope.partition, self.scope.region
            )
        };
        if self.call.operation == "DescribeRepositories" {
            return Ok(self
                .texts("repositoryNames")
                .into_iter()
                .map(|name| Request::new(&self.action(), &repository(name)))
                .collect());
        }
        self.known(
            &[
                "DescribeImages",
                "BatchGetImage",
                "PutImage",
                "BatchCheckLayerAvailability",
                "GetDownloadUrlForLayer",
                "InitiateLayerUpload",
                "UploadLayerPart",
                "CompleteLayerUpload",
            ],
            &repository(self.text("repositoryName")?),
        )
    }

    /// CloudWatch Logs authorizes a log group as `log-group:NAME:*`, a stream as
    /// `log-group:NAME:log-stream:STREAM`.
    fn logs(&self) -> Result<Vec<Request>, String> {
        if self.call.operation == "DescribeLogGroups" {
            return self.one("*");
        }
        let group = self.text("logGroupName")?;
        if self.call.operation == "GetLogEvents" {
            let stream = self.text("logStreamName")?;
            let arn = self
                .scope
                .arn("logs", &format!("log-group:{group}:log-stream:{stream}"));
            return self.one(&arn);
        }
        self.known(
            &[
                "FilterLogEvents",
                "CreateLogGroup",
                "DescribeLogStreams",
                "PutRetentionPolicy",
            ],
            &self.scope.arn("logs", &format!("log-group:{group}:*")),
        )
    }

    fn iam(&self) -> Result<Vec<Request>, String> {
        match self.call.operation {
            "GetRole" | "GetRolePolicy" => self.one(&self.scope.role_arn(self.text("RoleName")?)),
            "ListOpenIDConnectProviders" => self.one("*"),
            "GetOpenIDConnectProvider" => self.one(self.text("OpenIDConnectProviderArn")?),
            _ => Err(self.unknown()),
        }
    }

    fn ssm(&self) -> Result<Vec<Request>, String> {
        match self.call.operation {
            "GetParameters" => Ok(self
                .texts("Names")
                .into_iter()
                .map(|name| Request::new(&self.action(), &self.scope.parameter_arn(name)))
                .collect()),
            "GetParameter" | "PutParameter" => {
                self.one(&self.scope.parameter_arn(self.text("Name")?))
            }
            "DescribeParameters" => self.one("*"),
            _ => Err(self.unknown()),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn scope() -> Scope {
        Scope::new("eu-west-1", "123456789012")
    }

    #[test]
    fn a_tagged_registration_implies_tagging_and_passing_its_roles() {
        let params = json!({
            "family": "kaapi-staging-web",
            "executionRoleArn": "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
            "tags": [{"key": "kaapi:release", "value": "7"}],
        });
        let call = ApiCall {
            service: "ecs",
            operation: "RegisterTaskDefinition",
            params: &params,
        };
        let requests: Vec<String> = authorizations(&call, &scope())
            .expect("mapped")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            requests,
            [
                "ecs:RegisterTaskDefinition on arn:aws:ecs:eu-west-1:123456789012:task-definition/kaapi-staging-web:1 [aws:RequestTag/kaapi:release=7] [aws:TagKeys=kaapi:release]",
                "ecs:TagResource on arn:aws:ecs:eu-west-1:123456789012:task-definition/kaapi-staging-web:1 [aws:TagKeys=kaapi:release] [ecs:CreateAction=RegisterTaskDefinition]",
                "iam:PassRole on arn:aws:iam::123456789012:role/ecsTaskExecutionRole [iam:PassedToService=ecs-tasks.amazonaws.com]",
            ]
        );
    }

    #[test]
    fn an_unknown_call_or_a_missing_parameter_is_an_error() {
        let params = json!({});
        for (service, operation) in [
            ("ecs", "DeleteCluster"),
            ("s3", "GetObject"),
            ("ecs", "UpdateService"),
        ] {
            let call = ApiCall {
                service,
                operation,
                params: &params,
            };
            assert!(authorizations(&call, &scope()).is_err(), "{call}");
        }
    }
}
