//! Keeps the ingress process in step with the agent: every [`TICK`] each environment's tables
//! are compared with what the ingress last acknowledged and pushed when they differ (a replica
//! turned healthy, unhealthy or draining); every [`CHECK`] the ingress is asked whether it runs,
//! and a new one is started when it does not (the tables are then pushed to it again).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::runtime::Agent;

const TICK: Duration = Duration::from_millis(100);
const CHECK: Duration = Duration::from_secs(1);

/// Runs until shutdown.
pub async fn run(agent: Arc<Agent>, mut shutdown: watch::Receiver<bool>) {
    let checks_every = (CHECK.as_millis() / TICK.as_millis()).max(1);
    let mut tick: u128 = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => return,
        }
        tick += 1;
        let environments = agent.environments();
        let serving = environments.iter().any(|e| !e.ingress_ports().is_empty());
        if !serving {
            continue;
        }
        if tick.is_multiple_of(checks_every) {
            let before = agent.ingress.generation();
            if let Err(e) = agent.ingress.ensure().await {
                eprintln!("agent: ingress: {e}");
                continue;
            }
            // Generation 0: nothing adopted yet (this agent just started), no news.
            if before != 0 && agent.ingress.generation() != before {
                for environment in &environments {
                    environment.record_event(
                        None,
                        "a new ingress process runs; its tables are pushed again".to_owned(),
                    );
                }
            }
        }
        for environment in environments {
            environment.sync_routes(&agent.ingress).await;
        }
    }
}
