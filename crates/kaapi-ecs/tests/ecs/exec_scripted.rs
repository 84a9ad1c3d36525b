//! `exec` on ECS over scripted AWS responses: ExecuteCommand goes to the Nth running task (oldest
//! first) and the service's container, with the command as one shell-quoted string; without
//! `session-manager-plugin` on PATH the error says how to install it; a refused ExecuteCommand
//! points at `check`.

use std::sync::{Arc, Mutex};

use aws_sdk_ecs::operation as op;
use aws_sdk_ecs::primitives::DateTime;
use aws_sdk_ecs::types::{Container, Session, Task};
use aws_sdk_ecs::Client;
use aws_smithy_mocks::{mock, mock_client, MockResponse, RuleMode};
use kaapi_core::config::ResolvedEnvironment;
use kaapi_core::engine::{Engine, EngineError, ExecRequest};
use kaapi_ecs::exec::{find_on_path, PLUGIN, PLUGIN_MISSING};
use kaapi_ecs::{EcsEngine, Target};

use crate::support::fake_aws::{FakeAws, ACCOUNT, CLUSTER, REGION};
use crate::support::write_config;

const BACKEND: &str = "kaapi-staging-service";

fn task(id: &str, started: i64, status: &str) -> Task {
    Task::builder()
        .task_arn(format!(
            "arn:aws:ecs:{REGION}:{ACCOUNT}:task/{CLUSTER}/{id}"
        ))
        .last_status(status)
        .started_at(DateTime::from_secs(started))
        .containers(
            Container::builder()
                .name("log-router")
                .runtime_id(format!("{id}-router"))
                .build(),
        )
        .containers(
            Container::builder()
                .name("backend")
                .runtime_id(format!("{id}-backend"))
                .build(),
        )
        .build()
}

