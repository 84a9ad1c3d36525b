//! A scripted AWS for scenario tests, made of aws-smithy-mocks rules (`mock!` +
//! `mock_client!`) whose responses are computed from one shared state: task-definition
//! revisions, services with deployments that progress on a script (complete after a while, fail
//! and get rolled back by the circuit breaker, or stay stuck), one-off tasks with scripted exits,
//! the deploy lock's DynamoDB item, and a log of every call made.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aws_sdk_ecs::error::ErrorMetadata;
use aws_sdk_ecs::types::{
    AwsVpcConfiguration, Container, Deployment, DeploymentRolloutState, LaunchType,
    NetworkConfiguration, Service, ServiceEvent, Tag, Task, TaskDefinition, TaskStopCode,
};
use aws_smithy_mocks::{mock, mock_client, MockResponse, Rule, RuleMode};
use base64::Engine as _;
use kaapi_ecs::AwsClients;
use kaapi_testkit::aws_record::Recorder;
use tokio::time::Instant;

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "eu-west-1";
pub const CLUSTER: &str = "kaapi-staging-cluster";

/// How ECS treats the next deployment of a service.
#[derive(Debug, Clone)]
pub enum Plan {
    /// `COMPLETED` this long after UpdateService.
    Complete(Duration),
    /// Tasks keep failing; this long after UpdateService the circuit breaker marks it FAILED and
    /// starts a rollback deployment of the previous revision.
    CircuitBreaker(Duration),
    /// Never finishes.
    Stuck,
}

