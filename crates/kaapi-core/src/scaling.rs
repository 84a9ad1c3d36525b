//! `scale ENV SERVICE=N…`: the requests read from the command line and checked against the
//! config, the scaling events engines record, and which replica count a later deploy keeps.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{ResolvedEnvironment, ServiceKind};

/// The most replicas a service may have (as in `deploy.toml`).
pub const MAX_REPLICAS: u32 = 100;

/// One service to scale, checked against the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleRequest {
    pub service: String,
    pub replicas: u32,
    /// The service's `replicas` in `deploy.toml` now, recorded with the event.
    pub config_replicas: u32,
}

/// A change of a service's replica count without a new release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScalingEvent {
    /// The release that served when it was scaled.
    pub release: u64,
    pub service: String,
    pub from: u32,
    pub to: u32,
    /// The service's `replicas` in `deploy.toml` at that time: a deploy keeps `to` while the
    /// config still says this.
    pub config_replicas: u32,
    pub author: String,
    pub at: DateTime<Utc>,
}

impl ScaleRequest {
    /// The event recording this request, applied while `release` served and `from` replicas ran.
    pub fn event(&self, release: u64, from: u32, author: &str, at: DateTime<Utc>) -> ScalingEvent {
        ScalingEvent {
            release,
            service: self.service.clone(),
            from,
            to: self.replicas,
            config_replicas: self.config_replicas,
            author: author.to_owned(),
            at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScaleError {
    #[error("nothing to scale; name each service as SERVICE=N (e.g. `backend=3`)")]
    Empty,
    #[error("`{0}` is not SERVICE=N; write e.g. `backend=3`")]
    Syntax(String),
    #[error("`{argument}`: the service `{service}` is not in {config}; services: {known}")]
    UnknownService {
        argument: String,
        service: String,
        config: String,
        known: String,
    },
    #[error("`{argument}`: `{count}` is not a number of replicas; use 0 to {max}", max = MAX_REPLICAS)]
    NotANumber { argument: String, count: String },
    #[error("`{argument}`: at most {max} replicas", max = MAX_REPLICAS)]
    TooMany { argument: String },
    #[error(
        "`{argument}`: `{service}` is a web service and keeps at least 1 replica (the ingress \
         would have nothing to send traffic to); `kaapi-deploy down` stops an environment"
    )]
    WebToZero { argument: String, service: String },
    #[error("`{service}` is named twice")]
    Twice { service: String },
}

/// Reads `SERVICE=N` arguments against the environment's config.
pub fn parse_requests(
    target: &ResolvedEnvironment,
    arguments: &[String],
) -> Result<Vec<ScaleRequest>, ScaleError> {
    if arguments.is_empty() {
        return Err(ScaleError::Empty);
    }
    let services = &target.config().services;
    let mut requests: Vec<ScaleRequest> = Vec::new();
    for argument in arguments {
        let Some((service, count)) = argument.split_once('=') else {
            return Err(ScaleError::Syntax(argument.clone()));
        };
        let (service, count) = (service.trim(), count.trim());
        let Some(config) = services.get(service) else {
            return Err(ScaleError::UnknownService {
                argument: argument.clone(),
                service: service.to_owned(),
                config: target.path().display().to_string(),
                known: services.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        };
        let replicas: u32 = count.parse().map_err(|_| ScaleError::NotANumber {
            argument: argument.clone(),
            count: count.to_owned(),
        })?;
        if replicas > MAX_REPLICAS {
            return Err(ScaleError::TooMany {
                argument: argument.clone(),
            });
        }
        if replicas == 0 && config.kind() == ServiceKind::Web {
            return Err(ScaleError::WebToZero {
                argument: argument.clone(),
                service: service.to_owned(),
            });
        }
        if requests.iter().any(|r| r.service == service) {
            return Err(ScaleError::Twice {
                service: service.to_owned(),
            });
        }
        requests.push(ScaleRequest {
            service: service.to_owned(),
            replicas,
            config_replicas: target.replicas(service),
        });
    }
    Ok(requests)
}

/// What a deploy does with a service's replica count after `scale`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// Never scaled (or scaled to what the config says now): the release's own count.
    Unscaled,
    /// The config still says what it said when the service was scaled: the scaled count.
    Scaled(u32),
    /// `deploy.toml` changed the count since the service was scaled: the config wins; the note
    /// says so.
    ConfigWins(String),
}

/// What a deploy gives `service`, whose `deploy.toml` value is `config_replicas` now, after the
/// scaling `events` (any order).
pub fn kept_count(service: &str, config_replicas: u32, events: &[ScalingEvent]) -> Kept {
    let last = events
        .iter()
        .filter(|e| e.service == service)
        .max_by_key(|e| e.at);
    match last {
        None => Kept::Unscaled,
        Some(event) if event.config_replicas == config_replicas => Kept::Scaled(event.to),
        Some(event) if event.to == config_replicas => Kept::Unscaled,
        Some(event) => Kept::ConfigWins(format!(
            "{service}: deploy.toml changed its replicas from {} to {config_replicas} since it \
             was scaled to {}; the config wins",
            event.config_replicas, event.to
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::config::{parse, LoadedConfig};

    fn target() -> ResolvedEnvironment {
        let text = r#"
app = "kaapi"
[image]
context = "."
[services.backend]
command = "serve"
port = 80
replicas = 2
[services.worker]
command = "worker"
[environments.staging]
engine = "docker"
ingress_port = 18000
"#;
        let path = Path::new("deploy.toml");
        let (config, warnings) = parse(path, text).expect("valid config");
        let loaded = LoadedConfig {
            path: path.to_path_buf(),
            dir: PathBuf::from("."),
            config,
            warnings,
        };
        ResolvedEnvironment::resolve(loaded, "staging").expect("known environment")
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn requests_carry_the_config_value_they_override() {
        let requests =
            parse_requests(&target(), &args(&["backend=3", "worker = 0"])).expect("valid requests");
        assert_eq!(
            requests,
            vec![
                ScaleRequest {
                    service: "backend".to_owned(),
                    replicas: 3,
                    config_replicas: 2,
                },
                ScaleRequest {
                    service: "worker".to_owned(),
                    replicas: 0,
                    config_replicas: 1,
                },
            ]
        );
    }

    #[test]
    fn bad_requests_say_what_to_write() {
        let target = target();
        let error = |list: &[&str]| {
            parse_requests(&target, &args(list))
                .expect_err("refused")
                .to_string()
        };
        assert!(error(&[]).contains("SERVICE=N"));
        assert!(error(&["backend"]).contains("backend=3"));
        let unknown = error(&["flower=2"]);
        assert!(unknown.contains("`flower`") && unknown.contains("backend, worker"));
        assert!(error(&["backend=three"]).contains("`three` is not a number"));
        assert!(error(&["backend=-1"]).contains("not a number"));
        assert!(error(&["backend=101"]).contains("at most 100"));
        assert!(error(&["backend=0"]).contains("web service"));
        assert!(error(&["worker=2", "worker=3"]).contains("named twice"));
    }

    fn event(to: u32, config_replicas: u32, minutes: i64) -> ScalingEvent {
        ScalingEvent {
            release: 1,
            service: "backend".to_owned(),
            from: config_replicas,
            to,
            config_replicas,
            author: "ana".to_owned(),
            at: DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::minutes(minutes),
        }
    }

    #[test]
    fn a_deploy_keeps_the_scaled_count_until_the_config_changes() {
        assert_eq!(kept_count("backend", 2, &[]), Kept::Unscaled);
        let events = [event(5, 2, 1), event(3, 2, 2)];
        assert_eq!(kept_count("backend", 2, &events), Kept::Scaled(3));
        assert_eq!(kept_count("worker", 1, &events), Kept::Unscaled);
        assert_eq!(kept_count("backend", 3, &events), Kept::Unscaled);
        let Kept::ConfigWins(note) = kept_count("backend", 4, &events) else {
            panic!("the config changed since the scale");
        };
        assert!(note.contains("from 2 to 4") && note.contains("scaled to 3"));
    }
}