#[tokio::test]
async fn execute_command_targets_the_nth_running_task_and_says_how_to_get_the_plugin() {
    assert_eq!(
        find_on_path(PLUGIN, std::env::var_os("PATH").as_deref()),
        None,
        "this test needs a PATH without {PLUGIN}"
    );
    let listed_for = Arc::new(Mutex::new(Vec::<String>::new()));
    let executed = Arc::new(Mutex::new(
        Vec::<op::execute_command::ExecuteCommandInput>::new(),
    ));
    let (listed, exec) = (listed_for.clone(), executed.clone());
    let ecs = mock_client!(
        aws_sdk_ecs,
        RuleMode::MatchAny,
        &[
            &mock!(Client::list_tasks).then_compute_response(move |input| {
                if let Ok(mut l) = listed.lock() {
                    l.push(input.service_name().unwrap_or_default().to_owned());
                }
                MockResponse::Output(
                    op::list_tasks::ListTasksOutput::builder()
                        .task_arns("newer")
                        .task_arns("older")
                        .task_arns("stopping")
                        .build(),
                )
            }),
            // Listed newest first; the stopping one is no candidate.
            &mock!(Client::describe_tasks).then_output(|| {
                op::describe_tasks::DescribeTasksOutput::builder()
                    .tasks(task("newer", 2_000, "RUNNING"))
                    .tasks(task("stopping", 500, "DEPROVISIONING"))
                    .tasks(task("older", 1_000, "RUNNING"))
                    .build()
            }),
            &mock!(Client::execute_command).then_compute_response(move |input| {
                if let Ok(mut e) = exec.lock() {
                    e.push(input.clone());
                }
                MockResponse::Output(
                    op::execute_command::ExecuteCommandOutput::builder()
                        .session(
                            Session::builder()
                                .session_id("ecs-execute-command-1")
                                .stream_url("wss://ssmmessages.eu-west-1.amazonaws.com/1")
                                .token_value("secret-session-token")
                                .build(),
                        )
                        .build(),
                )
            }),
        ]
    );
    let fake = FakeAws::kaapi_staging();
    let mut clients = fake.clients();
    clients.ecs = ecs;
    let dir = tempfile::tempdir().expect("temp dir");
    let loaded = write_config(dir.path(), "");
    let target =
        Target::from(ResolvedEnvironment::resolve(loaded, "staging").expect("staging exists"));
    let engine = EcsEngine::with_clients(target, clients, crate::moto_contract::tuning(), None);

    let command: Vec<String> = ["python", "-c", "print('hi there')"]
        .map(String::from)
        .to_vec();
    let request = ExecRequest {
        service: "backend",
        replica: 2,
        command: &command,
        interactive: false,
    };
    let error = engine.exec(&request).await.expect_err("no plugin on PATH");
    assert!(
        matches!(error, EngineError::Unavailable { .. }),
        "{error:?}"
    );
    assert_eq!(error.to_string(), PLUGIN_MISSING);
    assert!(!error.to_string().contains("secret-session-token"));

    assert_eq!(*listed_for.lock().expect("lock"), vec![BACKEND.to_owned()]);
    let calls = executed.lock().expect("lock").clone();
    assert_eq!(calls.len(), 1, "one ExecuteCommand");
    let input = &calls[0];
    assert_eq!(input.cluster(), Some(CLUSTER));
    assert_eq!(
        input.task(),
        Some(format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task/{CLUSTER}/newer").as_str()),
        "replica 2 is the second oldest running task"
    );
    assert_eq!(input.container(), Some("backend"));
    assert_eq!(
        input.command(),
        Some(r"python -c 'print('\''hi there'\'')'")
    );
    assert_eq!(
        input.interactive(),
        Some(true),
        "ECS Exec requires interactive"
    );

    let request = ExecRequest {
        replica: 3,
        ..request
    };
    let error = engine.exec(&request).await.expect_err("only two run");
    assert!(
        error
            .to_string()
            .contains("--replica 3: kaapi-staging-service has 2 running task(s)"),
        "{error}"
    );
}

const NOT_ENABLED: &str = "The execute command failed because execute command was not enabled when the task was run or the execute command agent isn't running.";

#[tokio::test]
async fn a_refused_execute_command_points_at_check() {
    // What ECS answers when the task was started without ECS Exec.
    let ecs = mock_client!(
        aws_sdk_ecs,
        RuleMode::MatchAny,
        &[
            &mock!(Client::list_tasks).then_output(|| {
                op::list_tasks::ListTasksOutput::builder()
                    .task_arns("only")
                    .build()
            }),
            &mock!(Client::describe_tasks).then_output(|| {
                op::describe_tasks::DescribeTasksOutput::builder()
                    .tasks(task("only", 1_000, "RUNNING"))
                    .build()
            }),
            &mock!(Client::execute_command).then_error(|| {
                op::execute_command::ExecuteCommandError::InvalidParameterException(
                    aws_sdk_ecs::types::error::InvalidParameterException::builder()
                        .meta(
                            aws_sdk_ecs::error::ErrorMetadata::builder()
                                .code("InvalidParameterException")
                                .message(NOT_ENABLED)
                                .build(),
                        )
                        .message(NOT_ENABLED)
                        .build(),
                )
            }),
        ]
    );
    let fake = FakeAws::kaapi_staging();
    let mut clients = fake.clients();
    clients.ecs = ecs;
    let dir = tempfile::tempdir().expect("temp dir");
    let loaded = write_config(dir.path(), "");
    let target =
        Target::from(ResolvedEnvironment::resolve(loaded, "staging").expect("staging exists"));
    let engine = EcsEngine::with_clients(target, clients, crate::moto_contract::tuning(), None);
    let command = vec!["sh".to_owned()];
    let request = ExecRequest {
        service: "backend",
        replica: 1,
        command: &command,
        interactive: false,
    };
    let error = engine.exec(&request).await.expect_err("exec not enabled");
    let text = error.to_string();
    assert!(
        text.contains("`kaapi-deploy check staging` reports whether ECS Exec is enabled on kaapi-staging-service")
            && text.contains("execute command was not enabled"),
        "{text}"
    );
}