/// How the next one-off task ends.
#[derive(Debug, Clone)]
pub enum TaskScript {
    Exit(i32),
    FailedToStart(&'static str),
}

#[derive(Debug, Clone)]
struct Dep {
    id: String,
    task_definition: String,
    primary: bool,
    state: DeploymentRolloutState,
    reason: Option<String>,
    started: Instant,
    /// When ECS created the deployment (its `createdAt`).
    created: std::time::SystemTime,
    plan: Plan,
    desired: i32,
}

#[derive(Debug, Clone)]
struct Svc {
    name: String,
    deployments: Vec<Dep>,
    events: Vec<ServiceEvent>,
    /// The service's own tags (a scaling event).
    tags: Vec<Tag>,
}

#[derive(Debug)]
struct RunningTask {
    arn: String,
    script: TaskScript,
    polls: u32,
}

#[derive(Default)]
pub struct State {
    /// Every call, e.g. `ecs:UpdateService kaapi-staging-worker-service`.
    pub calls: Vec<String>,
    definitions: Vec<(TaskDefinition, Vec<Tag>)>,
    services: Vec<Svc>,
    plans: HashMap<String, VecDeque<Plan>>,
    tasks_script: VecDeque<TaskScript>,
    tasks: Vec<RunningTask>,
    pub throttle_describe_services: usize,
    /// The deploy lock's item.
    lock: Option<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>,
    pub image_digest: String,
    /// Why the tasks of a service's failing deployment stop, by ECS service name: the task's
    /// `stoppedReason` and its container's `reason`.
    stopped_reasons: HashMap<String, (String, Option<String>)>,
    /// CloudWatch log groups; `deny_create_log_group` answers CreateLogGroup with AccessDenied.
    pub log_groups: Vec<String>,
    pub deny_create_log_group: bool,
    /// The line every task's log holds; an alembic upgrade line when `None`.
    pub task_log: Option<String>,
    /// The command of every RunTask, in order (`alembic current`).
    pub task_commands: Vec<String>,
    /// The ECR repository: each image's digest and its tags.
    images: Vec<(String, Vec<String>)>,
    /// When ECS marked each deployment COMPLETED (simulated clock), by deployment id.
    pub completed_at: HashMap<String, Instant>,
    /// Every UpdateService: the service, its task definition and desired count as sent.
    pub updates: Vec<(String, Option<String>, Option<i32>)>,
    counter: u64,
}

impl State {
    fn next_id(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn register(&mut self, mut definition: TaskDefinition, tags: Vec<Tag>) -> TaskDefinition {
        let family = definition.family().unwrap_or_default().to_owned();
        let revision = self
            .definitions
            .iter()
            .filter(|(d, _)| d.family() == Some(family.as_str()))
            .count() as i32
            + 1;
        definition.revision = revision;
        definition.task_definition_arn = Some(format!(
            "arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:{revision}"
        ));
        self.definitions.push((definition.clone(), tags));
        definition
    }

    fn find_definition(&self, reference: &str) -> Option<&(TaskDefinition, Vec<Tag>)> {
        if reference.starts_with("arn:") {
            return self
                .definitions
                .iter()
                .find(|(d, _)| d.task_definition_arn() == Some(reference));
        }
        match reference.split_once(':') {
            Some((family, rev)) => self
                .definitions
                .iter()
                .find(|(d, _)| d.family() == Some(family) && d.revision().to_string() == rev),
            None => self
                .definitions
                .iter()
                .filter(|(d, _)| d.family() == Some(reference))
                .max_by_key(|(d, _)| d.revision()),
        }
    }

    /// A stopped task of the deployment that failed on a service (else its newest one).
    fn stopped_service_task(&self, arn: &str) -> Option<Task> {
        let service = arn.rsplit_once("/stopped-")?.1;
        let (stopped, container) = self.stopped_reasons.get(service)?;
        let svc = self.services.iter().find(|s| s.name == service)?;
        let deployment = svc
            .deployments
            .iter()
            .find(|d| d.state == DeploymentRolloutState::Failed)
            .or(svc.deployments.first())?;
        Some(
            Task::builder()
                .task_arn(arn)
                .task_definition_arn(&deployment.task_definition)
                .last_status("STOPPED")
                .stopped_reason(stopped)
                .containers(
                    Container::builder()
                        .name("backend")
                        .set_reason(container.clone())
                        .build(),
                )
                .build(),
        )
    }

    /// Moves deployments along their plans (what ECS does between two DescribeServices).
    fn progress(&mut self) {
        let now = Instant::now();
        let mut completions = Vec::new();
        for svc in &mut self.services {
            let mut rollback: Option<(String, String)> = None;
            for dep in svc.deployments.iter_mut() {
                if dep.state != DeploymentRolloutState::InProgress || !dep.primary {
                    continue;
                }
                let elapsed = now.duration_since(dep.started);
                match dep.plan.clone() {
                    Plan::Complete(after) if elapsed >= after => {
                        dep.state = DeploymentRolloutState::Completed;
                        completions.push((dep.id.clone(), dep.started + after));
                        svc.events.insert(
                            0,
                            event(&format!(
                                "(service {}) has reached a steady state.",
                                svc.name
                            )),
                        );
                    }
                    Plan::CircuitBreaker(after) if elapsed >= after => {
                        dep.state = DeploymentRolloutState::Failed;
                        dep.primary = false;
                        dep.reason = Some(
                            "ECS deployment circuit breaker: tasks failed to start.".to_owned(),
                        );
                        rollback = Some((dep.id.clone(), dep.task_definition.clone()));
                    }
                    _ => {}
                }
            }
            if let Some((failed_id, failed_td)) = rollback {
                let previous = svc
                    .deployments
                    .iter()
                    .find(|d| d.id != failed_id && d.task_definition != failed_td)
                    .map(|d| (d.task_definition.clone(), d.desired));
                if let Some((td, desired)) = previous {
                    svc.deployments.retain(|d| d.id == failed_id);
                    svc.deployments.insert(
                        0,
                        Dep {
                            id: format!("ecs-svc/rollback-{failed_id}"),
                            task_definition: td.clone(),
                            primary: true,
                            state: DeploymentRolloutState::InProgress,
                            reason: None,
                            started: now,
                            created: std::time::SystemTime::now(),
                            plan: Plan::Complete(Duration::from_secs(30)),
                            desired,
                        },
                    );
                    svc.events.insert(
                        0,
                        event(&format!(
                            "(service {}) rolling back to deployment with task definition {td}.",
                            svc.name
                        )),
                    );
                }
            }
            // Completed deployments drain the older ones.
            if let Some(done) = svc
                .deployments
                .iter()
                .position(|d| d.primary && d.state == DeploymentRolloutState::Completed)
            {
                let keep = svc.deployments[done].id.clone();
                svc.deployments
                    .retain(|d| d.id == keep || d.state == DeploymentRolloutState::Failed);
            }
        }
        for (id, at) in completions {
            self.completed_at.insert(id, at);
        }
    }

    fn service_out(&self, svc: &Svc) -> Service {
        let primary = svc.deployments.iter().find(|d| d.primary);
        Service::builder()
            .service_name(&svc.name)
            .service_arn(format!(
                "arn:aws:ecs:{REGION}:{ACCOUNT}:service/{CLUSTER}/{}",
                svc.name
            ))
            .status("ACTIVE")
            .set_task_definition(primary.map(|d| d.task_definition.clone()))
            .desired_count(primary.map(|d| d.desired).unwrap_or(1))
            .running_count(primary.map(|d| d.desired).unwrap_or(1))
            .launch_type(LaunchType::Fargate)
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(
                        AwsVpcConfiguration::builder()
                            .subnets("subnet-1")
                            .security_groups("sg-1")
                            .build()
                            .expect("vpc configuration"),
                    )
                    .build(),
            )
            .set_deployments(Some(
                svc.deployments
                    .iter()
                    .map(|d| {
                        Deployment::builder()
                            .id(&d.id)
                            .status(if d.primary { "PRIMARY" } else { "ACTIVE" })
                            .task_definition(&d.task_definition)
                            .created_at(aws_sdk_ecs::primitives::DateTime::from(d.created))
                            .rollout_state(d.state.clone())
                            .set_rollout_state_reason(d.reason.clone())
                            .desired_count(d.desired)
                            .running_count(if d.state == DeploymentRolloutState::Completed {
                                d.desired
                            } else {
                                0
                            })
                            .pending_count(0)
                            .build()
                    })
                    .collect(),
            ))
            .set_events(Some(svc.events.clone()))
            .build()
    }
}

fn event(message: &str) -> ServiceEvent {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    ServiceEvent::builder()
        .id(format!("event-{n}"))
        .created_at(aws_sdk_ecs::primitives::DateTime::from(
            std::time::SystemTime::now(),
        ))
        .message(message)
        .build()
}

fn meta(code: &str, message: &str) -> ErrorMetadata {
    ErrorMetadata::builder().code(code).message(message).build()
}

/// The scripted AWS; clone the handle into tests to script and inspect.
#[derive(Clone, Default)]
pub struct FakeAws {
    state: Arc<Mutex<State>>,
}

impl FakeAws {
    pub fn new(image_digest: &str) -> Self {
        let fake = Self::default();
        fake.state().image_digest = image_digest.to_owned();
        fake
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("fake state lock")
    }

