//! What `check` reports about ECS Exec (`kaapi-deploy exec` on ECS): whether a service has
//! `enableExecuteCommand` on, whether its task role may open the Session Manager channels, and
//! whether the deploy policy allows `ecs:ExecuteCommand`. Only warnings: a deploy never needs it.

use aws_sdk_ecs::types::Service;
use kaapi_core::config::ResolvedEnvironment;
use serde_json::Value;

use crate::iam_eval::{self, Request};
use crate::names::InfraNames;
use crate::policy::{self, Scope};
use crate::preflight::CheckItem;

/// What the task role needs for ECS Exec ("Using Amazon ECS Exec"): the SSM agent in the task
/// opens its control and data channels with the task's credentials. No resource types: `*`.
pub const TASK_ROLE_ACTIONS: [&str; 4] = [
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
];

/// The inline policy of the task role that grants [`TASK_ROLE_ACTIONS`]: the template writes
/// it, and `check` reads it (`iam:GetRolePolicy`).
pub const TASK_ROLE_POLICY_NAME: &str = "ecs-exec";

/// The task role's `ecs-exec` inline policy, as `check` could read it.
#[derive(Debug, Clone)]
pub enum TaskRolePolicy {
    Document(Value),
    Absent,
    /// Reading failed (denied, network) or the document is not JSON.
    Unreadable(String),
}

impl TaskRolePolicy {
    /// IAM returns policy documents URL-encoded (RFC 3986).
    pub fn from_encoded(encoded: &str) -> Self {
        let decoded = percent_encoding::percent_decode_str(encoded).decode_utf8_lossy();
        match serde_json::from_str(&decoded) {
            Ok(document) => Self::Document(document),
            Err(e) => Self::Unreadable(format!("its policy document is not JSON ({e})")),
        }
    }
}

/// The item of one live service: `enableExecuteCommand` on, or the command that turns it on.
pub fn service_item(service: &Service, cluster: &str, region_flag: &str) -> CheckItem {
    let name = service.service_name().unwrap_or_default();
    let item = format!("ECS Exec on service {name}");
    if service.enable_execute_command() {
        return CheckItem::ok(item, "enableExecuteCommand is on");
    }
    // Tasks started before the change have no exec agent: a new deployment replaces them.
    CheckItem::warning(
        item,
        "enableExecuteCommand is off: `kaapi-deploy exec` cannot reach its tasks",
        format!(
            "aws ecs update-service --cluster {cluster} --service {name} --enable-execute-command --force-new-deployment{region_flag}"
        ),
    )
}

/// The statement the task role needs, as a one-line `put-role-policy` command.
fn put_role_policy(role: &str) -> String {
    format!(
        "aws iam put-role-policy --role-name {role} --policy-name {TASK_ROLE_POLICY_NAME} --policy-document '{}'",
        policy::exec_task_role_policy()
    )
}

/// The actions of [`TASK_ROLE_ACTIONS`] that `document` does not allow.
pub fn refused_actions(document: &Value) -> Vec<&'static str> {
    TASK_ROLE_ACTIONS
        .into_iter()
        .filter(|action| {
            !iam_eval::evaluate(document, &Request::new(action, "*")).is_ok_and(|d| d.is_allowed())
        })
        .collect()
}

/// Whether the task role may open ECS Exec sessions. A role of the template (`generated`) is
/// judged by the `ecs-exec` policy the template gives it; a role named in deploy.toml may hold
/// the permissions in any policy the deploy role cannot read, so without that inline policy it
/// is "cannot verify", never a guess.
pub fn task_role_item(names: &InfraNames, generated: bool, policy: &TaskRolePolicy) -> CheckItem {
    let role = &names.task_role;
    let item = format!("ECS Exec task role {role}");
    let actions = TASK_ROLE_ACTIONS.join(", ");
    let template = format!(
        "deploy the stack of `kaapi-deploy infra template {}` with EnableExecuteCommand=true, or {}",
        names.environment,
        put_role_policy(role)
    );
    match policy {
        TaskRolePolicy::Document(document) => {
            let refused = refused_actions(document);
            if refused.is_empty() {
                CheckItem::ok(item, format!("policy {TASK_ROLE_POLICY_NAME} allows {actions}"))
            } else {
                CheckItem::warning(
                    item,
                    format!(
                        "policy {TASK_ROLE_POLICY_NAME} does not allow {}: ECS Exec sessions cannot open",
                        refused.join(", ")
                    ),
                    put_role_policy(role),
                )
            }
        }
        TaskRolePolicy::Absent if generated => CheckItem::warning(
            item,
            format!("has no policy {TASK_ROLE_POLICY_NAME}, so tasks may not call {actions}"),
            template,
        ),
        TaskRolePolicy::Absent => CheckItem::warning(
            item,
            format!(
                "cannot verify: the role is your own (names.task_role in deploy.toml) and has no inline policy {TASK_ROLE_POLICY_NAME}; ECS Exec needs it to allow {actions}"
            ),
            format!("make sure a policy of {role} allows them, e.g. {}", put_role_policy(role)),
        ),
        TaskRolePolicy::Unreadable(e) => CheckItem::warning(
            item,
            format!("cannot verify that it allows {actions}: {e}"),
            format!("make sure a policy of {role} allows them, e.g. {}", put_role_policy(role)),
        ),
    }
}

