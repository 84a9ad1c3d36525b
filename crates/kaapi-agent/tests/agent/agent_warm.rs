//! The replaced release's web replicas kept warm: a rollback within the window switches the
//! ingress back to the very same containers under load; the window ends, a dead warm replica
//! and an agent restart leave no container behind; workers never stay warm.

use std::time::{Duration, Instant};

use kaapi_agent::api::{EnvironmentSpec, EnvironmentState, RolloutMode, RolloutPhase};
use kaapi_agent::AgentClient;

use crate::agent_support::{
    containers_of, docker, eventually, images, ingress_url, roll_out, start_agent, version,
    Fixture, Load,
};

fn warm_spec(fixture: &Fixture, release: u64, image: &str, keep_warm_ms: u64) -> EnvironmentSpec {
    EnvironmentSpec {
        keep_warm_ms,
        ..fixture.spec(release, image, 2, 1)
    }
}

async fn state(client: &AgentClient, fixture: &Fixture) -> EnvironmentState {
    client
        .environment(&fixture.environment)
        .await
        .expect("state")
        .expect("known")
}

fn ids(state: &EnvironmentState, service: &str, warm: bool) -> Vec<String> {
    let replicas = if warm { &state.warm } else { &state.replicas };
    let mut ids: Vec<String> = replicas
        .iter()
        .filter(|r| r.service == service)
        .map(|r| r.container_id.clone())
        .collect();
    ids.sort();
    ids
}