    /// A service that exists with a hand-made revision 1 (no kaapi tags), as before Kaapi.
    pub fn add_service(&self, ecs_name: &str, family: &str, container: &str) {
        let definition = TaskDefinition::builder()
            .family(family)
            .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
            .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
            .execution_role_arn(format!("arn:aws:iam::{ACCOUNT}:role/kaapi-execution"))
            .cpu("256")
            .memory("512")
            .container_definitions(
                aws_sdk_ecs::types::ContainerDefinition::builder()
                    .name(container)
                    .image(format!(
                        "{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/kaapi-staging-repo:latest"
                    ))
                    .essential(true)
                    .memory(512)
                    .build(),
            )
            .build();
        self.add_service_with(ecs_name, definition);
    }

    /// A service that runs `definition` (registered as its family's next revision).
    pub fn add_service_with(&self, ecs_name: &str, definition: TaskDefinition) {
        let mut state = self.state();
        let registered = state.register(definition, Vec::new());
        let id = format!("ecs-svc/{}", state.next_id());
        state.services.push(Svc {
            tags: Vec::new(),
            name: ecs_name.to_owned(),
            deployments: vec![Dep {
                id,
                task_definition: registered
                    .task_definition_arn()
                    .unwrap_or_default()
                    .to_owned(),
                primary: true,
                state: DeploymentRolloutState::Completed,
                reason: None,
                started: Instant::now(),
                created: std::time::SystemTime::now(),
                plan: Plan::Complete(Duration::ZERO),
                desired: 1,
            }],
            events: Vec::new(),
        });
    }

    /// The three services of the test config.
    pub fn kaapi_staging() -> Self {
        let fake = Self::new(DIGEST);
        fake.add_service("kaapi-staging-service", "kaapi-staging-backend", "backend");
        fake.add_service(
            "kaapi-staging-worker-service",
            "kaapi-staging-worker",
            "worker",
        );
        fake.add_service(
            "kaapi-staging-flower-service",
            "kaapi-staging-flower",
            "flower",
        );
        // What `infra template` creates next to the services.
        fake.state().log_groups = [
            "kaapi-staging-service",
            "kaapi-staging-worker-service",
            "kaapi-staging-flower-service",
        ]
        .iter()
        .map(|s| format!("/ecs/{CLUSTER}/{s}"))
        .collect();
        fake
    }

    /// The tasks of `ecs_name`'s next deployment stop with these reasons (as ECS writes them).
    pub fn tasks_stop_with(&self, ecs_name: &str, stopped: &str, container: Option<&str>) {
        self.state().stopped_reasons.insert(
            ecs_name.to_owned(),
            (stopped.to_owned(), container.map(str::to_owned)),
        );
    }

    pub fn plan(&self, ecs_name: &str, plan: Plan) {
        self.state()
            .plans
            .entry(ecs_name.to_owned())
            .or_default()
            .push_back(plan);
    }

    pub fn script_task(&self, script: TaskScript) {
        self.state().tasks_script.push_back(script);
    }

    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }

    pub fn count(&self, prefix: &str) -> usize {
        self.state()
            .calls
            .iter()
            .filter(|c| c.starts_with(prefix))
            .count()
    }

    pub fn clear_calls(&self) {
        self.state().calls.clear();
    }

    /// The task definition a service runs now.
    pub fn live_revision(&self, ecs_name: &str) -> Option<String> {
        self.state()
            .services
            .iter()
            .find(|s| s.name == ecs_name)
            .and_then(|s| s.deployments.iter().find(|d| d.primary))
            .map(|d| d.task_definition.clone())
    }

    pub fn definition(&self, reference: &str) -> Option<(TaskDefinition, Vec<Tag>)> {
        self.state().find_definition(reference).cloned()
    }

    pub fn tag(&self, reference: &str, key: &str) -> Option<String> {
        self.definition(reference).and_then(|(_, tags)| {
            tags.iter()
                .find(|t| t.key() == Some(key))
                .and_then(|t| t.value().map(str::to_owned))
        })
    }

    fn log(&self, call: String) {
        self.state().calls.push(call);
    }

    pub fn clients(&self) -> AwsClients {
        self.clients_recorded_by(None)
    }

    /// [`Self::clients`] whose every request `recorder` sees as it goes on the wire.
    pub fn recorded_clients(&self, recorder: &Recorder) -> AwsClients {
        self.clients_recorded_by(Some(recorder))
    }

