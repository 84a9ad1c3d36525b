//! `scale` on the local engine: the serving spec with new replica counts, and the events that
//! record the change. The agent then starts or stops only the difference.

use chrono::Utc;
use kaapi_agent::api::EnvironmentSpec;
use kaapi_core::engine::{EngineError, EngineResult};
use kaapi_core::scaling::{ScaleRequest, ScalingEvent};

/// Sets each requested count in `spec` (the serving release's) and returns one event each.
pub fn apply(
    spec: &mut EnvironmentSpec,
    requests: &[ScaleRequest],
    author: &str,
) -> EngineResult<Vec<ScalingEvent>> {
    let at = Utc::now();
    let release = spec.release;
    requests
        .iter()
        .map(|request| {
            let Some(service) = spec.services.iter_mut().find(|s| s.name == request.service) else {
                return Err(EngineError::failed(format!(
                    "release {release} has no service `{}`; deploy the config that adds it first",
                    request.service
                )));
            };
            let from = service.replicas;
            service.replicas = request.replicas;
            Ok(request.event(release, from, author, at))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kaapi_agent::api::ServiceSpec;

    use super::*;

    fn service(name: &str, replicas: u32) -> ServiceSpec {
        ServiceSpec {
            name: name.to_owned(),
            image: "sha256:aaa".to_owned(),
            command: None,
            env: BTreeMap::new(),
            replicas,
            port: None,
            health: None,
            stop_timeout_secs: 10,
            cpu: None,
            memory_mib: None,
            volumes: Vec::new(),
            network: None,
            logs: None,
            revision: None,
        }
    }

    fn spec() -> EnvironmentSpec {
        EnvironmentSpec {
            app: "kaapi".to_owned(),
            environment: "staging".to_owned(),
            release: 7,
            ingress_port: None,
            web_service: None,
            ingresses: BTreeMap::new(),
            services: vec![service("backend", 2), service("worker", 1)],
            keep_warm_ms: 0,
        }
    }

    fn request(service: &str, replicas: u32) -> ScaleRequest {
        ScaleRequest {
            service: service.to_owned(),
            replicas,
            config_replicas: 2,
        }
    }

    #[test]
    fn only_the_named_counts_change_and_each_is_recorded() {
        let mut spec = spec();
        let events = apply(&mut spec, &[request("backend", 3)], "ana").expect("applies");
        assert_eq!(spec.services[0].replicas, 3);
        assert_eq!(spec.services[1].replicas, 1);
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(
            (event.release, event.from, event.to, event.config_replicas),
            (7, 2, 3, 2)
        );
    }

    #[test]
    fn a_service_the_release_lacks_is_refused() {
        let mut spec = spec();
        let error = apply(&mut spec, &[request("flower", 1)], "ana").expect_err("refused");
        assert!(error.to_string().contains("no service `flower`"));
    }
}
