//! `kaapi-deploy infra template ENV`: a CloudFormation template creating everything the
//! preflight check looks for, named by the same convention. Optional parts (services, the
//! GitHub OIDC provider, the deploy role, PostgreSQL, Redis, RabbitMQ) sit behind parameters
//! and conditions. No secret value is ever in the template: task definitions reference secrets
//! by ARN, and `kaapi-deploy secrets push` writes the values (CloudFormation cannot create
//! SecureString parameters).

use indexmap::IndexMap;
use kaapi_core::config::{ResolvedEnvironment, ServiceKind};
use serde_json::{json, Map, Value};

use crate::names::{InfraNames, SecretStore, GITHUB_OIDC_HOST};
use crate::policy::{self, Scope};
use crate::preflight::OIDC_AUDIENCE;

/// GitHub's OIDC certificate thumbprints (IAM no longer uses them for GitHub, but older
/// schemas require the property).
const GITHUB_THUMBPRINTS: [&str; 2] = [
    "6938fd4d98bab03faadb97b34396831e3780aea1",
    "1c58a3a8518e8759bf075b76b750d4f2df264fcd",
];

const SECTIONS: [&str; 6] = [
    "AWSTemplateFormatVersion",
    "Description",
    "Parameters",
    "Conditions",
    "Resources",
    "Outputs",
];

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot render the template as YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

/// Options the config does not hold.
#[derive(Debug, Clone, Default)]
pub struct TemplateOptions {
    /// Default of the `GitHubRepository` parameter (`OWNER/REPO`).
    pub repository: Option<String>,
}

/// The template as YAML text, with a header comment on how to use it.
pub fn render(
    target: &ResolvedEnvironment,
    options: &TemplateOptions,
) -> Result<String, TemplateError> {
    let template = build(target, options);
    // Sections in the order people read them (a JSON object would sort them).
    let mut ordered: IndexMap<&str, &Value> = IndexMap::new();
    for section in SECTIONS {
        if let Some(value) = template.get(section) {
            ordered.insert(section, value);
        }
    }
    // YAML 1.1 readers (PyYAML, hence moto and many tools) take a bare 2012-10-17 for a date.
    let yaml = serde_yaml::to_string(&ordered)?
        .replace("Version: 2012-10-17\n", "Version: '2012-10-17'\n")
        .replace("Version: 2010-09-09\n", "Version: '2010-09-09'\n");
    Ok(format!("{}{yaml}", header(target.name())))
}

fn header(environment: &str) -> String {
    format!(
        "# CloudFormation template for the `{environment}` environment, from `kaapi-deploy infra template {environment}`.\n\
         # Secrets are not in this template: task definitions reference them by ARN; write their\n\
         # values with `kaapi-deploy secrets push {environment} --from FILE` before the services start.\n\
         # See docs/infrastructure.md for the bootstrap order.\n"
    )
}

/// Wraps every string holding `${…}` in `Fn::Sub`, so generated IAM documents resolve the
/// stack's partition, region, account and parameters.
fn substitute(value: Value) -> Value {
    match value {
        Value::String(s) if s.contains("${") => json!({"Fn::Sub": s}),
        Value::Array(items) => Value::Array(items.into_iter().map(substitute).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, substitute(v))).collect())
        }
        other => other,
    }
}

fn sub(text: &str) -> Value {
    json!({"Fn::Sub": text})
}

/// `kaapi-staging-web` → `KaapiStagingWeb`-like logical IDs: alphanumerics only.
fn logical_id(prefix: &str, name: &str) -> String {
    let mut out = prefix.to_owned();
    let mut upper = true;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(if upper { c.to_ascii_uppercase() } else { c });
            upper = false;
        } else {
            upper = true;
        }
    }
    out
}

fn boolean_parameter(description: &str, default: bool) -> Value {
    json!({
        "Type": "String",
        "AllowedValues": ["true", "false"],
        "Default": if default { "true" } else { "false" },
        "Description": description,
    })
}

fn is_true(parameter: &str) -> Value {
    json!({"Fn::Equals": [{"Ref": parameter}, "true"]})
}