    fn clients_recorded_by(&self, recorder: Option<&Recorder>) -> AwsClients {
        use aws_sdk_ecs::config::retry::RetryConfig;
        // Each SDK's config builder is its own type: one closure per client.
        macro_rules! recorded {
            ($sdk:ident) => {
                move |b: $sdk::config::Builder| match recorder {
                    Some(r) => b.http_client(r.wrap(aws_smithy_mocks::create_mock_http_client())),
                    None => b,
                }
            };
        }
        let ecs_rules = self.ecs_rules();
        let ecr_rules = self.ecr_rules();
        let lock_rules = self.dynamodb_rules();
        let logs_rules = self.logs_rules();
        let metrics_rules = self.metrics_rules();
        let metrics_refs: Vec<&Rule> = metrics_rules.iter().collect();
        let ecs_refs: Vec<&Rule> = ecs_rules.iter().collect();
        let ecr_refs: Vec<&Rule> = ecr_rules.iter().collect();
        let lock_refs: Vec<&Rule> = lock_rules.iter().collect();
        let logs_refs: Vec<&Rule> = logs_rules.iter().collect();
        // The SDK's own retries are off so that the engine's handling of throttling is what the
        // tests see.
        AwsClients {
            region: REGION.to_owned(),
            ecs: mock_client!(
                aws_sdk_ecs,
                RuleMode::MatchAny,
                &ecs_refs,
                |b: aws_sdk_ecs::config::Builder| {
                    let recorded = recorded!(aws_sdk_ecs);
                    recorded(b.retry_config(RetryConfig::disabled()))
                }
            ),
            ecr: mock_client!(
                aws_sdk_ecr,
                RuleMode::MatchAny,
                &ecr_refs,
                recorded!(aws_sdk_ecr)
            ),
            logs: mock_client!(
                aws_sdk_cloudwatchlogs,
                RuleMode::MatchAny,
                &logs_refs,
                recorded!(aws_sdk_cloudwatchlogs)
            ),
            cloudwatch: mock_client!(
                aws_sdk_cloudwatch,
                RuleMode::MatchAny,
                &metrics_refs,
                recorded!(aws_sdk_cloudwatch)
            ),
            dynamodb: mock_client!(
                aws_sdk_dynamodb,
                RuleMode::MatchAny,
                &lock_refs,
                recorded!(aws_sdk_dynamodb)
            ),
            sts: mock_client!(aws_sdk_sts, RuleMode::MatchAny, &[], recorded!(aws_sdk_sts)),
        }
    }

