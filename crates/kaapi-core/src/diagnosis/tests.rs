use super::*;

fn facts(reason: &str) -> Facts {
    Facts {
        service: "backend".to_owned(),
        replica: "kaapi-web-1".to_owned(),
        reason: reason.to_owned(),
        ..Facts::default()
    }
}

fn lines(text: &[&str]) -> Vec<String> {
    text.iter().map(|l| (*l).to_owned()).collect()
}

#[test]
fn docker_oom_kill_says_raise_memory() {
    let mut f = facts("backend: replica kaapi-web-1 exited (code 137) while starting");
    f.exit_code = Some(137);
    f.oom_killed = true;
    let d = f.diagnose();
    assert_eq!(d.cause, Cause::OutOfMemory);
    assert!(d.hint.as_deref().is_some_and(|h| h.contains("`memory`")));
    assert!(d.one_line().contains("out of memory (exit 137)"));
}

#[test]
fn a_kill_without_the_oom_flag_is_an_exit_not_an_oom() {
    let mut f = facts("exited (code 137)");
    f.exit_code = Some(137);
    assert_eq!(f.diagnose().cause, Cause::Exited);
}

#[test]
fn ecs_out_of_memory_container_reason_wins_over_the_exit() {
    let d = facts("Essential container in task exited; OutOfMemoryError: Container killed due to memory usage").diagnose();
    assert_eq!(d.cause, Cause::OutOfMemory);
    assert!(d.hint.as_deref().is_some_and(|h| h.contains("`memory`")));
}

#[test]
fn ecs_secret_access_denied_names_the_permissions() {
    let d = facts("ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: unable to retrieve secret from asm: service call has been retried 1 time(s): failed to fetch secret arn:aws:secretsmanager:eu-west-1:123456789012:secret:kaapi-staging from secrets manager: AccessDeniedException: User: arn:aws:sts::123456789012:assumed-role/kaapi-execution/abc is not authorized to perform: secretsmanager:GetSecretValue on resource: arn:aws:secretsmanager:eu-west-1:123456789012:secret:kaapi-staging because no identity-based policy allows the secretsmanager:GetSecretValue action").diagnose();
    assert_eq!(d.cause, Cause::Secrets);
    let hint = d.hint.unwrap_or_default();
    assert!(hint.contains("secretsmanager:GetSecretValue"), "{hint}");
    assert!(hint.contains("ssm:GetParameters"), "{hint}");
}

#[test]
fn ecs_ssm_access_denied_is_a_secrets_failure_too() {
    let d = facts("ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: unable to retrieve secrets from ssm: service call has been retried 1 time(s): AccessDeniedException: User: arn:aws:sts::123456789012:assumed-role/x is not authorized to perform: ssm:GetParameters").diagnose();
    assert_eq!(d.cause, Cause::Secrets);
    assert!(d
        .hint
        .unwrap_or_default()
        .contains("execution role may not read"));
}

#[test]
fn ecs_missing_secret_says_create_it() {
    let d = facts("ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: unable to retrieve secret from asm: service call has been retried 1 time(s): failed to fetch secret arn:aws:secretsmanager:eu-west-1:123456789012:secret:kaapi-prod from secrets manager: ResourceNotFoundException: Secrets Manager can't find the specified secret.").diagnose();
    assert_eq!(d.cause, Cause::Secrets);
    assert!(d.hint.unwrap_or_default().contains("does not exist"));
}

#[test]
fn ecs_network_timeout_on_secrets_gets_the_general_secrets_hint() {
    let d = facts("ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: unable to retrieve secrets from ssm: service call has been retried 5 time(s): RequestCanceled: request context canceled caused by: context deadline exceeded.").diagnose();
    assert_eq!(d.cause, Cause::Secrets);
    assert!(d.hint.unwrap_or_default().contains("route to SSM"));
}

#[test]
fn ecs_cannot_pull_points_at_the_image_and_ecr_permissions() {
    let d = facts("CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref 123456789012.dkr.ecr.eu-west-1.amazonaws.com/kaapi-repo@sha256:abc: not found").diagnose();
    assert_eq!(d.cause, Cause::ImagePull);
    assert!(d.hint.unwrap_or_default().contains("ecr:BatchGetImage"));
}

#[test]
fn a_refused_health_probe_says_nothing_listens_on_the_port() {
    let mut f = facts("backend: replica x failed its health check: connection refused");
    f.health_output = Some("connection refused (tcp connect error)".to_owned());
    let d = f.diagnose();
    assert_eq!(d.cause, Cause::HealthCheck);
    assert!(d.hint.unwrap_or_default().contains("0.0.0.0"));
}

