//! `check_prerequisites` against moto: a complete account is all ok; each prerequisite removed
//! in turn is reported missing (and nothing else is); misconfigurations are warnings.

use crate::support::account::{self, Account, Part, REPOSITORY};
use crate::support::moto::Moto;
use kaapi_infra::names::InfraNames;
use kaapi_infra::preflight::{self, CheckItem, CheckOptions, Status};

async fn check(
    target: &kaapi_core::config::ResolvedEnvironment,
    aws: &aws_config::SdkConfig,
) -> Vec<CheckItem> {
    let options = CheckOptions {
        repository: Some(REPOSITORY.to_owned()),
    };
    preflight::check_prerequisites_with(target, aws, &options).await
}

/// moto's ECS drops `deploymentConfiguration` (see `moto_forgets_circuit_breakers`), so against
/// moto an existing service is at best "circuit breaker is off"; that warning counts as ok
/// here, and the unit tests of `preflight` cover the breaker itself.
fn is_moto_breaker_warning(item: &CheckItem) -> bool {
    item.status == Status::Warning
        && item.name.starts_with("service ")
        && item.detail.contains("circuit breaker is off")
}

/// moto's ECS drops `enableExecuteCommand` too (see `moto_forgets_exec`): every service reads
/// as ECS Exec off there; `ecs_exec_is_reported_per_service_and_for_the_task_role` checks the
/// warning, the unit tests of `ecs_exec` the service with it on.
fn is_moto_exec_warning(item: &CheckItem) -> bool {
    item.status == Status::Warning && item.name.starts_with("ECS Exec on service ")
}

fn not_ok(items: &[CheckItem]) -> Vec<(String, Status)> {
    items
        .iter()
        .filter(|i| {
            i.status != Status::Ok && !is_moto_breaker_warning(i) && !is_moto_exec_warning(i)
        })
        .map(|i| (i.name.clone(), i.status))
        .collect()
}