    fn ecs_rules(&self) -> Vec<Rule> {
        use aws_sdk_ecs::operation as op;
        use aws_sdk_ecs::Client;
        let mut rules = Vec::new();

        let f = self.clone();
        rules.push(
            mock!(Client::describe_services).then_compute_response(move |input| {
                f.log(format!(
                    "ecs:DescribeServices {}",
                    input.services().join(",")
                ));
                let mut state = f.state();
                if state.throttle_describe_services > 0 {
                    state.throttle_describe_services -= 1;
                    return MockResponse::Error(
                        op::describe_services::DescribeServicesError::generic(meta(
                            "ThrottlingException",
                            "Rate exceeded",
                        )),
                    );
                }
                state.progress();
                let wanted = input.services();
                // Like ECS: a service's tags only with `include: TAGS`.
                let with_tags = input
                    .include()
                    .contains(&aws_sdk_ecs::types::ServiceField::Tags);
                let services = state
                    .services
                    .iter()
                    .filter(|s| wanted.contains(&s.name))
                    .map(|s| {
                        let mut out = state.service_out(s);
                        if with_tags {
                            out.tags = Some(s.tags.clone());
                        }
                        out
                    })
                    .collect();
                MockResponse::Output(
                    op::describe_services::DescribeServicesOutput::builder()
                        .set_services(Some(services))
                        .build(),
                )
            }),
        );

        let f = self.clone();
        rules.push(
            mock!(Client::describe_task_definition).then_compute_response(move |input| {
                let reference = input.task_definition().unwrap_or_default().to_owned();
                f.log(format!("ecs:DescribeTaskDefinition {reference}"));
                match f.state().find_definition(&reference).cloned() {
                    Some((definition, tags)) => MockResponse::Output(
                        op::describe_task_definition::DescribeTaskDefinitionOutput::builder()
                            .task_definition(definition)
                            .set_tags(Some(tags))
                            .build(),
                    ),
                    None => MockResponse::Error(
                        op::describe_task_definition::DescribeTaskDefinitionError::generic(meta(
                            "ClientException",
                            "Unable to describe task definition.",
                        )),
                    ),
                }
            }),
        );

        let f = self.clone();
        rules.push(
            mock!(Client::register_task_definition).then_compute_response(move |input| {
                let family = input.family().unwrap_or_default().to_owned();
                f.log(format!("ecs:RegisterTaskDefinition {family}"));
                let definition = TaskDefinition::builder()
                    .family(&family)
                    .set_container_definitions(input.container_definitions.clone())
                    .set_network_mode(input.network_mode.clone())
                    .set_requires_compatibilities(input.requires_compatibilities.clone())
                    .set_cpu(input.cpu.clone())
                    .set_memory(input.memory.clone())
                    .set_execution_role_arn(input.execution_role_arn.clone())
                    .set_task_role_arn(input.task_role_arn.clone())
                    .set_volumes(input.volumes.clone())
                    .build();
                let tags = input.tags.clone().unwrap_or_default();
                let registered = f.state().register(definition, tags.clone());
                MockResponse::Output(
                    op::register_task_definition::RegisterTaskDefinitionOutput::builder()
                        .task_definition(registered)
                        .set_tags(Some(tags))
                        .build(),
                )
            }),
        );

        let f = self.clone();
        rules.push(
            mock!(Client::list_task_definitions).then_compute_response(move |input| {
                let prefix = input.family_prefix().unwrap_or_default().to_owned();
                f.log(format!("ecs:ListTaskDefinitions {prefix}"));
                let state = f.state();
                let mut found: Vec<&TaskDefinition> = state
                    .definitions
                    .iter()
                    .map(|(d, _)| d)
                    .filter(|d| d.family().unwrap_or_default().starts_with(&prefix))
                    .filter(|d| {
                        d.status() != Some(&aws_sdk_ecs::types::TaskDefinitionStatus::Inactive)
                    })
                    .collect();
                found.sort_by_key(|d| std::cmp::Reverse(d.revision()));
                MockResponse::Output(
                    op::list_task_definitions::ListTaskDefinitionsOutput::builder()
                        .set_task_definition_arns(Some(
                            found
                                .iter()
                                .filter_map(|d| d.task_definition_arn().map(str::to_owned))
                                .collect(),
                        ))
                        .build(),
                )
            }),
        );

        let f = self.clone();
        rules.push(
            mock!(Client::deregister_task_definition).then_compute_response(move |input| {
                let arn = input.task_definition().unwrap_or_default().to_owned();
                f.log(format!("ecs:DeregisterTaskDefinition {arn}"));
                // INACTIVE revisions leave ListTaskDefinitions (which lists ACTIVE ones by
                // default: API_DeregisterTaskDefinition / API_ListTaskDefinitions, `status`).
                for (d, _) in f.state().definitions.iter_mut() {
                    if d.task_definition_arn() == Some(arn.as_str()) {
                        d.status = Some(aws_sdk_ecs::types::TaskDefinitionStatus::Inactive);
                    }
                }
                MockResponse::Output(
                    op::deregister_task_definition::DeregisterTaskDefinitionOutput::builder()
                        .build(),
                )
            }),
        );

        let f = self.clone();
        rules.push(
            mock!(Client::tag_resource).then_compute_response(move |input| {
                let arn = input.resource_arn().unwrap_or_default().to_owned();
                f.log(format!("ecs:TagResource {arn}"));
                let mut state = f.state();
                let service = arn.rsplit('/').next().unwrap_or_default().to_owned();
                let tags = if arn.contains(":service/") {
                    state
                        .services
                        .iter_mut()
                        .find(|s| s.name == service)
                        .map(|s| &mut s.tags)
                } else {
                    state
                        .definitions
                        .iter_mut()
                        .find(|(d, _)| d.task_definition_arn() == Some(arn.as_str()))
                        .map(|(_, tags)| tags)
                };
                if let Some(tags) = tags {
                    for tag in input.tags() {
                        tags.retain(|t| t.key() != tag.key());
                        tags.push(tag.clone());
                    }
                }
                MockResponse::Output(op::tag_resource::TagResourceOutput::builder().build())
            }),
        );

        let f = self.clone();
        rules.push(
            mock!(Client::list_tags_for_resource).then_compute_response(move |input| {
                let arn = input.resource_arn().unwrap_or_default().to_owned();
                f.log(format!("ecs:ListTagsForResource {arn}"));
                let state = f.state();
                let service = arn.rsplit('/').next().unwrap_or_default();
                let tags = state
                    .services
                    .iter()
                    .find(|s| arn.contains(":service/") && s.name == service)
                    .map(|s| s.tags.clone())
                    .or_else(|| state.find_definition(&arn).map(|(_, tags)| tags.clone()))
                    .unwrap_or_default();
                MockResponse::Output(
                    op::list_tags_for_resource::ListTagsForResourceOutput::builder()
                        .set_tags(Some(tags))
                        .build(),
                )
            }),
        );

        let f = self.clone();
        rules.push(
            mock!(Client::update_service).then_compute_response(move |input| {
                let name = input.service().unwrap_or_default().to_owned();
                let td = input.task_definition().unwrap_or_default().to_owned();
                f.log(format!("ecs:UpdateService {name}"));
                let mut state = f.state();
                state.updates.push((
                    name.clone(),
                    input.task_definition().map(str::to_owned),
                    input.desired_count(),
                ));
                state.progress();
                // Only a desired count (`scale`): the primary deployment runs that many.
                if input.task_definition().is_none() {
                    let Some(svc) = state.services.iter_mut().find(|s| s.name == name) else {
                        return MockResponse::Error(
                            op::update_service::UpdateServiceError::generic(meta(
                                "ServiceNotFoundException",
                                "Service not found.",
                            )),
                        );
                    };
                    if let (Some(primary), Some(desired)) = (
                        svc.deployments.iter_mut().find(|d| d.primary),
                        input.desired_count(),
                    ) {
                        primary.desired = desired;
                    }
                    let svc = svc.clone();
                    return MockResponse::Output(
                        op::update_service::UpdateServiceOutput::builder()
                            .service(state.service_out(&svc))
                            .build(),
                    );
                }
                let plan = state
                    .plans
                    .get_mut(&name)
                    .and_then(|p| p.pop_front())
                    .unwrap_or(Plan::Complete(Duration::from_millis(50)));
                let id = format!("ecs-svc/{}", state.next_id());
                let desired = input.desired_count().unwrap_or(1);
                let Some(svc) = state.services.iter_mut().find(|s| s.name == name) else {
                    return MockResponse::Error(op::update_service::UpdateServiceError::generic(
                        meta("ServiceNotFoundException", "Service not found."),
                    ));
                };
                let breaker = input
                    .deployment_configuration()
                    .and_then(|c| c.deployment_circuit_breaker())
                    .is_some_and(|b| b.enable() && b.rollback());
                assert!(breaker, "UpdateService must enable the circuit breaker");
                let same = svc.deployments.iter().any(|d| {
                    d.primary
                        && d.task_definition == td
                        && d.state == DeploymentRolloutState::Completed
                });
                if !same {
                    for d in svc.deployments.iter_mut() {
                        d.primary = false;
                    }
                    svc.deployments.insert(
                        0,
                        Dep {
                            id,
                            task_definition: td,
                            primary: true,
                            state: DeploymentRolloutState::InProgress,
                            reason: None,
                            started: Instant::now(),
                            created: std::time::SystemTime::now(),
                            plan,
                            desired,
                        },
                    );
                }
                let svc = svc.clone();
                MockResponse::Output(
                    op::update_service::UpdateServiceOutput::builder()
                        .service(state.service_out(&svc))
                        .build(),
                )
            }),
        );

        let f = self.clone();
        rules.push(mock!(Client::run_task).then_compute_response(move |input| {
            f.log(format!(
                "ecs:RunTask {}",
                input.task_definition().unwrap_or_default()
            ));
            // AWS runs no new task of a deregistered (INACTIVE) revision: "You can't use an
            // INACTIVE task definition to run new tasks" (API_DeregisterTaskDefinition).
            let inactive = f
                .state()
                .find_definition(input.task_definition().unwrap_or_default())
                .is_some_and(|(d, _)| {
                    d.status() == Some(&aws_sdk_ecs::types::TaskDefinitionStatus::Inactive)
                });
            if inactive {
                return MockResponse::Error(op::run_task::RunTaskError::generic(meta(
                    "ClientException",
                    "TaskDefinition is inactive",
                )));
            }
            assert!(
                input.network_configuration().is_some(),
                "RunTask must copy the service's network configuration"
            );
            let mut state = f.state();
            let command = input
                .overrides()
                .map(|o| o.container_overrides())
                .and_then(|c| c.first())
                .map(|c| c.command().join(" "))
                .unwrap_or_default();
            state.task_commands.push(command);
            let script = state
                .tasks_script
                .pop_front()
                .unwrap_or(TaskScript::Exit(0));
            let arn = format!(
                "arn:aws:ecs:{REGION}:{ACCOUNT}:task/{CLUSTER}/task{:08}",
                state.next_id()
            );
            state.tasks.push(RunningTask {
                arn: arn.clone(),
                script,
                polls: 0,
            });
            MockResponse::Output(
                op::run_task::RunTaskOutput::builder()
                    .tasks(
                        Task::builder()
                            .task_arn(arn)
                            .last_status("PROVISIONING")
                            .build(),
                    )
                    .build(),
            )
        }));

        let f = self.clone();
        rules.push(
            mock!(Client::describe_tasks).then_compute_response(move |input| {
                f.log("ecs:DescribeTasks".to_owned());
                let mut state = f.state();
                let mut tasks = Vec::new();
                for arn in input.tasks() {
                    if let Some(task) = state.stopped_service_task(arn) {
                        tasks.push(task);
                        continue;
                    }
                    let Some(task) = state.tasks.iter_mut().find(|t| &t.arn == arn) else {
                        continue;
                    };
                    task.polls += 1;
                    let out = if task.polls < 2 {
                        Task::builder().task_arn(arn).last_status("RUNNING").build()
                    } else {
                        match &task.script {
                            TaskScript::Exit(code) => Task::builder()
                                .task_arn(arn)
                                .last_status("STOPPED")
                                .stop_code(TaskStopCode::EssentialContainerExited)
                                .stopped_reason("Essential container in task exited")
                                .containers(
                                    Container::builder()
                                        .name("backend")
                                        .exit_code(*code)
                                        .build(),
                                )
                                .build(),
                            TaskScript::FailedToStart(reason) => Task::builder()
                                .task_arn(arn)
                                .last_status("STOPPED")
                                .stop_code(TaskStopCode::TaskFailedToStart)
                                .stopped_reason(*reason)
                                .containers(Container::builder().name("backend").build())
                                .build(),
                        }
                    };
                    tasks.push(out);
                }
                MockResponse::Output(
                    op::describe_tasks::DescribeTasksOutput::builder()
                        .set_tasks(Some(tasks))
                        .build(),
                )
            }),
        );

        let f = self.clone();
        rules.push(
            mock!(Client::list_tasks).then_compute_response(move |input| {
                let service = input.service_name().unwrap_or_default().to_owned();
                f.log(format!("ecs:ListTasks {service}"));
                let arns = f.state().stopped_reasons.contains_key(&service).then(|| {
                    vec![format!(
                        "arn:aws:ecs:{REGION}:{ACCOUNT}:task/{CLUSTER}/stopped-{service}"
                    )]
                });
                MockResponse::Output(
                    op::list_tasks::ListTasksOutput::builder()
                        .set_task_arns(arns)
                        .build(),
                )
            }),
        );

        let f = self.clone();
        rules.push(mock!(Client::stop_task).then_compute_response(move |_| {
            f.log("ecs:StopTask".to_owned());
            MockResponse::Output(op::stop_task::StopTaskOutput::builder().build())
        }));
        rules
    }