pub fn build(target: &ResolvedEnvironment, options: &TemplateOptions) -> Value {
    let (config, environment) = (target.config(), target.name());
    let names = InfraNames::new(target);
    let cfn = Scope::cloudformation();
    let mut parameters = Map::new();
    let mut conditions = Map::new();
    let mut resources = Map::new();
    let mut outputs = Map::new();

    parameters.insert(
        "ImageUri".into(),
        json!({
            "Type": "String",
            "Default": "",
            "Description": "Image (by digest) for the first task definitions; empty skips task definitions and services until an image is pushed",
        }),
    );
    parameters.insert(
        "SubnetIds".into(),
        json!({"Type": "List<AWS::EC2::Subnet::Id>", "Description": "Subnets of the tasks (and of the database, cache and broker)"}),
    );
    parameters.insert(
        "SecurityGroupIds".into(),
        json!({"Type": "List<AWS::EC2::SecurityGroup::Id>", "Description": "Security groups of the tasks (and of the database, cache and broker)"}),
    );
    parameters.insert(
        "AssignPublicIp".into(),
        json!({"Type": "String", "AllowedValues": ["ENABLED", "DISABLED"], "Default": "DISABLED",
               "Description": "ENABLED for public subnets without a NAT gateway"}),
    );
    parameters.insert(
        "LogRetentionDays".into(),
        json!({"Type": "Number", "Default": 30,
               "AllowedValues": [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653],
               "Description": "Days CloudWatch keeps the services' logs"}),
    );
    parameters.insert(
        "CreateGitHubOidcProvider".into(),
        boolean_parameter("Create the account's GitHub Actions OIDC provider (false when the account already has one)", true),
    );
    parameters.insert(
        "CreateDeployRole".into(),
        boolean_parameter("Create the role GitHub Actions assumes to deploy (false when another environment's stack created it; this stack still attaches its policy to it)", true),
    );
    parameters.insert(
        "EnableExecuteCommand".into(),
        boolean_parameter("Turn on ECS Exec (`kaapi-deploy exec`) on the services and let the task role open its sessions", false),
    );
    let mut repository_parameter = json!({
        "Type": "String",
        "AllowedPattern": "^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$",
        "Description": "GitHub repository (OWNER/REPO) allowed to assume the deploy role",
    });
    if let Some(repo) = &options.repository {
        repository_parameter["Default"] = json!(repo);
    }
    parameters.insert("GitHubRepository".into(), repository_parameter);

    conditions.insert(
        "CreateServices".into(),
        json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "ImageUri"}, ""]}]}),
    );
    conditions.insert("ExecEnabled".into(), is_true("EnableExecuteCommand"));
    conditions.insert(
        "CreateOidcProvider".into(),
        is_true("CreateGitHubOidcProvider"),
    );
    conditions.insert(
        "CreateDeployRoleCondition".into(),
        is_true("CreateDeployRole"),
    );

    resources.insert(
        "Cluster".into(),
        json!({
            "Type": "AWS::ECS::Cluster",
            "Properties": {
                "ClusterName": names.cluster,
                "ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}],
            },
        }),
    );
    resources.insert(
        "Repository".into(),
        json!({
            "Type": "AWS::ECR::Repository",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "RepositoryName": names.repository,
                "ImageTagMutability": "IMMUTABLE",
                "ImageScanningConfiguration": {"ScanOnPush": true},
            },
        }),
    );
    resources.insert(
        "DeployLockTable".into(),
        json!({
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "TableName": names.lock_table,
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "TimeToLiveSpecification": {"AttributeName": "purge_at", "Enabled": true},
            },
        }),
    );
    for (service, service_names) in &names.services {
        resources.insert(
            logical_id("LogGroup", service),
            json!({
                "Type": "AWS::Logs::LogGroup",
                "DeletionPolicy": "Retain",
                "UpdateReplacePolicy": "Retain",
                "Properties": {
                    "LogGroupName": service_names.log_group,
                    "RetentionInDays": {"Ref": "LogRetentionDays"},
                },
            }),
        );
    }

    let mut execution_role = json!({
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": names.execution_role,
            "AssumeRolePolicyDocument": policy::ecs_tasks_trust_policy(),
            "ManagedPolicyArns": [sub("arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy")],
        },
    });
    if let Some(document) = policy::execution_secrets_policy(&names, &cfn) {
        execution_role["Properties"]["Policies"] = json!([{
            "PolicyName": "read-secrets",
            "PolicyDocument": substitute(document),
        }]);
    }
    resources.insert("ExecutionRole".into(), execution_role);
    resources.insert(
        "TaskRole".into(),
        json!({
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": names.task_role,
                "AssumeRolePolicyDocument": policy::ecs_tasks_trust_policy(),
                "Policies": {"Fn::If": ["ExecEnabled", [{
                    "PolicyName": crate::ecs_exec::TASK_ROLE_POLICY_NAME,
                    "PolicyDocument": policy::exec_task_role_policy(),
                }], {"Ref": "AWS::NoValue"}]},
            },
        }),
    );

    let secrets: Vec<Value> = match &names.secret_store {
        Some(store) => config
            .secrets
            .iter()
            .map(|secret| {
                let arn = match store {
                    SecretStore::Ssm { .. } => cfn.parameter_arn(&store.name_of(secret)),
                    SecretStore::SecretsManager { .. } => format!(
                        "arn:${{AWS::Partition}}:secretsmanager:${{AWS::Region}}:${{AWS::AccountId}}:secret:{}",
                        store.name_of(secret)
                    ),
                    SecretStore::SecretsManagerJson { secret: name } if name.starts_with("arn:") => {
                        format!("{name}:{secret}::")
                    }
                    SecretStore::SecretsManagerJson { secret: name } => format!(
                        "arn:${{AWS::Partition}}:secretsmanager:${{AWS::Region}}:${{AWS::AccountId}}:secret:{name}:{secret}::"
                    ),
                };
                json!({"Name": secret, "ValueFrom": sub(&arn)})
            })
            .collect(),
        None => Vec::new(),
    };
    for (service, service_names) in &names.services {
        let Some(service_config) = config.services.get(service) else {
            continue;
        };
        let environment_variables: Vec<Value> = config
            .plain_env(environment, service)
            .into_iter()
            .map(|(name, value)| json!({"Name": name, "Value": value}))
            .collect();
        let mut container = json!({
            "Name": service,
            "Image": {"Ref": "ImageUri"},
            "Essential": true,
            "Environment": environment_variables,
            "Secrets": secrets,
            "StopTimeout": service_config.stop_timeout().as_secs().min(120),
            "LogConfiguration": {
                "LogDriver": "awslogs",
                "Options": {
                    "awslogs-group": service_names.log_group,
                    "awslogs-region": {"Ref": "AWS::Region"},
                    "awslogs-stream-prefix": service,
                },
            },
        });
        if let Some(command) = &service_config.command {
            container["Command"] = json!(command.argv());
        }
        if let (Some(port), ServiceKind::Web) = (service_config.port, service_config.kind()) {
            container["PortMappings"] = json!([{"ContainerPort": port, "Protocol": "tcp"}]);
        }
        let (cpu, memory) = fargate_size(service_config.cpu, service_config.memory);
        let task_definition_id = logical_id("TaskDefinition", service);
        resources.insert(
            task_definition_id.clone(),
            json!({
                "Type": "AWS::ECS::TaskDefinition",
                "Condition": "CreateServices",
                "Properties": {
                    "Family": service_names.family,
                    "RequiresCompatibilities": ["FARGATE"],
                    "NetworkMode": "awsvpc",
                    "Cpu": cpu.to_string(),
                    "Memory": memory.to_string(),
                    "ExecutionRoleArn": {"Fn::GetAtt": ["ExecutionRole", "Arn"]},
                    "TaskRoleArn": {"Fn::GetAtt": ["TaskRole", "Arn"]},
                    "ContainerDefinitions": [container],
                },
            }),
        );
        resources.insert(
            logical_id("Service", service),
            json!({
                "Type": "AWS::ECS::Service",
                "Condition": "CreateServices",
                "DependsOn": [logical_id("LogGroup", service)],
                "Properties": {
                    "ServiceName": service_names.service,
                    "Cluster": {"Ref": "Cluster"},
                    "TaskDefinition": {"Ref": task_definition_id},
                    "DesiredCount": config.replicas(environment, service),
                    "LaunchType": "FARGATE",
                    "EnableExecuteCommand": {"Fn::If": ["ExecEnabled", true, false]},
                    "DeploymentConfiguration": {
                        "DeploymentCircuitBreaker": {"Enable": true, "Rollback": true},
                        "MinimumHealthyPercent": 100,
                        "MaximumPercent": 200,
                    },
                    "NetworkConfiguration": {
                        "AwsvpcConfiguration": {
                            "Subnets": {"Ref": "SubnetIds"},
                            "SecurityGroups": {"Ref": "SecurityGroupIds"},
                            "AssignPublicIp": {"Ref": "AssignPublicIp"},
                        },
                    },
                },
            }),
        );
    }

    resources.insert(
        "GitHubOidcProvider".into(),
        json!({
            "Type": "AWS::IAM::OIDCProvider",
            "Condition": "CreateOidcProvider",
            "Properties": {
                "Url": format!("https://{GITHUB_OIDC_HOST}"),
                "ClientIdList": [OIDC_AUDIENCE],
                "ThumbprintList": GITHUB_THUMBPRINTS,
            },
        }),
    );
    let deploy_role_name = names
        .deploy_role
        .clone()
        .unwrap_or_else(|| format!("{}-deploy-role", names.stem));
    let mut trust = substitute(policy::trust_document(target, "${GitHubRepository}", &cfn));
    // Depend on the provider when this stack creates it; else name the account's existing one.
    trust["Statement"][0]["Principal"]["Federated"] = json!({
        "Fn::If": ["CreateOidcProvider", {"Ref": "GitHubOidcProvider"}, sub(&cfn.oidc_provider_arn())],
    });
    resources.insert(
        "DeployRole".into(),
        json!({
            "Type": "AWS::IAM::Role",
            "Condition": "CreateDeployRoleCondition",
            "Properties": {
                "RoleName": deploy_role_name,
                "AssumeRolePolicyDocument": trust,
            },
        }),
    );
    // A separate policy, so that when environments share one deploy role (created by one
    // stack, `CreateDeployRole=false` in the others) each stack still grants its own.
    resources.insert(
        "DeployRolePolicy".into(),
        json!({
            "Type": "AWS::IAM::Policy",
            "Properties": {
                "PolicyName": format!("kaapi-deploy-{environment}"),
                "PolicyDocument": substitute(policy::deploy_policy(target, &cfn)),
                "Roles": [{"Fn::If": ["CreateDeployRoleCondition", {"Ref": "DeployRole"}, deploy_role_name]}],
            },
        }),
    );

    if let Some(database) = &names.database {
        add_database(
            &mut parameters,
            &mut conditions,
            &mut resources,
            &mut outputs,
            database,
        );
    }
    if let Some(cache) = &names.cache {
        add_cache(
            &mut parameters,
            &mut conditions,
            &mut resources,
            &mut outputs,
            cache,
        );
    }
    if let Some(broker) = &names.broker {
        add_broker(
            &mut parameters,
            &mut conditions,
            &mut resources,
            &mut outputs,
            broker,
        );
    }

    outputs.insert("ClusterName".into(), json!({"Value": {"Ref": "Cluster"}}));
    outputs.insert(
        "RepositoryUri".into(),
        json!({"Value": {"Fn::GetAtt": ["Repository", "RepositoryUri"]}}),
    );
    outputs.insert(
        "ExecutionRoleArn".into(),
        json!({"Value": {"Fn::GetAtt": ["ExecutionRole", "Arn"]}}),
    );
    outputs.insert(
        "TaskRoleArn".into(),
        json!({"Value": {"Fn::GetAtt": ["TaskRole", "Arn"]}}),
    );
    outputs.insert(
        "DeployRoleArn".into(),
        json!({"Condition": "CreateDeployRoleCondition", "Value": {"Fn::GetAtt": ["DeployRole", "Arn"]},
               "Description": "Set as role_arn of this environment in deploy.toml"}),
    );

    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("kaapi-deploy: infrastructure of {} ({environment})", config.app),
        "Parameters": parameters,
        "Conditions": conditions,
        "Resources": resources,
        "Outputs": outputs,
    })
}

