//! A rollout cut off by the agent's shutdown after it opened a new ingress listener: the
//! listener closes before the agent exits (the ingress process outlives the agent, so it would
//! otherwise keep it open until the next agent starts).

use std::time::Duration;

use crate::agent_support::{images, start_agent, Fixture};
use kaapi_agent::api::{RolloutMode, RolloutPhase};
use kaapi_agent::ingress::IngressLink;
use kaapi_agent::{serve_ingress, IngressCommand};

/// The port in the rollout's "ingress listens on http://127.0.0.1:{port}" message.
fn listening_port(messages: &[String]) -> Option<u16> {
    messages.iter().find_map(|m| {
        m.split_once("ingress listens on http://127.0.0.1:")
            .and_then(|(_, port)| port.trim().parse().ok())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollout_cut_off_by_the_agent_stopping_closes_the_listener_it_opened() {
    let images = images();
    let fixture = Fixture::new("cutoff");
    let state_dir = fixture.state_dir.path().to_owned();
    // An ingress of its own, as `agent ingress` runs it: the agent adopts it, and it keeps
    // running after the agent stops.
    let ingress = tokio::spawn({
        let dir = state_dir.clone();
        async move { serve_ingress(&dir).await }
    });
    let link = IngressLink::new(&state_dir, IngressCommand::InProcess);
    let mut answered = false;
    for _ in 0..100 {
        if link.hello().await.is_ok() {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answered, "the ingress did not start");
    let (agent, client) = start_agent(&state_dir).await;

    // Its replica never turns healthy: the rollout waits (more than 10 s) with its new listener
    // open.
    let spec = fixture.spec(1, &images.broken_health, 1, 0);
    let ticket = client
        .rollout(&spec, RolloutMode::Converge)
        .await
        .expect("start rollout");
    let begun = std::time::Instant::now();
    let port = loop {
        let state = client
            .rollout_state(&fixture.environment, &ticket.id)
            .await
            .expect("rollout state");
        if let Some(port) = listening_port(&state.messages) {
            break port;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(30),
            "the rollout did not open its listener: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "the rollout's listener on {port} accepts connections"
    );
    let state = client
        .rollout_state(&fixture.environment, &ticket.id)
        .await
        .expect("rollout state");
    assert_eq!(state.phase, RolloutPhase::Running, "{state:?}");

    client.shutdown().await.expect("shutdown");
    tokio::time::timeout(Duration::from_secs(15), agent)
        .await
        .expect("the agent exits")
        .expect("the agent task");

    let hello = link.hello().await.expect("the ingress still runs");
    assert!(
        !hello.listeners.contains_key(&port),
        "the cut-off rollout's listener on {port} is still open: {:?}",
        hello.listeners
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "127.0.0.1:{port} still accepts connections"
    );
    link.stop().await.expect("stop the ingress");
    tokio::time::timeout(Duration::from_secs(10), ingress)
        .await
        .expect("the ingress stops")
        .expect("the ingress task")
        .expect("a clean exit");
}