    fn ecr_rules(&self) -> Vec<Rule> {
        use aws_sdk_ecr::operation as op;
        use aws_sdk_ecr::types::{AuthorizationData, ImageDetail};
        use aws_sdk_ecr::Client;
        let mut rules = Vec::new();
        let f = self.clone();
        rules.push(
            mock!(Client::get_authorization_token).then_compute_response(move |_| {
                f.log("ecr:GetAuthorizationToken".to_owned());
                MockResponse::Output(
                    op::get_authorization_token::GetAuthorizationTokenOutput::builder()
                        .authorization_data(
                            AuthorizationData::builder()
                                .authorization_token(
                                    base64::engine::general_purpose::STANDARD
                                        .encode("AWS:ecr-password"),
                                )
                                .proxy_endpoint(format!(
                                    "https://{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
                                ))
                                .build(),
                        )
                        .build(),
                )
            }),
        );
        let f = self.clone();
        rules.push(
            mock!(Client::describe_images).then_compute_response(move |input| {
                f.log("ecr:DescribeImages".to_owned());
                let found = input
                    .image_ids()
                    .iter()
                    .find_map(|id| f.find_image(id.image_digest(), id.image_tag()));
                if let Some(digest) = found {
                    MockResponse::Output(
                        op::describe_images::DescribeImagesOutput::builder()
                            .image_details(ImageDetail::builder().image_digest(digest).build())
                            .build(),
                    )
                } else {
                    MockResponse::Error(op::describe_images::DescribeImagesError::generic(meta(
                        "ImageNotFoundException",
                        "The image does not exist",
                    )))
                }
            }),
        );
        let f = self.clone();
        rules.push(
            mock!(Client::batch_delete_image).then_compute_response(move |input| {
                let digests: Vec<String> = input
                    .image_ids()
                    .iter()
                    .filter_map(|id| id.image_digest().map(str::to_owned))
                    .collect();
                f.log(format!("ecr:BatchDeleteImage {}", digests.len()));
                f.state().images.retain(|(d, _)| !digests.contains(d));
                MockResponse::Output(
                    op::batch_delete_image::BatchDeleteImageOutput::builder().build(),
                )
            }),
        );
        rules
    }

