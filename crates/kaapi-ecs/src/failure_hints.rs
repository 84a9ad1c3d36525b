//! What to do about the reasons ECS gives for a task that stopped or never started: the texts
//! ECS really writes (`stoppedReason`, a container's `reason`, service events), each with a
//! one-line hint. The most specific text comes first (an out-of-memory kill also says
//! "Essential container in task exited").

const HINTS: &[(&str, &str)] = &[
    (
        "CannotPullContainerError",
        "ECS could not pull the image: the execution role needs ecr:GetDownloadUrlForLayer and ecr:BatchGetImage on the repository, and the tasks' subnets need a route to ECR (NAT gateway, public IP, or VPC endpoints)",
    ),
    (
        "ResourceInitializationError",
        "the task could not be prepared, usually its secrets: the execution role needs ssm:GetParameters or secretsmanager:GetSecretValue (and kms:Decrypt) on them, the subnets need a route to SSM or Secrets Manager, and every secret must exist (`kaapi-deploy check ENV` lists them)",
    ),
    (
        "OutOfMemoryError",
        "the container used more memory than it may: raise the service's `memory` in deploy.toml (MiB), or find what grows",
    ),
    (
        "failed ELB health checks",
        "the load balancer found the service unhealthy: the service must answer health.path with 200 on its port, and health.start_period must cover its start-up",
    ),
    (
        "failed container health checks",
        "the container's own health check (health.command) failed: run it in the image by hand, and check health.start_period covers start-up",
    ),
    (
        "Essential container in task exited",
        "the service's process exited: its output is in `kaapi-deploy logs ENV --service NAME`; a wrong command or a missing variable are the usual causes",
    ),
];

/// The hint for the first known reason in `text`.
pub fn hint_for(text: &str) -> Option<&'static str> {
    HINTS
        .iter()
        .find(|(reason, _)| text.contains(reason))
        .map(|(_, hint)| *hint)
}

/// `text`, followed by its hint when the reason is known.
pub fn with_hint(text: &str) -> String {
    match hint_for(text) {
        Some(hint) => format!("{text} (hint: {hint})"),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_reason_wins() {
        let oom = "Essential container in task exited (OutOfMemoryError: Container killed due to memory usage)";
        assert!(hint_for(oom).is_some_and(|h| h.contains("`memory`")));
        let exited = "Essential container in task exited";
        assert!(hint_for(exited).is_some_and(|h| h.contains("kaapi-deploy logs")));
        assert_eq!(
            hint_for("ECS deployment circuit breaker: tasks failed to start."),
            None
        );
        assert_eq!(with_hint("nothing known"), "nothing known");
    }
}