#[test]
fn an_answering_but_failing_health_check_says_so() {
    let mut f = facts("backend: replica x failed its health check: 503 Service Unavailable");
    f.health_output = Some("503 Service Unavailable".to_owned());
    let d = f.diagnose();
    assert_eq!(d.cause, Cause::HealthCheck);
    assert!(d.hint.unwrap_or_default().contains("must answer 200"));
}

#[test]
fn ecs_elb_health_check_failure_keeps_its_own_hint() {
    let d = facts("Task failed ELB health checks in (target-group arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/kaapi/abc)").diagnose();
    assert_eq!(d.cause, Cause::HealthCheck);
    assert!(d.hint.unwrap_or_default().contains("load balancer"));
}

#[test]
fn a_crash_naming_a_missing_variable_says_which() {
    let mut f = facts("Essential container in task exited");
    f.exit_code = Some(1);
    f.logs = lines(&[
        "Traceback (most recent call last):",
        "  File \"/app/app/core/config.py\", line 12, in <module>",
        "KeyError: 'DATABASE_URL'",
    ]);
    let d = f.diagnose();
    assert_eq!(d.cause, Cause::Exited);
    assert!(
        d.hint
            .as_deref()
            .is_some_and(|h| h.contains("`DATABASE_URL`")),
        "{:?}",
        d.hint
    );
}

#[test]
fn an_invalid_variable_is_named_too() {
    let mut f = facts("exited (code 2) while starting");
    f.exit_code = Some(2);
    f.logs = lines(&["error: PORT=\"eighty\" is not valid"]);
    assert!(f.diagnose().hint.is_some_and(|h| h.contains("`PORT`")));
}

#[test]
fn exit_codes_of_the_shell_get_their_meaning() {
    let mut f = facts("exited (code 127) while starting");
    f.exit_code = Some(127);
    assert!(f.diagnose().hint.is_some_and(|h| h.contains("not found")));
    let mut f = facts("exited (code 3)");
    f.exit_code = Some(3);
    let d = f.diagnose();
    assert_eq!(d.cause, Cause::Exited);
    assert!(d.hint.is_some_and(|h| h.contains("last lines")));
}

#[test]
fn unknown_reasons_have_no_hint_but_keep_the_words() {
    let d = facts("ECS deployment circuit breaker: tasks failed to start.").diagnose();
    assert_eq!(d.cause, Cause::Unknown);
    assert_eq!(d.hint, None);
    assert!(d.render().contains("circuit breaker"));
}

#[test]
fn logs_and_events_are_bounded() {
    let mut f = facts("exited");
    f.logs = (0..100).map(|i| format!("line {i}")).collect();
    f.events = (0..30).map(|i| format!("event {i}")).collect();
    f.logs.push("x".repeat(5000));
    let d = f.diagnose();
    assert_eq!(d.logs.len(), LOG_LINES);
    assert_eq!(d.logs[0], "line 81");
    assert!(d.logs[LOG_LINES - 1].chars().count() <= LINE_CHARS + 1);
    assert_eq!(d.events.len(), EVENTS);
    assert_eq!(d.events[EVENTS - 1], "event 29");
}

#[test]
fn the_platform_text_table_picks_the_most_specific_reason() {
    let oom = "Essential container in task exited (OutOfMemoryError: Container killed due to memory usage)";
    assert!(hint_for(oom).is_some_and(|h| h.contains("`memory`")));
    assert!(hint_for("Essential container in task exited")
        .is_some_and(|h| h.contains("kaapi-deploy logs")));
    assert_eq!(with_hint("nothing known"), "nothing known");
}

#[test]
fn render_shows_everything_on_one_screen() {
    let mut f = facts("exited (code 1)");
    f.exit_code = Some(1);
    f.logs = lines(&["starting", "boom"]);
    f.events = lines(&["(service kaapi-web) has started 1 tasks"]);
    let text = f.diagnose().render();
    for part in [
        "backend kaapi-web-1: exited",
        "exit code: 1",
        "| boom",
        "events:",
        "hint:",
    ] {
        assert!(text.contains(part), "{part} missing in\n{text}");
    }
    assert!(text.lines().count() < 30);
}

#[test]
fn a_replica_that_exited_is_an_exit_even_when_its_probe_failed_first() {
    let mut f = facts("backend: replica x failed its health check: connection refused");
    f.health_output = Some("connection refused".to_owned());
    f.exit_code = Some(1);
    assert_eq!(f.diagnose().cause, Cause::Exited);
    let mut f = facts("Task failed ELB health checks in (target-group x)");
    f.exit_code = Some(143);
    assert_eq!(f.diagnose().cause, Cause::HealthCheck);
}