/// The smallest valid Fargate size holding the configured CPU units and memory (MiB).
fn fargate_size(cpu: Option<u32>, memory: Option<u32>) -> (u32, u32) {
    let cpu_wanted = cpu.unwrap_or(256);
    let memory_wanted = memory.unwrap_or(512);
    let sizes: [(u32, &[u32]); 5] = [
        (256, &[512, 1024, 2048]),
        (512, &[1024, 2048, 3072, 4096]),
        (1024, &[2048, 3072, 4096, 5120, 6144, 7168, 8192]),
        (
            2048,
            &[
                4096, 5120, 6144, 7168, 8192, 9216, 10240, 11264, 12288, 13312, 14336, 15360, 16384,
            ],
        ),
        (
            4096,
            &[
                8192, 9216, 10240, 11264, 12288, 13312, 14336, 15360, 16384, 17408, 18432, 19456,
                20480, 21504, 22528, 23552, 24576, 25600, 26624, 27648, 28672, 29696, 30720,
            ],
        ),
    ];
    for (cpu_units, memories) in sizes {
        if cpu_units < cpu_wanted {
            continue;
        }
        if let Some(m) = memories.iter().find(|m| **m >= memory_wanted) {
            return (cpu_units, *m);
        }
    }
    (4096, 30720)
}

