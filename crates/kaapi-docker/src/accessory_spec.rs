//! What an accessory container runs in one environment, derived from the config: image,
//! command, variables (secrets included), volumes, loopback ports and health check, plus a
//! fingerprint of all that, so a deploy can tell an unchanged accessory (left alone) from a
//! changed one (recreated, volumes kept).

use std::collections::BTreeMap;
use std::time::Duration;

use kaapi_core::config::{AccessoryConfig, PortMapping, ResolvedEnvironment};
use kaapi_core::engine::{EngineError, EngineResult};
use serde::Serialize;

use crate::network::network_name;
use crate::revisions::{read_secrets, volume_bind};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum AccessoryHealth {
    /// Run inside the container by the Docker Engine's health check.
    Command(Vec<String>),
    /// `GET path` on 127.0.0.1 through the published `port`.
    Http { path: String, port: u16 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthTiming {
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub start_period_ms: u64,
}

impl HealthTiming {
    /// How long a deploy waits for the accessory to become healthy before giving up.
    pub fn deadline(&self) -> Duration {
        let per_try = self.interval_ms + self.timeout_ms;
        Duration::from_millis(self.start_period_ms + per_try * u64::from(self.retries) + 2_000)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessorySpec {
    /// The accessory's name, also its host name on the network.
    pub name: String,
    /// `{app}-{env}-accessory-{name}`.
    pub container: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    /// Every variable, secrets included (never printed).
    pub env: BTreeMap<String, String>,
    /// Docker volume binds, `volume-name:/path`.
    pub volumes: Vec<String>,
    /// `(host port, container port)`; no host port: a free one. Always on 127.0.0.1.
    pub ports: Vec<(Option<u16>, u16)>,
    pub health: Option<(AccessoryHealth, HealthTiming)>,
    pub network: String,
}

impl AccessorySpec {
    /// A stable digest of the spec (FNV-1a over its JSON): equal specs, equal fingerprints,
    /// across runs and toolchains.
    pub fn fingerprint(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in bytes {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{hash:016x}")
    }
}

pub fn container_name(app: &str, environment: &str, name: &str) -> String {
    format!("{app}-{environment}-accessory-{name}")
}

/// The specs of every accessory that runs in the target environment, in the config's order.
pub fn specs(target: &ResolvedEnvironment) -> EngineResult<Vec<AccessorySpec>> {
    let accessories = target.config().accessories_of(target.name());
    let needs_secrets = accessories.iter().any(|(_, a)| !a.secrets.is_empty());
    let secrets = if needs_secrets {
        read_secrets(target)?
    } else {
        BTreeMap::new()
    };
    accessories
        .into_iter()
        .map(|(name, accessory)| spec(target, name, accessory, &secrets))
        .collect()
}

/// The spec of one accessory, by name (`accessory start db`).
pub fn spec_named(target: &ResolvedEnvironment, name: &str) -> EngineResult<AccessorySpec> {
    let known: Vec<&str> = target
        .config()
        .accessories_of(target.name())
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    if !known.contains(&name) {
        return Err(EngineError::not_found(format!(
            "no accessory `{name}` runs in `{}` ({}); accessories here: {}",
            target.name(),
            target.path().display(),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )));
    }
    specs(target)?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| EngineError::not_found(format!("no accessory `{name}`")))
}

fn spec(
    target: &ResolvedEnvironment,
    name: &str,
    accessory: &AccessoryConfig,
    secrets: &BTreeMap<String, String>,
) -> EngineResult<AccessorySpec> {
    let (app, environment) = (target.app(), target.name());
    let mut env: BTreeMap<String, String> = accessory
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for secret in &accessory.secrets {
        if let Some(value) = secrets.get(secret) {
            env.insert(secret.clone(), value.clone());
        }
    }
    let volumes = accessory
        .volumes
        .iter()
        .map(|v| volume_bind(app, environment, v))
        .collect::<EngineResult<Vec<_>>>()?;
    let ports = accessory
        .ports
        .iter()
        .map(|p| {
            PortMapping::parse(p)
                .map(|m| (m.host, m.container))
                .ok_or_else(|| {
                    EngineError::failed(format!(
                        "accessories.{name}.ports: `{p}` is not PORT or HOST_PORT:PORT"
                    ))
                })
        })
        .collect::<EngineResult<Vec<_>>>()?;
    let health = accessory.health.as_ref().and_then(|h| {
        let check = match (&h.command, &h.path) {
            (Some(command), _) => AccessoryHealth::Command(command.argv().to_vec()),
            (None, Some(path)) => AccessoryHealth::Http {
                path: path.clone(),
                port: h.port?,
            },
            (None, None) => return None,
        };
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Some((
            check,
            HealthTiming {
                interval_ms: millis(h.interval()),
                timeout_ms: millis(h.timeout()),
                retries: h.retries(),
                start_period_ms: millis(h.start_period()),
            },
        ))
    });
    Ok(AccessorySpec {
        name: name.to_owned(),
        container: container_name(app, environment, name),
        image: accessory.image.clone(),
        command: accessory.command.as_ref().map(|c| c.argv().to_vec()),
        env,
        volumes,
        ports,
        health,
        network: network_name(app, environment),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use kaapi_core::config::{parse, LoadedConfig, ResolvedEnvironment};

    use super::*;

    fn target(accessory: &str, dir: &Path) -> ResolvedEnvironment {
        let text = format!(
            "app = \"kaapi\"\nsecrets = [\"POSTGRES_PASSWORD\"]\n[image]\ncontext = \".\"\n[services.web]\nport = 80\n{accessory}\n[environments.local]\nengine = \"docker\"\nsecrets_from = {{ env_file = \".env\" }}\n[environments.other]\nengine = \"docker\"\nsecrets_from = {{ env_file = \".env\" }}\n"
        );
        let path = dir.join("deploy.toml");
        let (config, warnings) = parse(&path, &text).expect("valid config");
        let loaded = LoadedConfig {
            path,
            dir: dir.to_path_buf(),
            config,
            warnings,
        };
        ResolvedEnvironment::resolve(loaded, "local").expect("local exists")
    }

    #[test]
    fn an_accessory_runs_on_the_environment_network_with_its_secret_and_loopback_ports() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(".env"), "POSTGRES_PASSWORD=s3cret\n").expect("write");
        let target = target(
            "[accessories.db]\nimage = \"postgres:16\"\nenv = { POSTGRES_USER = \"app\" }\nsecrets = [\"POSTGRES_PASSWORD\"]\nvolumes = [\"pgdata:/var/lib/postgresql/data\"]\nports = [\"5432\"]\nhealth = { command = \"pg_isready -U app\", interval = \"1s\", timeout = \"500ms\", retries = 3 }\n[accessories.other]\nimage = \"x\"\nenvironments = [\"other\"]\n",
            dir.path(),
        );
        let specs = specs(&target).expect("specs");
        assert_eq!(specs.len(), 1, "`other` runs only in environment other");
        let db = &specs[0];
        assert_eq!(db.container, "kaapi-local-accessory-db");
        assert_eq!(db.network, "kaapi-local");
        assert_eq!(db.env["POSTGRES_PASSWORD"], "s3cret");
        assert_eq!(db.env["POSTGRES_USER"], "app");
        assert_eq!(db.volumes, ["kaapi-local-pgdata:/var/lib/postgresql/data"]);
        assert_eq!(db.ports, [(None, 5432)]);
        let (check, timing) = db.health.clone().expect("health");
        assert_eq!(
            check,
            AccessoryHealth::Command(vec!["pg_isready".into(), "-U".into(), "app".into()])
        );
        assert_eq!(timing.deadline(), Duration::from_millis(3 * 1500 + 2000));
        // Same spec, same fingerprint; any change, another.
        assert_eq!(db.fingerprint(), db.clone().fingerprint());
        let mut changed = db.clone();
        changed.image = "postgres:17".to_owned();
        assert_ne!(db.fingerprint(), changed.fingerprint());
        assert!(spec_named(&target, "other")
            .expect_err("not in local")
            .to_string()
            .contains("accessories here: db"));
    }
}