async fn deploy(client: &AgentClient, spec: &EnvironmentSpec) -> Vec<String> {
    let rollout = roll_out(client, spec).await;
    assert_eq!(rollout.phase, RolloutPhase::Completed, "{rollout:?}");
    rollout.messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_within_the_window_switches_back_to_the_same_warm_containers() {
    let images = images();
    let fixture = Fixture::new("warm");
    fixture.migrate(&images.v1);
    let (_agent, client) = start_agent(fixture.state_dir.path()).await;
    let minute = 60_000;

    deploy(&client, &warm_spec(&fixture, 1, &images.v1, minute)).await;
    let first = state(&client, &fixture).await;
    let v1_web = ids(&first, "backend", false);
    let v1_worker = ids(&first, "worker", false);
    assert_eq!(v1_web.len(), 2);

    let messages = deploy(&client, &warm_spec(&fixture, 2, &images.v2, minute)).await;
    assert!(
        messages
            .iter()
            .any(|m| m.contains("keeping 2 replica(s) of release 1 warm")),
        "{messages:?}"
    );
    let second = state(&client, &fixture).await;
    assert_eq!(ids(&second, "backend", true), v1_web, "{:?}", second.warm);
    assert!(second
        .warm
        .iter()
        .all(|r| r.state.as_str() == "warm" && r.warm_until.is_some()));
    assert!(
        ids(&second, "worker", true).is_empty(),
        "a worker stayed warm"
    );
    eventually(
        Duration::from_secs(20),
        "release 1's worker stops",
        || async {
            let running = containers_of(&fixture.environment, &[]);
            v1_worker.iter().all(|worker| !running.contains(worker))
        },
    )
    .await;
    let v2_web = ids(&second, "backend", false);
    let url = ingress_url(&client, &fixture.environment).await;
    assert_eq!(version(&url).await, "v2");

    // Rollback (release 3 runs release 1's spec) under steady load.
    let load = Load::start(&url, 4, 5_000);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rollback = warm_spec(&fixture, 3, &images.v1, minute);
    let begun = Instant::now();
    let ticket = client
        .rollout(&rollback, RolloutMode::Converge)
        .await
        .expect("start rollback");
    while version(&url).await != "v1" {
        assert!(begun.elapsed() < Duration::from_secs(10), "v1 never served");
    }
    let to_traffic = begun.elapsed();
    let done = tokio::time::timeout(
        Duration::from_secs(60),
        client.wait_rollout(&fixture.environment, &ticket.id, |_| {}),
    )
    .await
    .expect("rollback ends")
    .expect("poll rollback");
    eprintln!(
        "traffic on release 1 after {to_traffic:?}; {:?}",
        done.messages
    );
    assert_eq!(done.phase, RolloutPhase::Completed, "{done:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = load.finish().await;
    assert_eq!(report.failed, 0, "failed requests: {:?}", report.failures);
    assert!(report.versions.contains_key("v1") && report.versions.contains_key("v2"));
    assert!(
        report.last_version.values().all(|v| v == "v1"),
        "{report:?}"
    );
    assert!(
        done.messages
            .iter()
            .any(|m| m.contains("switched to 2 warm replica(s) of release 1")),
        "{:?}",
        done.messages
    );
    assert!(
        to_traffic < Duration::from_secs(1),
        "traffic reached release 1 only after {to_traffic:?}"
    );
    let third = state(&client, &fixture).await;
    assert_eq!(third.release, Some(3));
    assert_eq!(ids(&third, "backend", false), v1_web, "new web containers");
    // The replicas that served until the rollback are the warm ones now.
    assert_eq!(ids(&third, "backend", true), v2_web);

    client
        .remove_environment(&fixture.environment)
        .await
        .expect("remove environment");
    assert!(containers_of(&fixture.environment, &[]).is_empty());
    client.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn warm_replicas_end_with_their_window_or_when_one_dies_and_rollback_starts_fresh() {
    let images = images();
    let fixture = Fixture::new("cold");
    fixture.migrate(&images.v1);
    let (_agent, client) = start_agent(fixture.state_dir.path()).await;

    // A two-second window: gone after it, and a rollback starts new containers.
    deploy(&client, &warm_spec(&fixture, 1, &images.v1, 2_000)).await;
    let v1_web = ids(&state(&client, &fixture).await, "backend", false);
    deploy(&client, &warm_spec(&fixture, 2, &images.v2, 2_000)).await;
    assert_eq!(
        ids(&state(&client, &fixture).await, "backend", true),
        v1_web
    );
    eventually(Duration::from_secs(20), "the window ends", || async {
        let now = state(&client, &fixture).await;
        let all = containers_of(&fixture.environment, &[]);
        now.warm.is_empty() && v1_web.iter().all(|id| !all.contains(id))
    })
    .await;
    let url = ingress_url(&client, &fixture.environment).await;
    let messages = deploy(&client, &warm_spec(&fixture, 3, &images.v1, 60_000)).await;
    assert!(
        !messages.iter().any(|m| m.contains("switched to")),
        "{messages:?}"
    );
    let fresh = ids(&state(&client, &fixture).await, "backend", false);
    assert!(fresh.iter().all(|id| !v1_web.contains(id)), "{fresh:?}");
    assert_eq!(version(&url).await, "v1");

    // Release 2's replicas are warm now; one is killed: the rollback to them starts fresh ones.
    let v2_warm = ids(&state(&client, &fixture).await, "backend", true);
    assert_eq!(v2_warm.len(), 2);
    docker(&["rm", "-f", &v2_warm[0]]);
    let load = Load::start(&url, 4, 5_000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let messages = deploy(&client, &warm_spec(&fixture, 4, &images.v2, 60_000)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = load.finish().await;
    assert_eq!(report.failed, 0, "failed requests: {:?}", report.failures);
    assert!(
        !messages.iter().any(|m| m.contains("switched to")),
        "{messages:?}"
    );
    let now = ids(&state(&client, &fixture).await, "backend", false);
    assert!(now.iter().all(|id| !v2_warm.contains(id)), "{now:?}");
    assert_eq!(version(&url).await, "v2");
    eventually(
        Duration::from_secs(20),
        "the dead set is removed",
        || async { !containers_of(&fixture.environment, &[]).contains(&v2_warm[1]) },
    )
    .await;
    client.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_restart_in_the_window_leaves_no_warm_container_and_adopts_the_switched_ones() {
    let images = images();
    let fixture = Fixture::new("warmrestart");
    fixture.migrate(&images.v1);
    let (agent, client) = start_agent(fixture.state_dir.path()).await;
    let minute = 60_000;
    deploy(&client, &warm_spec(&fixture, 1, &images.v1, minute)).await;
    let v1_web = ids(&state(&client, &fixture).await, "backend", false);
    deploy(&client, &warm_spec(&fixture, 2, &images.v2, minute)).await;
    let messages = deploy(&client, &warm_spec(&fixture, 3, &images.v1, minute)).await;
    assert!(
        messages.iter().any(|m| m.contains("switched to 2 warm")),
        "{messages:?}"
    );
    let before = state(&client, &fixture).await;
    let v2_warm = ids(&before, "backend", true);
    let worker = ids(&before, "worker", false);
    assert_eq!(v2_warm.len(), 2);

    // Killed without a shutdown: the restarted agent adopts the serving replicas (release 1's
    // containers, serving release 3) and removes the warm ones.
    agent.abort();
    let _ = agent.await;
    let (agent, client) = start_agent(fixture.state_dir.path()).await;
    let url = ingress_url(&client, &fixture.environment).await;
    assert_eq!(version(&url).await, "v1");
    let after = state(&client, &fixture).await;
    assert_eq!(ids(&after, "backend", false), v1_web, "not adopted");
    assert_eq!(ids(&after, "worker", false), worker);
    assert!(after.warm.is_empty());
    let mut expected = [v1_web.clone(), worker.clone()].concat();
    expected.sort();
    assert_eq!(containers_of(&fixture.environment, &[]), expected);

    // A graceful stop during a window removes the warm replicas too.
    deploy(&client, &warm_spec(&fixture, 4, &images.v2, minute)).await;
    let warm = ids(&state(&client, &fixture).await, "backend", true);
    assert_eq!(warm, v1_web);
    client.shutdown().await.expect("shutdown");
    tokio::time::timeout(Duration::from_secs(20), agent)
        .await
        .expect("agent task ends")
        .expect("agent task succeeded");
    let left = containers_of(&fixture.environment, &[]);
    assert!(warm.iter().all(|id| !left.contains(id)), "{left:?}");
    assert_eq!(left.len(), 3, "the serving replicas keep running: {left:?}");
}