fn add_database(
    parameters: &mut Map<String, Value>,
    conditions: &mut Map<String, Value>,
    resources: &mut Map<String, Value>,
    outputs: &mut Map<String, Value>,
    identifier: &str,
) {
    parameters.insert(
        "CreateDatabase".into(),
        boolean_parameter("Create the RDS PostgreSQL instance", true),
    );
    parameters.insert(
        "DatabaseInstanceClass".into(),
        json!({"Type": "String", "Default": "db.t4g.micro", "Description": "RDS instance class"}),
    );
    parameters.insert(
        "DatabaseStorageGiB".into(),
        json!({"Type": "Number", "Default": 20, "MinValue": 20, "Description": "RDS storage (GiB)"}),
    );
    parameters.insert(
        "DatabaseUsername".into(),
        json!({"Type": "String", "Default": "postgres", "Description": "Master user; its password is generated and kept in Secrets Manager by RDS"}),
    );
    conditions.insert("CreateDatabaseCondition".into(), is_true("CreateDatabase"));
    resources.insert(
        "DatabaseSubnetGroup".into(),
        json!({
            "Type": "AWS::RDS::DBSubnetGroup",
            "Condition": "CreateDatabaseCondition",
            "Properties": {
                "DBSubnetGroupDescription": format!("Subnets of {identifier}"),
                "SubnetIds": {"Ref": "SubnetIds"},
            },
        }),
    );
    resources.insert(
        "Database".into(),
        json!({
            "Type": "AWS::RDS::DBInstance",
            "Condition": "CreateDatabaseCondition",
            "DeletionPolicy": "Snapshot",
            "UpdateReplacePolicy": "Snapshot",
            "Properties": {
                "DBInstanceIdentifier": identifier,
                "Engine": "postgres",
                "DBInstanceClass": {"Ref": "DatabaseInstanceClass"},
                "AllocatedStorage": {"Ref": "DatabaseStorageGiB"},
                "MasterUsername": {"Ref": "DatabaseUsername"},
                "ManageMasterUserPassword": true,
                "StorageEncrypted": true,
                "PubliclyAccessible": false,
                "BackupRetentionPeriod": 7,
                "DBSubnetGroupName": {"Ref": "DatabaseSubnetGroup"},
                "VPCSecurityGroups": {"Ref": "SecurityGroupIds"},
            },
        }),
    );
    outputs.insert(
        "DatabaseEndpoint".into(),
        json!({"Condition": "CreateDatabaseCondition", "Value": {"Fn::GetAtt": ["Database", "Endpoint.Address"]},
               "Description": "POSTGRES_SERVER"}),
    );
}

