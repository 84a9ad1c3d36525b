//! Keeps the ingress process in step with the agent: every [`TICK`] each environment's tables
//! are compared with what the ingress last acknowledged and pushed when they differ (a replica
//! turned healthy, unhealthy or draining); every [`CHECK`] the ingress is asked whether it runs,
//! and a new one is started when it does not or hangs (the tables are then pushed to it again).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::ingress::Ensured;
use super::runtime::{Agent, Environment};

const TICK: Duration = Duration::from_millis(100);
const CHECK: Duration = Duration::from_secs(1);

/// Runs until shutdown.
pub async fn run(agent: Arc<Agent>, mut shutdown: watch::Receiver<bool>) {
    let mut next_check = Instant::now() + CHECK;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => return,
        }
        let environments = agent.environments();
        let serving = environments.iter().any(|e| !e.ingress_ports().is_empty());
        if !serving {
            continue;
        }
        if Instant::now() >= next_check {
            let checked = check(&agent, &environments).await;
            // An ingress that did not answer is asked again at once: a hung one is replaced
            // after a few checks in a row, within seconds.
            next_check = if agent.ingress.unanswered() > 0 {
                Instant::now()
            } else {
                Instant::now() + CHECK
            };
            if !checked {
                continue;
            }
        }
        for environment in environments {
            environment.sync_routes(&agent.ingress).await;
        }
    }
}

/// Asks the ingress whether it runs, starting a new one when needed; `false` when none answers.
async fn check(agent: &Agent, environments: &[Arc<Environment>]) -> bool {
    let before = agent.ingress.generation();
    let news = match agent.ingress.ensure().await {
        Err(e) => {
            eprintln!("agent: ingress: {e}");
            return false;
        }
        Ok(Ensured::ReplacedHung { pid }) => Some(format!(
            "the ingress process (pid {pid}) stopped answering; it was killed and a new one runs; its tables are pushed again"
        )),
        // Generation 0: nothing adopted yet (this agent just started), no news.
        Ok(_) if before != 0 && agent.ingress.generation() != before => {
            Some("a new ingress process runs; its tables are pushed again".to_owned())
        }
        Ok(_) => None,
    };
    if let Some(message) = news {
        for environment in environments {
            environment.record_event(None, message.clone());
        }
    }
    true
}
