//! Rollouts through the agent against the real Docker Engine: first release, zero-downtime
//! replacement, a release whose health check fails, and a rollout of the release that runs.

use std::time::Duration;

use crate::agent_support::{
    containers_of, eventually, images, ingress_url, roll_out, roll_out_with, start_agent, version,
    Fixture, Load,
};
use kaapi_agent::api::{RolloutMode, RolloutPhase};
use kaapi_agent::AgentError;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollout_serves_the_release_then_replaces_it_with_zero_failed_requests() {
    let images = images();
    let fixture = Fixture::new("roll");
    fixture.migrate(&images.v1);
    let (_agent, client) = start_agent(fixture.state_dir.path()).await;

    let first = roll_out(&client, &fixture.spec(1, &images.v1, 2, 1)).await;
    assert_eq!(first.phase, RolloutPhase::Completed, "{first:?}");
    let state = client
        .environment(&fixture.environment)
        .await
        .expect("state")
        .expect("known");
    assert_eq!(state.release, Some(1));
    assert_eq!(state.replicas.len(), 3, "{:?}", state.replicas);
    let web: Vec<_> = state
        .replicas
        .iter()
        .filter(|r| r.service == "backend")
        .collect();
    assert_eq!(web.len(), 2);
    assert!(web
        .iter()
        .all(|r| r.healthy == Some(true) && r.host_port.is_some()));
    let url = ingress_url(&client, &fixture.environment).await;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_eq!(version(&url).await, "v1");
    // The replicas' own ports are published on loopback only.
    let ports = crate::agent_support::docker(&["port", &web[0].container_id]);
    assert!(
        ports.lines().all(|line| line.contains("127.0.0.1:")),
        "published beyond loopback: {ports}"
    );

    let load = Load::start(&url, 6, 5_000);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = roll_out(&client, &fixture.spec(2, &images.v2, 2, 1)).await;
    assert_eq!(second.phase, RolloutPhase::Completed, "{second:?}");
    // Keep the load on a little after the switch and drain.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = load.finish().await;
    eprintln!("load: {report:?}");
    assert_eq!(report.failed, 0, "failed requests: {:?}", report.failures);
    assert!(
        report.succeeded >= 2_000,
        "too few requests to prove anything: {report:?}"
    );
    assert!(report.versions.contains_key("v1") && report.versions.contains_key("v2"));
    assert!(
        report.last_version.values().all(|v| v == "v2"),
        "after the rollout some client still saw {:?}",
        report.last_version
    );
    assert_eq!(version(&url).await, "v2");
    assert_eq!(
        ingress_url(&client, &fixture.environment).await,
        url,
        "the ingress port changed"
    );
    // The replaced replicas drain and stop after the rollout reports completion.
    eventually(Duration::from_secs(20), "old replicas stop", || async {
        containers_of(&fixture.environment, &["label=dev.kaapi.release=1"]).is_empty()
    })
    .await;
    let state = client
        .environment(&fixture.environment)
        .await
        .expect("state")
        .expect("known");
    assert_eq!((state.release, state.previous_release), (Some(2), Some(1)));
    assert_eq!(containers_of(&fixture.environment, &[]).len(), 3);

    client
        .remove_environment(&fixture.environment)
        .await
        .expect("remove environment");
    assert!(containers_of(&fixture.environment, &[]).is_empty());
    assert!(client
        .environment(&fixture.environment)
        .await
        .expect("state")
        .is_none());
    client.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn release_failing_its_health_check_is_abandoned_and_the_old_one_keeps_serving() {
    let images = images();
    let fixture = Fixture::new("broken");
    fixture.migrate(&images.v1);
    let (_agent, client) = start_agent(fixture.state_dir.path()).await;
    let first = roll_out(&client, &fixture.spec(1, &images.v1, 2, 0)).await;
    assert_eq!(first.phase, RolloutPhase::Completed, "{first:?}");
    let url = ingress_url(&client, &fixture.environment).await;
    let before = containers_of(&fixture.environment, &[]);

    let load = Load::start(&url, 4, 5_000);
    let broken = fixture.spec(2, &images.broken_health, 2, 0);
    let ticket = client
        .rollout(&broken, RolloutMode::Converge)
        .await
        .expect("start rollout");
    let running = client
        .environment(&fixture.environment)
        .await
        .expect("state")
        .expect("known");
    assert_eq!(running.active_rollout.as_deref(), Some(ticket.id.as_str()));
    match client.rollout(&broken, RolloutMode::Converge).await {
        Err(AgentError::Api {
            status: 409,
            message,
        }) => {
            assert!(message.contains("already running"), "{message}")
        }
        other => panic!("a second concurrent rollout must get 409, got {other:?}"),
    }
    let failed = tokio::time::timeout(
        Duration::from_secs(60),
        client.wait_rollout(&fixture.environment, &ticket.id, |m| {
            eprintln!("  rollout: {m}")
        }),
    )
    .await
    .expect("rollout ends")
    .expect("poll rollout");
    let report = load.finish().await;

    assert_eq!(failed.phase, RolloutPhase::Failed, "{failed:?}");
    let reason = failed.reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("backend: replica ")
            && reason.contains("failed its health check: GET /api/v1/utils/health/ → 503"),
        "unexpected reason: {reason}"
    );
    assert_eq!(report.failed, 0, "failed requests: {:?}", report.failures);
    assert!(report.succeeded > 0);
    assert_eq!(
        report.versions.keys().collect::<Vec<_>>(),
        vec!["v1"],
        "{report:?}"
    );
    assert_eq!(version(&url).await, "v1");
    assert!(
        containers_of(&fixture.environment, &["label=dev.kaapi.release=2"]).is_empty(),
        "replicas of the failed release remain"
    );
    assert_eq!(
        containers_of(&fixture.environment, &[]),
        before,
        "old replicas were touched"
    );
    let state = client
        .environment(&fixture.environment)
        .await
        .expect("state")
        .expect("known");
    assert_eq!(state.release, Some(1));
    assert_eq!(state.active_rollout, None);
    let stored = std::fs::read_to_string(fixture.state_dir.path().join("agent-state.json"))
        .expect("read agent state");
    assert!(stored.contains("\"release\": 1") && !stored.contains("\"release\": 2"));
    client.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_serving_spec_again_is_a_no_op_and_a_restart_replaces_its_replicas() {
    let images = images();
    let fixture = Fixture::new("again");
    fixture.migrate(&images.v1);
    let (_agent, client) = start_agent(fixture.state_dir.path()).await;
    let spec = fixture.spec(1, &images.v1, 1, 1);
    assert_eq!(
        roll_out(&client, &spec).await.phase,
        RolloutPhase::Completed
    );
    let before = containers_of(&fixture.environment, &[]);
    let url = ingress_url(&client, &fixture.environment).await;

    let unchanged = roll_out(&client, &spec).await;
    assert_eq!(unchanged.phase, RolloutPhase::Completed, "{unchanged:?}");
    assert!(
        unchanged
            .messages
            .iter()
            .any(|m| m.contains("nothing to restart")),
        "{unchanged:?}"
    );
    assert_eq!(containers_of(&fixture.environment, &[]), before);

    let load = Load::start(&url, 2, 5_000);
    let again = roll_out_with(&client, &spec, RolloutMode::Restart).await;
    let report = load.finish().await;
    assert_eq!(again.phase, RolloutPhase::Completed, "{again:?}");
    assert_eq!(report.failed, 0, "failed requests: {:?}", report.failures);
    eventually(
        Duration::from_secs(20),
        "the replaced replicas stop",
        || async { containers_of(&fixture.environment, &[]).len() == 2 },
    )
    .await;
    let after = containers_of(&fixture.environment, &[]);
    assert!(
        after.iter().all(|id| !before.contains(id)),
        "replicas were not replaced"
    );
    assert_eq!(version(&url).await, "v1");
    client.shutdown().await.expect("shutdown");
}
