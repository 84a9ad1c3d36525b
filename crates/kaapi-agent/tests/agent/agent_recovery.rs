//! The agent keeping environments alive against the real Docker Engine: a replica killed from
//! outside is replaced, and a restarted agent adopts its replicas and reopens the same port.

use std::time::Duration;

use crate::agent_support::{
    containers_of, docker, eventually, images, ingress_url, roll_out, start_agent, version,
    Fixture, Load,
};
use kaapi_agent::api::RolloutPhase;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replica_killed_from_outside_is_replaced_and_requests_keep_succeeding() {
    let images = images();
    let fixture = Fixture::new("kill");
    fixture.migrate(&images.v1);
    let (_agent, client) = start_agent(fixture.state_dir.path()).await;
    let rollout = roll_out(&client, &fixture.spec(1, &images.v1, 2, 1)).await;
    assert_eq!(rollout.phase, RolloutPhase::Completed, "{rollout:?}");
    let url = ingress_url(&client, &fixture.environment).await;
    let state = client
        .environment(&fixture.environment)
        .await
        .expect("state")
        .expect("known");
    let victim = state
        .replicas
        .iter()
        .find(|r| r.service == "backend")
        .expect("a backend replica")
        .clone();

    let load = Load::start(&url, 4, 20_000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    docker(&["kill", &victim.container_id]);
    let environment = fixture.environment.clone();
    eventually(
        Duration::from_secs(15),
        "the killed replica is replaced",
        || {
            let client = client.clone();
            let environment = environment.clone();
            let victim = victim.container_id.clone();
            async move {
                let Ok(Some(state)) = client.environment(&environment).await else {
                    return false;
                };
                let web: Vec<_> = state
                    .replicas
                    .iter()
                    .filter(|r| r.service == "backend")
                    .collect();
                web.len() == 2
                    && web
                        .iter()
                        .all(|r| r.container_id != victim && r.healthy == Some(true))
            }
        },
    )
    .await;
    // Traffic continues on the replacement for a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = load.finish().await;
    eprintln!("load: {report:?}");
    assert_eq!(report.failed, 0, "failed requests: {:?}", report.failures);
    assert!(report.succeeded > 100, "{report:?}");

    let state = client
        .environment(&fixture.environment)
        .await
        .expect("state")
        .expect("known");
    let event = state
        .events
        .iter()
        .find(|e| e.message.contains(&victim.container_name))
        .unwrap_or_else(|| {
            panic!(
                "no event about {}: {:?}",
                victim.container_name, state.events
            )
        });
    assert!(
        event.message.contains("exited (code 137)") && event.message.contains("replaced by"),
        "{}",
        event.message
    );
    assert_eq!(event.service.as_deref(), Some("backend"));
    // Exactly the desired replicas remain: the killed container is gone.
    assert_eq!(containers_of(&fixture.environment, &[]).len(), 3);
    assert_eq!(version(&url).await, "v1");
    client.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_agent_adopts_its_replicas_removes_orphans_and_keeps_the_port() {
    let images = images();
    let fixture = Fixture::new("restart");
    fixture.migrate(&images.v1);
    let (agent, client) = start_agent(fixture.state_dir.path()).await;
    let rollout = roll_out(&client, &fixture.spec(1, &images.v1, 2, 1)).await;
    assert_eq!(rollout.phase, RolloutPhase::Completed, "{rollout:?}");
    let url = ingress_url(&client, &fixture.environment).await;
    let before = containers_of(&fixture.environment, &[]);
    assert_eq!(before.len(), 3);

    client.shutdown().await.expect("shutdown");
    tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .expect("agent task ends")
        .expect("agent task succeeded");
    assert!(
        !fixture.state_dir.path().join("agent.json").exists(),
        "agent.json left behind"
    );
    // The containers outlive the agent, the ingress does not.
    assert_eq!(
        containers_of(&fixture.environment, &["status=running"]),
        before
    );
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "ingress still open"
    );

    // A container with our labels that the desired state does not know: an orphan.
    let orphan = docker(&[
        "run",
        "-d",
        "--label",
        "dev.kaapi.app=agenttest",
        "--label",
        &format!("dev.kaapi.environment={}", fixture.environment),
        "--label",
        "dev.kaapi.service=backend",
        "--label",
        "dev.kaapi.release=7",
        "--label",
        "dev.kaapi.role=replica",
        &images.v1,
        "/app",
        "worker",
    ]);

    let (agent, client) = start_agent(fixture.state_dir.path()).await;
    assert_eq!(ingress_url(&client, &fixture.environment).await, url);
    assert_eq!(version(&url).await, "v1");
    let state = client
        .environment(&fixture.environment)
        .await
        .expect("state")
        .expect("known");
    let mut adopted: Vec<String> = state
        .replicas
        .iter()
        .map(|r| r.container_id.clone())
        .collect();
    adopted.sort();
    assert_eq!(adopted, before, "the agent did not adopt the same replicas");
    assert!(
        !containers_of(&fixture.environment, &[]).contains(&orphan),
        "the orphan container was not removed"
    );
    // A few reconcile passes later: still exactly the same containers, no duplicates.
    let load = Load::start(&url, 2, 2_000);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = load.finish().await;
    assert_eq!(report.failed, 0, "failed requests: {:?}", report.failures);
    assert_eq!(containers_of(&fixture.environment, &[]), before);

    // Dropping the agent's task (no shutdown call) also releases the port for the next one.
    agent.abort();
    let _ = agent.await;
    // Its port is taken meanwhile: the replicas come back at once, the ingress when it frees.
    // (The aborted agent's listener closes asynchronously, so try for a moment.)
    let mut squatter = None;
    for _ in 0..50 {
        if let Ok(listener) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            squatter = Some(listener);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let squatter = squatter.expect("the aborted agent released its ingress port");
    let (_agent, client) = start_agent(fixture.state_dir.path()).await;
    let state = client
        .environment(&fixture.environment)
        .await
        .expect("state")
        .expect("known");
    assert_eq!(state.ingress_url, None);
    assert!(
        state.events.iter().any(|e| e
            .message
            .contains(&format!("cannot open the ingress on 127.0.0.1:{port}"))),
        "{:?}",
        state.events
    );
    drop(squatter);
    let environment = fixture.environment.clone();
    eventually(Duration::from_secs(5), "the ingress reopens", || {
        let client = client.clone();
        let environment = environment.clone();
        async move {
            matches!(client.environment(&environment).await, Ok(Some(s)) if s.ingress_url.is_some())
        }
    })
    .await;
    assert_eq!(ingress_url(&client, &fixture.environment).await, url);
    assert_eq!(version(&url).await, "v1");
    assert_eq!(containers_of(&fixture.environment, &[]), before);
    client
        .remove_environment(&fixture.environment)
        .await
        .expect("remove");
    assert!(containers_of(&fixture.environment, &[]).is_empty());
    client.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replica_that_stops_answering_its_health_check_is_replaced() {
    let images = images();
    let fixture = Fixture::new("hang");
    fixture.migrate(&images.v1);
    let (_agent, client) = start_agent(fixture.state_dir.path()).await;
    let rollout = roll_out(&client, &fixture.spec(1, &images.v1, 2, 0)).await;
    assert_eq!(rollout.phase, RolloutPhase::Completed, "{rollout:?}");
    let url = ingress_url(&client, &fixture.environment).await;
    let state = client
        .environment(&fixture.environment)
        .await
        .expect("state")
        .expect("known");
    let victim = state.replicas[0].clone();

    // Paused, it still runs for Docker but answers nothing: only the health check can tell.
    docker(&["pause", &victim.container_id]);
    let environment = fixture.environment.clone();
    eventually(
        Duration::from_secs(15),
        "the unanswering replica is replaced",
        || {
            let client = client.clone();
            let environment = environment.clone();
            let victim = victim.container_id.clone();
            async move {
                let Ok(Some(state)) = client.environment(&environment).await else {
                    return false;
                };
                state.replicas.len() == 2
                    && state
                        .replicas
                        .iter()
                        .all(|r| r.container_id != victim && r.healthy == Some(true))
            }
        },
    )
    .await;
    let state = client
        .environment(&fixture.environment)
        .await
        .expect("state")
        .expect("known");
    let event = state
        .events
        .iter()
        .find(|e| e.message.contains(&victim.container_name))
        .unwrap_or_else(|| {
            panic!(
                "no event about {}: {:?}",
                victim.container_name, state.events
            )
        });
    assert!(
        event.message.contains(
            "failed its health check: GET /api/v1/utils/health/ → no answer within 1000 ms"
        ),
        "{}",
        event.message
    );
    assert!(
        !containers_of(&fixture.environment, &[]).contains(&victim.container_id),
        "the paused replica was not removed"
    );
    let load = Load::start(&url, 2, 200);
    let report = load.finish_after(Duration::from_secs(1)).await;
    assert_eq!(report.failed, 0, "failed requests: {:?}", report.failures);
    assert!(report.succeeded > 0);
    client.shutdown().await.expect("shutdown");
}