fn add_cache(
    parameters: &mut Map<String, Value>,
    conditions: &mut Map<String, Value>,
    resources: &mut Map<String, Value>,
    outputs: &mut Map<String, Value>,
    identifier: &str,
) {
    parameters.insert(
        "CreateCache".into(),
        boolean_parameter("Create the ElastiCache Redis cluster", true),
    );
    parameters.insert(
        "CacheNodeType".into(),
        json!({"Type": "String", "Default": "cache.t4g.micro", "Description": "ElastiCache node type"}),
    );
    conditions.insert("CreateCacheCondition".into(), is_true("CreateCache"));
    resources.insert(
        "CacheSubnetGroup".into(),
        json!({
            "Type": "AWS::ElastiCache::SubnetGroup",
            "Condition": "CreateCacheCondition",
            "Properties": {
                "Description": format!("Subnets of {identifier}"),
                "SubnetIds": {"Ref": "SubnetIds"},
            },
        }),
    );
    resources.insert(
        "Cache".into(),
        json!({
            "Type": "AWS::ElastiCache::CacheCluster",
            "Condition": "CreateCacheCondition",
            "Properties": {
                "ClusterName": identifier,
                "Engine": "redis",
                "CacheNodeType": {"Ref": "CacheNodeType"},
                "NumCacheNodes": 1,
                "CacheSubnetGroupName": {"Ref": "CacheSubnetGroup"},
                "VpcSecurityGroupIds": {"Ref": "SecurityGroupIds"},
            },
        }),
    );
    outputs.insert(
        "CacheEndpoint".into(),
        json!({"Condition": "CreateCacheCondition", "Value": {"Fn::GetAtt": ["Cache", "RedisEndpoint.Address"]},
               "Description": "Host of REDIS_URL"}),
    );
}