/// Proves the moto limitation `not_ok` works around, so the workaround goes when moto improves.
async fn moto_forgets_circuit_breakers(aws: &aws_config::SdkConfig, names: &InfraNames) {
    let out = aws_sdk_ecs::Client::new(aws)
        .describe_services()
        .cluster(&names.cluster)
        .services(&names.services["web"].service)
        .send()
        .await
        .expect("describe services");
    let breaker = out.services()[0]
        .deployment_configuration()
        .and_then(|d| d.deployment_circuit_breaker());
    assert!(
        breaker.is_none(),
        "moto now keeps the circuit breaker: drop is_moto_breaker_warning"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_account_is_ok_and_each_missing_part_is_reported_alone() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let target = account::write_config(dir.path());
    let aws = moto.sdk_config().await;
    let names = InfraNames::new(&target);
    let account = Account {
        target: &target,
        aws: &aws,
    };

    account.create(None).await;
    moto_forgets_circuit_breakers(&aws, &names).await;
    let items = check(&target, &aws).await;
    assert!(
        not_ok(&items).is_empty(),
        "complete account:\n{}",
        preflight::render(&items)
    );
    // Every part is checked, once.
    for part in account::all_parts() {
        let name = account::item_name(&names, part);
        assert_eq!(
            items.iter().filter(|i| i.name == name).count(),
            1,
            "{name} checked once"
        );
    }
    assert!(!preflight::any_missing(&items));
    assert_eq!(preflight::exit_code(&items), 0);

    for part in account::all_parts() {
        moto.reset();
        account.create(Some(part)).await;
        let items = check(&target, &aws).await;
        let mut expected = vec![account::item_name(&names, part)];
        if part == Part::Cluster {
            // Services cannot exist without their cluster.
            expected
                .extend(account::SERVICES.map(|s| account::item_name(&names, Part::Service(s))));
        }
        let reported: Vec<String> = not_ok(&items)
            .into_iter()
            .map(|(name, status)| {
                assert_eq!(status, Status::Missing, "{name} without {part:?}");
                name
            })
            .collect();
        assert_eq!(
            reported,
            expected,
            "without {part:?}:\n{}",
            preflight::render(&items)
        );
        for item in items.iter().filter(|i| i.status == Status::Missing) {
            let fix = item.fix.as_deref().unwrap_or_default();
            assert!(
                fix.contains("aws ") || fix.contains("kaapi-deploy "),
                "{}: the fix names a command: {fix}",
                item.name
            );
        }
        assert_eq!(preflight::exit_code(&items), 1, "without {part:?}");
        assert!(preflight::render(&items).contains(&format!("missing  {}", expected[0])));
    }
}

/// Proves the moto limitation `is_moto_exec_warning` works around.
async fn moto_forgets_exec(aws: &aws_config::SdkConfig, names: &InfraNames) {
    let out = aws_sdk_ecs::Client::new(aws)
        .describe_services()
        .cluster(&names.cluster)
        .services(&names.services["web"].service)
        .send()
        .await
        .expect("describe services");
    assert!(
        !out.services()[0].enable_execute_command(),
        "moto now keeps enableExecuteCommand: drop is_moto_exec_warning"
    );
}

fn item<'a>(items: &'a [CheckItem], name: &str) -> &'a CheckItem {
    items
        .iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("no item {name}:\n{}", preflight::render(items)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_exec_is_reported_per_service_and_for_the_task_role() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let target = account::write_config(dir.path());
    let aws = moto.sdk_config().await;
    let names = InfraNames::new(&target);
    let account = Account {
        target: &target,
        aws: &aws,
    };
    account.create(None).await;
    moto_forgets_exec(&aws, &names).await;

    // The task role's policy is read back from IAM (GetRolePolicy) and allows every action.
    let items = check(&target, &aws).await;
    let role_item = format!("ECS Exec task role {}", names.task_role);
    assert_eq!(item(&items, &role_item).status, Status::Ok);
    assert_eq!(item(&items, "ECS Exec deploy policy").status, Status::Ok);
    // Exec off (as moto reports every service): a warning with the command that turns it on.
    for service in account::SERVICES {
        let ecs_name = &names.services[service].service;
        let exec = item(&items, &format!("ECS Exec on service {ecs_name}"));
        assert_eq!(exec.status, Status::Warning, "{exec:?}");
        assert_eq!(
            exec.fix.as_deref(),
            Some(format!("aws ecs update-service --cluster {} --service {ecs_name} --enable-execute-command --force-new-deployment --region {}", names.cluster, crate::support::moto::REGION).as_str())
        );
    }
    assert_eq!(
        preflight::exit_code(&items),
        0,
        "ECS Exec is never an error"
    );

    // A task role that may create but not open the channels.
    account
        .put_exec_policy(&serde_json::json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Resource": "*",
            "Action": ["ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel"]}]}))
        .await;
    let items = check(&target, &aws).await;
    let role = item(&items, &role_item);
    assert_eq!(role.status, Status::Warning, "{role:?}");
    assert!(
        role.detail
            .contains("does not allow ssmmessages:OpenControlChannel, ssmmessages:OpenDataChannel"),
        "{}",
        role.detail
    );
    assert!(role.fix.as_deref().is_some_and(
        |f| f.contains("aws iam put-role-policy") && f.contains("ssmmessages:OpenDataChannel")
    ));

    // A task role without the policy at all: every action is named.
    aws_sdk_iam::Client::new(&aws)
        .delete_role_policy()
        .role_name(&names.task_role)
        .policy_name(kaapi_infra::ecs_exec::TASK_ROLE_POLICY_NAME)
        .send()
        .await
        .expect("delete the exec policy");
    let items = check(&target, &aws).await;
    let role = item(&items, &role_item);
    assert_eq!(role.status, Status::Warning, "{role:?}");
    for action in kaapi_infra::ecs_exec::TASK_ROLE_ACTIONS {
        assert!(role.detail.contains(action), "{action}: {}", role.detail);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misconfigured_resources_are_warnings() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let target = account::write_config(dir.path());
    let aws = moto.sdk_config().await;
    let names = InfraNames::new(&target);
    let account = Account {
        target: &target,
        aws: &aws,
    };

    // Mutable tags, no scan on push.
    account.create(Some(Part::Repository)).await;
    account.create_repository(false, false).await;
    let items = check(&target, &aws).await;
    let repo = items
        .iter()
        .find(|i| i.name == account::item_name(&names, Part::Repository))
        .expect("repository item");
    assert_eq!(repo.status, Status::Warning, "{repo:?}");
    assert!(
        repo.detail.contains("mutable") && repo.detail.contains("scan"),
        "{repo:?}"
    );
    assert!(repo
        .fix
        .as_deref()
        .is_some_and(|f| f.contains("put-image-tag-mutability")));
    assert_eq!(
        preflight::exit_code(&items),
        0,
        "warnings alone do not fail"
    );

    // A deploy role any repository of the organisation can assume.
    for (trust_sub, why) in [
        ("repo:kaapi-org/*", "every matching repository"),
        ("repo:kaapi-org/kaapi-backend:*", "every branch"),
        ("repo:someone/else:ref:refs/heads/main", "not this one"),
    ] {
        moto.reset();
        account.create(Some(Part::DeployRole)).await;
        let trust = serde_json::json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": format!("arn:aws:iam::{}:oidc-provider/token.actions.githubusercontent.com", crate::support::moto::ACCOUNT)},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"},
                          "StringLike": {"token.actions.githubusercontent.com:sub": trust_sub}}}]});
        account.create_deploy_role(&trust.to_string()).await;
        let items = check(&target, &aws).await;
        let role = items
            .iter()
            .find(|i| i.name == account::item_name(&names, Part::DeployRole))
            .expect("deploy role item");
        assert_eq!(role.status, Status::Warning, "{trust_sub}: {role:?}");
        assert!(role.detail.contains(why), "{trust_sub}: {}", role.detail);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_environment_has_no_aws_prerequisites() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = account::config_text().replace(
        "[environments.staging]",
        "[environments.local]\nengine = \"docker\"\nsecrets_from = { env_file = \".env\" }\n\n[environments.staging]",
    );
    let path = dir.path().join("deploy.toml");
    std::fs::write(&path, text).expect("write config");
    let local = account::resolve(&path, "local");
    // No AWS endpoint answers here: a docker environment must not call AWS at all.
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("eu-west-1"))
        .endpoint_url("http://127.0.0.1:9")
        .load()
        .await;
    let items = preflight::check_prerequisites(&local, &aws).await;
    assert!(items.is_empty(), "{items:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_aws_is_one_line_per_item_saying_what_to_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = account::write_config(dir.path());
    // Nothing listens on port 9: every call fails before AWS answers.
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("eu-west-1"))
        .endpoint_url("http://127.0.0.1:9")
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let items = check(&target, &aws).await;
    let failed: Vec<&CheckItem> = items
        .iter()
        .filter(|i| i.detail.starts_with("could not be checked"))
        .collect();
    assert!(!failed.is_empty(), "{items:?}");
    for item in failed {
        assert_eq!(item.status, Status::Missing);
        assert!(
            item.detail.contains("AWS could not be reached")
                && item.detail.contains("check the network")
                && !item.detail.contains('\n')
                && !item.detail.to_lowercase().contains("dispatch failure"),
            "{}: {}",
            item.name,
            item.detail
        );
    }
}