/// Whether the policy of `infra policy` lets the deployer call `ecs:ExecuteCommand` on the
/// cluster's tasks (IAM authorizes both the cluster and the task ARN). The policy is evaluated
/// in a stand-in account: it names no other.
pub fn deploy_policy_item(target: &ResolvedEnvironment, names: &InfraNames) -> CheckItem {
    let scope = Scope::new(
        names.region.as_deref().unwrap_or("us-east-1"),
        "123456789012",
    );
    let document = policy::deploy_policy(target, &scope);
    let cluster = scope.arn("ecs", &format!("cluster/{}", names.cluster));
    let task = scope.arn(
        "ecs",
        &format!("task/{}/0123456789abcdef0123456789abcdef", names.cluster),
    );
    let allowed = [&cluster, &task].into_iter().all(|resource| {
        let request = Request::new("ecs:ExecuteCommand", resource).with("ecs:cluster", &[&cluster]);
        iam_eval::evaluate(&document, &request).is_ok_and(|d| d.is_allowed())
    });
    let item = "ECS Exec deploy policy";
    let env = &names.environment;
    if allowed {
        CheckItem::ok(
            item,
            format!("the policy of `kaapi-deploy infra policy {env}` allows ecs:ExecuteCommand on the cluster's tasks"),
        )
    } else {
        CheckItem::warning(
            item,
            format!(
                "the policy of `kaapi-deploy infra policy {env}` does not allow ecs:ExecuteCommand"
            ),
            format!(
                "allow ecs:ExecuteCommand on {cluster} and {} in the deploy role's policy",
                scope.arn("ecs", &format!("task/{}/*", names.cluster))
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names() -> (tempfile::TempDir, ResolvedEnvironment, InfraNames) {
        let dir = tempfile::tempdir().expect("temp dir");
        let (loaded, _) = crate::conformance::configs(dir.path()).remove(0);
        let target = ResolvedEnvironment::resolve(loaded, "staging").expect("staging");
        let names = InfraNames::new(&target);
        (dir, target, names)
    }

    #[test]
    fn a_service_with_exec_off_gets_the_command_that_enables_it() {
        let on = Service::builder()
            .service_name("web")
            .enable_execute_command(true)
            .build();
        let item = service_item(&on, "c", "");
        assert_eq!(item.status, crate::preflight::Status::Ok, "{item:?}");
        let off = Service::builder().service_name("web").build();
        let item = service_item(&off, "c", " --region r");
        assert_eq!(item.status, crate::preflight::Status::Warning);
        assert_eq!(
            item.fix.as_deref(),
            Some("aws ecs update-service --cluster c --service web --enable-execute-command --force-new-deployment --region r")
        );
    }

    #[test]
    fn the_generated_task_role_policy_allows_every_action_and_a_partial_one_is_named() {
        let (_dir, _target, names) = names();
        let generated = policy::exec_task_role_policy();
        assert!(refused_actions(&generated).is_empty());
        let item = task_role_item(&names, true, &TaskRolePolicy::Document(generated));
        assert_eq!(item.status, crate::preflight::Status::Ok, "{item:?}");

        let partial = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": ["ssmmessages:Create*"], "Resource": "*"}]});
        let item = task_role_item(&names, true, &TaskRolePolicy::Document(partial));
        assert_eq!(item.status, crate::preflight::Status::Warning);
        assert!(
            item.detail
                .contains("ssmmessages:OpenControlChannel, ssmmessages:OpenDataChannel")
                && !item.detail.contains("CreateDataChannel"),
            "{}",
            item.detail
        );
    }

    #[test]
    fn an_absent_policy_is_a_warning_and_a_users_role_cannot_be_verified() {
        let (_dir, _target, names) = names();
        let ours = task_role_item(&names, true, &TaskRolePolicy::Absent);
        assert!(
            ours.detail.contains("ssmmessages:CreateControlChannel"),
            "{ours:?}"
        );
        assert!(ours
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("EnableExecuteCommand=true")));
        let theirs = task_role_item(&names, false, &TaskRolePolicy::Absent);
        assert!(theirs.detail.starts_with("cannot verify"), "{theirs:?}");
    }

    #[test]
    fn url_encoded_documents_are_decoded() {
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22ssmmessages%3A%2A%22%2C%22Resource%22%3A%22%2A%22%7D%5D%7D";
        let TaskRolePolicy::Document(document) = TaskRolePolicy::from_encoded(encoded) else {
            panic!("not decoded");
        };
        assert!(refused_actions(&document).is_empty());
    }

    #[test]
    fn the_deploy_policy_allows_execute_command() {
        let (_dir, target, names) = names();
        let item = deploy_policy_item(&target, &names);
        assert_eq!(item.status, crate::preflight::Status::Ok, "{item:?}");
    }
}