fn add_broker(
    parameters: &mut Map<String, Value>,
    conditions: &mut Map<String, Value>,
    resources: &mut Map<String, Value>,
    outputs: &mut Map<String, Value>,
    identifier: &str,
) {
    parameters.insert(
        "CreateBroker".into(),
        boolean_parameter("Create the Amazon MQ RabbitMQ broker", true),
    );
    parameters.insert(
        "BrokerInstanceType".into(),
        json!({"Type": "String", "Default": "mq.t3.micro", "Description": "Amazon MQ instance type"}),
    );
    conditions.insert("CreateBrokerCondition".into(), is_true("CreateBroker"));
    // The broker's password is generated into Secrets Manager and resolved at deploy time, so
    // it never appears in the template or the stack's parameters.
    resources.insert(
        "BrokerCredentials".into(),
        json!({
            "Type": "AWS::SecretsManager::Secret",
            "Condition": "CreateBrokerCondition",
            "Properties": {
                "Description": format!("RabbitMQ user of {identifier}"),
                "GenerateSecretString": {
                    "SecretStringTemplate": "{\"username\": \"kaapi\"}",
                    "GenerateStringKey": "password",
                    "PasswordLength": 32,
                    "ExcludeCharacters": ",:=\"'\\/@ ",
                },
            },
        }),
    );
    resources.insert(
        "Broker".into(),
        json!({
            "Type": "AWS::AmazonMQ::Broker",
            "Condition": "CreateBrokerCondition",
            "Properties": {
                "BrokerName": identifier,
                "EngineType": "RABBITMQ",
                "EngineVersion": "3.13",
                "HostInstanceType": {"Ref": "BrokerInstanceType"},
                "DeploymentMode": "SINGLE_INSTANCE",
                "AutoMinorVersionUpgrade": true,
                "PubliclyAccessible": false,
                "SubnetIds": [{"Fn::Select": [0, {"Ref": "SubnetIds"}]}],
                "SecurityGroups": {"Ref": "SecurityGroupIds"},
                "Users": [{
                    "Username": sub("{{resolve:secretsmanager:${BrokerCredentials}:SecretString:username}}"),
                    "Password": sub("{{resolve:secretsmanager:${BrokerCredentials}:SecretString:password}}"),
                }],
            },
        }),
    );
    outputs.insert(
        "BrokerCredentialsArn".into(),
        json!({"Condition": "CreateBrokerCondition", "Value": {"Ref": "BrokerCredentials"},
               "Description": "Secrets Manager secret holding RABBITMQ_USER and RABBITMQ_PASSWORD"}),
    );
}