    /// The digest the repository holds under `digest` or `tag`.
    fn find_image(&self, digest: Option<&str>, tag: Option<&str>) -> Option<String> {
        let state = self.state();
        state
            .images
            .iter()
            .find(|(d, tags)| {
                Some(d.as_str()) == digest || tag.is_some_and(|t| tags.iter().any(|x| x == t))
            })
            .map(|(d, _)| d.clone())
    }

    /// A push to the repository, refused like ECR refuses it for IMMUTABLE tags: a tag that
    /// already names another digest cannot move (the same digest again is accepted).
    pub fn push_image(&self, digest: &str, tags: &[String]) -> Result<(), String> {
        let mut state = self.state();
        for tag in tags {
            if state
                .images
                .iter()
                .any(|(d, t)| d != digest && t.contains(tag))
            {
                return Err(format!(
                    "ImageTagAlreadyExistsException: The image tag '{tag}' already exists in the 'kaapi-staging-repo' repository and cannot be overwritten because the repository is immutable."
                ));
            }
        }
        match state.images.iter_mut().find(|(d, _)| d == digest) {
            Some((_, existing)) => existing.extend(tags.iter().cloned()),
            None => state.images.push((digest.to_owned(), tags.to_vec())),
        }
        Ok(())
    }

    /// The deploy lock table, with DynamoDB's conditions as the engine writes them.
    fn dynamodb_rules(&self) -> Vec<Rule> {
        use aws_sdk_dynamodb::operation as op;
        use aws_sdk_dynamodb::types::AttributeValue;
        use aws_sdk_dynamodb::Client;
        fn number(item: Option<&HashMap<String, AttributeValue>>, key: &str) -> i64 {
            item.and_then(|i| i.get(key))
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok())
                .unwrap_or_default()
        }
        fn holds(
            item: Option<&HashMap<String, AttributeValue>>,
            id: Option<&AttributeValue>,
        ) -> bool {
            item.and_then(|i| i.get("lock_id"))
                .is_some_and(|v| Some(v) == id)
        }
        fn refused() -> ErrorMetadata {
            meta(
                "ConditionalCheckFailedException",
                "The conditional request failed",
            )
        }
        let mut rules = Vec::new();
        let f = self.clone();
        rules.push(mock!(Client::put_item).then_compute_response(move |input| {
            f.log("dynamodb:PutItem".to_owned());
            let mut state = f.state();
            let now = number(input.expression_attribute_values(), ":now");
            if state.lock.is_some() && number(state.lock.as_ref(), "expires_at") >= now {
                return MockResponse::Error(op::put_item::PutItemError::generic(refused()));
            }
            let old = state
                .lock
                .replace(input.item().cloned().unwrap_or_default());
            MockResponse::Output(
                op::put_item::PutItemOutput::builder()
                    .set_attributes(old)
                    .build(),
            )
        }));
        let f = self.clone();
        rules.push(mock!(Client::get_item).then_compute_response(move |_| {
            f.log("dynamodb:GetItem".to_owned());
            MockResponse::Output(
                op::get_item::GetItemOutput::builder()
                    .set_item(f.state().lock.clone())
                    .build(),
            )
        }));
        let f = self.clone();
        rules.push(
            mock!(Client::update_item).then_compute_response(move |input| {
                f.log("dynamodb:UpdateItem".to_owned());
                let mut state = f.state();
                let values = input.expression_attribute_values();
                if !holds(state.lock.as_ref(), values.and_then(|v| v.get(":id"))) {
                    return MockResponse::Error(op::update_item::UpdateItemError::generic(
                        refused(),
                    ));
                }
                if let (Some(item), Some(expires)) =
                    (state.lock.as_mut(), values.and_then(|v| v.get(":expires")))
                {
                    item.insert("expires_at".to_owned(), expires.clone());
                }
                MockResponse::Output(op::update_item::UpdateItemOutput::builder().build())
            }),
        );
        let f = self.clone();
        rules.push(
            mock!(Client::delete_item).then_compute_response(move |input| {
                f.log("dynamodb:DeleteItem".to_owned());
                let mut state = f.state();
                let conditional = input.condition_expression().is_some();
                let id = input
                    .expression_attribute_values()
                    .and_then(|v| v.get(":id"));
                if conditional && !holds(state.lock.as_ref(), id) {
                    return MockResponse::Error(op::delete_item::DeleteItemError::generic(
                        refused(),
                    ));
                }
                state.lock = None;
                MockResponse::Output(op::delete_item::DeleteItemOutput::builder().build())
            }),
        );
        rules
    }

    pub fn lock_held(&self) -> bool {
        self.state().lock.is_some()
    }

    /// CloudWatch metrics (`status`): no datapoints yet.
    fn metrics_rules(&self) -> Vec<Rule> {
        use aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataOutput;
        let f = self.clone();
        vec![
            mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_compute_response(move |_| {
                f.log("cloudwatch:GetMetricData".to_owned());
                MockResponse::Output(GetMetricDataOutput::builder().build())
            }),
        ]
    }

    fn logs_rules(&self) -> Vec<Rule> {
        use aws_sdk_cloudwatchlogs::operation as op;
        use aws_sdk_cloudwatchlogs::types::{FilteredLogEvent, LogGroup};
        use aws_sdk_cloudwatchlogs::Client;
        let f = self.clone();
        let groups = self.clone();
        let create = self.clone();
        vec![
            mock!(Client::describe_log_groups).then_compute_response(move |input| {
                let prefix = input.log_group_name_prefix().unwrap_or_default().to_owned();
                groups.log(format!("logs:DescribeLogGroups {prefix}"));
                let found = groups
                    .state()
                    .log_groups
                    .iter()
                    .filter(|g| g.starts_with(&prefix))
                    .map(|g| LogGroup::builder().log_group_name(g).build())
                    .collect();
                MockResponse::Output(
                    op::describe_log_groups::DescribeLogGroupsOutput::builder()
                        .set_log_groups(Some(found))
                        .build(),
                )
            }),
            mock!(Client::create_log_group).then_compute_response(move |input| {
                let name = input.log_group_name().unwrap_or_default().to_owned();
                create.log(format!("logs:CreateLogGroup {name}"));
                let mut state = create.state();
                if state.deny_create_log_group {
                    return MockResponse::Error(
                        op::create_log_group::CreateLogGroupError::generic(meta(
                            "AccessDeniedException",
                            "User is not authorized to perform: logs:CreateLogGroup",
                        )),
                    );
                }
                state.log_groups.push(name);
                MockResponse::Output(op::create_log_group::CreateLogGroupOutput::builder().build())
            }),
            mock!(Client::filter_log_events).then_compute_response(move |input| {
                f.log(format!(
                    "logs:FilterLogEvents {}",
                    input.log_group_name().unwrap_or_default()
                ));
                let stream = input
                    .log_stream_names()
                    .first()
                    .cloned()
                    .unwrap_or_default();
                let line = f.state().task_log.clone().unwrap_or_else(|| {
                    "INFO  [alembic] Running upgrade -> 0002_add_description".to_owned()
                });
                MockResponse::Output(
                    op::filter_log_events::FilterLogEventsOutput::builder()
                        .events(
                            FilteredLogEvent::builder()
                                .event_id("e1")
                                .log_stream_name(&stream)
                                .timestamp(1_700_000_000_000)
                                .message(line)
                                .build(),
                        )
                        .build(),
                )
            }),
        ]
    }
}

pub const DIGEST: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
