//! `kaapi-deploy check`: after the config itself validated, every environment must provide
//! every variable of `.env.example` — by a plain value, a secret reference, or by marking it
//! optional — and, where the values can be read here (a local env file, deploy.toml), none may
//! be a placeholder in an environment that serves real users.
//!
//! Reads `.env.example` and local env files; never puts a value into a finding.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Serialize;

use crate::config::{
    EngineKind, EnvironmentConfig, LoadedConfig, SecretReference, SecretStore, SourceMap,
};
use crate::diagnostics::{Diagnostic, Severity};
use crate::envfile::{self, EnvEntry};
use crate::naming::PRODUCTION;

/// Environments named like this refuse placeholders whatever their engine.
const STRICT_NAMES: [&str; 2] = [PRODUCTION, "staging"];

/// The result of a check: per-environment variable status and every finding.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub config: PathBuf,
    pub environments: Vec<EnvironmentReport>,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentReport {
    pub name: String,
    pub engine: EngineKind,
    /// Placeholders are errors here (staging, production, any non-docker environment).
    pub refuses_placeholders: bool,
    /// Every variable the environment must provide, in `.env.example` order, then secrets.
    pub variables: Vec<VariableStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VariableStatus {
    pub name: String,
    #[serde(flatten)]
    pub provision: Provision,
}

/// How a variable reaches the environment. Never carries a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "provided_by", rename_all = "snake_case")]
pub enum Provision {
    /// A plain value in deploy.toml, at these keys (one per service when they differ).
    Value {
        keys: Vec<String>,
    },
    /// A secret, read at deploy time from `reference`.
    Secret {
        #[serde(flatten)]
        reference: SecretReference,
    },
    /// Listed in `variables.optional` and not provided.
    Optional,
    Missing,
}

/// A diagnostic, with the environment it concerns (none for the config as a whole).
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub environment: Option<String>,
    #[serde(flatten)]
    pub diagnostic: Diagnostic,
}

impl CheckReport {
    pub fn new(config: impl Into<PathBuf>) -> Self {
        Self {
            config: config.into(),
            environments: Vec::new(),
            findings: Vec::new(),
        }
    }

    pub fn push(&mut self, environment: Option<&str>, diagnostic: Diagnostic) {
        self.findings.push(Finding {
            environment: environment.map(str::to_owned),
            diagnostic,
        });
    }

    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.diagnostic.severity == severity)
            .count()
    }

    /// No errors (warnings allowed).
    pub fn passed(&self) -> bool {
        self.errors() == 0
    }

    /// The secrets each environment reads from a remote store (SSM, Secrets Manager), for
    /// checks that can reach that store.
    pub fn remote_secret_references(&self, environment: &str) -> Vec<(&str, &SecretReference)> {
        self.environments
            .iter()
            .filter(|e| e.name == environment)
            .flat_map(|e| &e.variables)
            .filter_map(|v| match &v.provision {
                Provision::Secret { reference } if reference.store != SecretStore::EnvFile => {
                    Some((v.name.as_str(), reference))
                }
                _ => None,
            })
            .collect()
    }
}

/// Whether placeholder values are errors (rather than warnings) in an environment.
pub fn refuses_placeholders(name: &str, env: &EnvironmentConfig) -> bool {
    env.engine != EngineKind::Docker || STRICT_NAMES.contains(&name)
}

/// Checks the variables of `only` (or of every environment) of a config that loaded.
pub fn check(loaded: &LoadedConfig, only: Option<&str>) -> CheckReport {
    let mut report = CheckReport::new(&loaded.path);
    for warning in &loaded.warnings {
        report.push(None, warning.clone());
    }
    let source = std::fs::read_to_string(&loaded.path).unwrap_or_default();
    let mut checker = Checker {
        loaded,
        map: SourceMap::new(&source),
        env_files: HashMap::new(),
    };
    let example = checker.example(&mut report);
    for (name, env) in &loaded.config.environments {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let environment = checker.environment(name, env, example.as_ref(), &mut report);
        report.environments.push(environment);
    }
    report
}

/// The variables of `.env.example`, with the file they came from.
struct Example {
    path: PathBuf,
    entries: IndexMap<String, EnvEntry>,
}

/// A local env file as far as it could be read: its variables, or why not.
type EnvFile = Result<IndexMap<String, EnvEntry>, Diagnostic>;

struct Checker<'a> {
    loaded: &'a LoadedConfig,
    map: SourceMap<'a>,
    env_files: HashMap<PathBuf, EnvFile>,
}

impl Checker<'_> {
    fn config_diagnostic(&self, severity: Severity, key: &str, message: String) -> Diagnostic {
        let d = match severity {
            Severity::Error => Diagnostic::error(&self.loaded.path, message),
            Severity::Warning => Diagnostic::warning(&self.loaded.path, message),
        };
        d.at_line(self.map.line_of_key(key)).at_key(key)
    }

    /// Reads `variables.example`; problems with it are reported once, not per environment.
    fn example(&self, report: &mut CheckReport) -> Option<Example> {
        let config = &self.loaded.config;
        let Some(relative) = &config.variables.example else {
            report.push(
                None,
                self.config_diagnostic(
                    Severity::Warning,
                    "variables",
                    "no variables.example is set, so variables are not checked against a list"
                        .to_owned(),
                )
                .with_hint("add [variables] example = \".env.example\""),
            );
            return None;
        };
        let path = self.loaded.resolve(relative);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                report.push(
                    None,
                    self.config_diagnostic(
                        Severity::Error,
                        "variables.example",
                        format!("cannot read {}: {e}", path.display()),
                    )
                    .with_hint("create the file, or point variables.example at it"),
                );
                return None;
            }
        };
        let entries = match envfile::parse_entries(&text) {
            Ok(entries) => entries,
            Err(e) => {
                report.push(
                    None,
                    Diagnostic::error(&path, e.message)
                        .at_line(Some(e.line))
                        .with_hint("write one KEY=value per line"),
                );
                return None;
            }
        };
        for (index, name) in config.variables.optional.iter().enumerate() {
            if !entries.contains_key(name) {
                report.push(
                    None,
                    self.config_diagnostic(
                        Severity::Warning,
                        &format!("variables.optional.{index}"),
                        format!("`{name}` is listed as optional but is not in {relative}"),
                    )
                    .with_hint("remove it from variables.optional, or add it to the example"),
                );
            }
        }
        for (index, name) in config.secrets.iter().enumerate() {
            if !entries.contains_key(name) {
                report.push(
                    None,
                    self.config_diagnostic(
                        Severity::Warning,
                        &format!("secrets.{index}"),
                        format!("secret `{name}` is not listed in {relative}"),
                    )
                    .with_hint(format!(
                        "add `{name}=` to {relative} so others know to set it"
                    )),
                );
            }
        }
        Some(Example { path, entries })
    }

    fn environment(
        &mut self,
        name: &str,
        env: &EnvironmentConfig,
        example: Option<&Example>,
        report: &mut CheckReport,
    ) -> EnvironmentReport {
        let config = &self.loaded.config;
        let strict = refuses_placeholders(name, env);
        let mut required: Vec<(&str, Option<(&Path, usize)>)> = Vec::new();
        if let Some(example) = example {
            for (var, entry) in &example.entries {
                required.push((var.as_str(), Some((example.path.as_path(), entry.line))));
            }
        }
        for secret in &config.secrets {
            if !required.iter().any(|(n, _)| n == secret) {
                required.push((secret.as_str(), None));
            }
        }
        let mut variables = Vec::new();
        let mut missing_from_file: Vec<&str> = Vec::new();
        for (var, declared_at) in required {
            let optional = config.variables.optional.iter().any(|o| o == var);
            let provision = if config.secrets.iter().any(|s| s == var) {
                self.secret(
                    name,
                    env,
                    var,
                    optional,
                    strict,
                    report,
                    &mut missing_from_file,
                )
            } else if let Some(keys) = self.plain_value(name, env, var, optional, strict, report) {
                Provision::Value { keys }
            } else if optional {
                Provision::Optional
            } else {
                let (file, line) = match declared_at {
                    Some((file, line)) => (file, Some(line)),
                    None => (self.loaded.path.as_path(), None),
                };
                report.push(Some(name), missing(name, var, file, line));
                Provision::Missing
            };
            variables.push(VariableStatus {
                name: var.to_owned(),
                provision,
            });
        }
        if !missing_from_file.is_empty() {
            if let Some(Err(unreadable)) = env
                .secrets_from
                .as_ref()
                .and_then(|s| s.env_file.as_ref())
                .and_then(|f| self.env_files.get(&self.loaded.resolve(f)))
            {
                let hint = format!(
                    "create it (e.g. from .env.example) with real values for: {}; make tokens with `kaapi-deploy secrets generate`",
                    missing_from_file.join(", ")
                );
                report.push(Some(name), unreadable.clone().with_hint(hint));
            }
        }
        if env.engine == EngineKind::Ecs {
            self.loopback_hosts(name, env, report);
        }
        EnvironmentReport {
            name: name.to_owned(),
            engine: env.engine,
            refuses_placeholders: strict,
            variables,
        }
    }

    /// On ECS `localhost` is the task itself, never the database or broker a local run reached
    /// there: warn about every variable of the environment that points at a loopback host.
    fn loopback_hosts(&self, environment: &str, env: &EnvironmentConfig, report: &mut CheckReport) {
        let config = &self.loaded.config;
        let mut flagged: Vec<String> = Vec::new();
        for (service, settings) in &config.services {
            for (var, value) in config.plain_env(environment, service) {
                let Some(host) = loopback_host(&value) else {
                    continue;
                };
                // The most specific place the value comes from (see Config::plain_env).
                let key = if settings.env.contains_key(&var) {
                    format!("services.{service}.env.{var}")
                } else if env.env.contains_key(&var) {
                    format!("environments.{environment}.env.{var}")
                } else {
                    format!("env.{var}")
                };
                if flagged.contains(&key) {
                    continue;
                }
                let message = format!(
                    "`{var}` points at {host}; on ECS (environment `{environment}`) that is the task itself, not a database or broker"
                );
                let hint = format!(
                    "set environments.{environment}.env.{var} to the real host (e.g. the RDS, ElastiCache or Amazon MQ endpoint)"
                );
                report.push(
                    Some(environment),
                    self.config_diagnostic(Severity::Warning, &key, message)
                        .with_hint(hint),
                );
                flagged.push(key);
            }
        }
    }

    /// The deploy.toml keys that give `var` a plain value in `environment`, reporting
    /// placeholders; `None` when no key does.
    fn plain_value(
        &self,
        environment: &str,
        env: &EnvironmentConfig,
        var: &str,
        optional: bool,
        strict: bool,
        report: &mut CheckReport,
    ) -> Option<Vec<String>> {
        let config = &self.loaded.config;
        // The key whose value wins for each service: service, then environment, then shared.
        let env_key = format!("environments.{environment}.env.{var}");
        let shared_key = format!("env.{var}");
        let layered = env
            .env
            .get(var)
            .map(|v| (env_key, v))
            .or_else(|| config.env.get(var).map(|v| (shared_key, v)));
        let mut keys: Vec<(String, &String)> = Vec::new();
        for (service_name, service) in &config.services {
            let winner = match service.env.get(var) {
                Some(v) => Some((format!("services.{service_name}.env.{var}"), v)),
                None => layered.clone(),
            };
            if let Some(winner) = winner {
                if !keys.iter().any(|(k, _)| *k == winner.0) {
                    keys.push(winner);
                }
            }
        }
        if keys.is_empty() {
            return None;
        }
        for (key, value) in &keys {
            if is_unset(value, optional) {
                let message = format!(
                    "`{var}` has a placeholder value for environment `{environment}`{}",
                    if strict { "" } else { " (allowed locally)" }
                );
                let severity = if strict {
                    Severity::Error
                } else {
                    Severity::Warning
                };
                report.push(
                    Some(environment),
                    self.config_diagnostic(severity, key, message)
                        .with_hint("set the real value, or make it a secret if it is one"),
                );
            }
        }
        Some(keys.into_iter().map(|(k, _)| k).collect())
    }

    #[allow(clippy::too_many_arguments)]
    fn secret<'v>(
        &mut self,
        environment: &str,
        env: &EnvironmentConfig,
        var: &'v str,
        optional: bool,
        strict: bool,
        report: &mut CheckReport,
        missing_from_file: &mut Vec<&'v str>,
    ) -> Provision {
        let Some(reference) = env.secrets_from.as_ref().and_then(|s| s.reference(var)) else {
            // The loader refuses secrets without a source; keep going if it ever lets one by.
            report.push(
                Some(environment),
                self.config_diagnostic(
                    Severity::Error,
                    &format!("environments.{environment}.secrets_from"),
                    format!(
                        "environment `{environment}` does not say where secret `{var}` comes from"
                    ),
                ),
            );
            return Provision::Missing;
        };
        if reference.store != SecretStore::EnvFile {
            // Its existence is checked by the engine's prerequisites, which reach the store.
            return Provision::Secret { reference };
        }
        let path = self.loaded.resolve(&reference.reference);
        let file = self.env_file(&path);
        let entries = match file {
            Ok(entries) => entries,
            Err(_) => {
                if !optional {
                    missing_from_file.push(var);
                }
                return if optional {
                    Provision::Optional
                } else {
                    Provision::Missing
                };
            }
        };
        match entries.get(var) {
            None if optional => Provision::Optional,
            None => {
                report.push(
                    Some(environment),
                    Diagnostic::error(&path, format!(
                        "secret `{var}` is not set (environment `{environment}` reads its secrets from this file)"
                    ))
                    .at_key(var)
                    .with_hint(format!(
                        "add a line {var}=… with the real value; make tokens with `kaapi-deploy secrets generate`"
                    )),
                );
                Provision::Missing
            }
            Some(entry) => {
                if is_unset(&entry.value, optional) {
                    let (severity, tail) = if strict {
                        (Severity::Error, "")
                    } else {
                        (Severity::Warning, " (allowed locally)")
                    };
                    let message = format!(
                        "secret `{var}` has a placeholder value for environment `{environment}`{tail}"
                    );
                    let diagnostic = match severity {
                        Severity::Error => Diagnostic::error(&path, message),
                        Severity::Warning => Diagnostic::warning(&path, message),
                    };
                    report.push(
                        Some(environment),
                        diagnostic.at_line(Some(entry.line)).at_key(var).with_hint(
                            "replace it; make tokens with `kaapi-deploy secrets generate`",
                        ),
                    );
                }
                Provision::Secret { reference }
            }
        }
    }

    fn env_file(&mut self, path: &Path) -> &EnvFile {
        self.env_files
            .entry(path.to_path_buf())
            .or_insert_with(|| read_env_file(path))
    }
}

fn read_env_file(path: &Path) -> EnvFile {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let message = if e.kind() == std::io::ErrorKind::NotFound {
            "the env file does not exist".to_owned()
        } else {
            format!("cannot read the env file: {e}")
        };
        Diagnostic::error(path, message)
    })?;
    envfile::parse_entries(&text).map_err(|e| {
        Diagnostic::error(path, e.message)
            .at_line(Some(e.line))
            .with_hint("write one KEY=value per line")
    })
}

/// A value that is not real: a placeholder, or empty for a variable that is required.
fn is_unset(value: &str, optional: bool) -> bool {
    if value.trim().is_empty() {
        !optional
    } else {
        envfile::is_placeholder(value)
    }
}

/// A required variable nobody provides, reported where it is declared.
/// The host of `value` (a host, `host:port` or a URL) when it is a loopback one.
fn loopback_host(value: &str) -> Option<&str> {
    let rest = value.split_once("://").map_or(value, |(_, r)| r);
    let rest = rest.split(['/', '?']).next().unwrap_or(rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => rest.split(':').next().unwrap_or(rest),
    };
    crate::scaffold::is_localhost(host).then_some(host)
}

fn missing(environment: &str, var: &str, file: &Path, line: Option<usize>) -> Diagnostic {
    Diagnostic::error(
        file,
        format!("`{var}` is not provided for environment `{environment}`"),
    )
    .at_line(line)
    .at_key(var)
    .with_hint(format!(
        "set it under [environments.{environment}.env] (or [env] for every environment), add it to `secrets` if it is secret, or list it in variables.optional"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretSource;

    fn env(engine: &str) -> EnvironmentConfig {
        let text = format!("engine = \"{engine}\"");
        toml::from_str(&text).expect("environment table")
    }

    #[test]
    fn staging_production_and_every_ecs_environment_refuse_placeholders() {
        assert!(!refuses_placeholders("local", &env("docker")));
        assert!(!refuses_placeholders("preview", &env("docker")));
        assert!(refuses_placeholders("staging", &env("docker")));
        assert!(refuses_placeholders("production", &env("docker")));
        assert!(refuses_placeholders("qa", &env("ecs")));
    }

    #[test]
    fn secret_references_join_prefix_and_name() {
        let source = |ssm: Option<&str>, sm: Option<&str>, file: Option<&str>| SecretSource {
            ssm: ssm.map(str::to_owned),
            secrets_manager: sm.map(str::to_owned),
            env_file: file.map(str::to_owned),
            ..SecretSource::default()
        };
        let r = |s: SecretSource| s.reference("SECRET_KEY").map(|r| (r.store, r.reference));
        assert_eq!(
            r(source(Some("/kaapi/staging/"), None, None)),
            Some((SecretStore::Ssm, "/kaapi/staging/SECRET_KEY".to_owned()))
        );
        assert_eq!(
            r(source(Some("/kaapi/staging"), None, None)),
            Some((SecretStore::Ssm, "/kaapi/staging/SECRET_KEY".to_owned()))
        );
        assert_eq!(
            r(source(None, Some("kaapi/prod"), None)),
            Some((
                SecretStore::SecretsManager,
                "kaapi/prod/SECRET_KEY".to_owned()
            ))
        );
        assert_eq!(
            r(source(None, None, Some(".env"))),
            Some((SecretStore::EnvFile, ".env".to_owned()))
        );
        assert_eq!(r(source(None, None, None)), None);
    }

    #[test]
    fn loopback_hosts_are_warned_about_on_ecs_environments_naming_the_key_that_sets_them() {
        let text = "app = \"kaapi\"\n[image]\ncontext = \".\"\n[services.web]\nport = 80\n[env]\nPOSTGRES_SERVER = \"localhost\"\nREDIS_URL = \"redis://user@127.0.0.1:6379/0\"\nSENTRY_DSN = \"https://key@o1.ingest.sentry.io/2\"\n[environments.local]\nengine = \"docker\"\n[environments.staging]\nengine = \"ecs\"\nregion = \"eu-west-1\"\nenv = { RABBITMQ_HOST = \"[::1]:5672\" }\n[environments.production]\nengine = \"ecs\"\nregion = \"eu-west-1\"\nenv = { POSTGRES_SERVER = \"db.internal\", REDIS_URL = \"redis://cache.internal:6379/0\" }\n";
        let path = Path::new("deploy.toml");
        let (config, warnings) = crate::config::parse(path, text).expect("valid config");
        let loaded = LoadedConfig {
            path: path.to_path_buf(),
            dir: PathBuf::from("."),
            config,
            warnings,
        };
        let report = check(&loaded, None);
        let warned = |environment: &str| -> Vec<String> {
            report
                .findings
                .iter()
                .filter(|f| f.environment.as_deref() == Some(environment))
                .filter(|f| f.diagnostic.message.contains("points at"))
                .map(|f| {
                    format!(
                        "{:?} {} {}",
                        f.diagnostic.severity,
                        f.diagnostic.key.clone().unwrap_or_default(),
                        f.diagnostic.message
                    )
                })
                .collect()
        };
        assert!(warned("local").is_empty());
        let staging = warned("staging");
        assert_eq!(staging.len(), 3, "{staging:?}");
        for expected in [
            "Warning env.POSTGRES_SERVER `POSTGRES_SERVER` points at localhost",
            "Warning env.REDIS_URL `REDIS_URL` points at 127.0.0.1",
            "Warning environments.staging.env.RABBITMQ_HOST `RABBITMQ_HOST` points at ::1",
        ] {
            assert!(
                staging.iter().any(|f| f.starts_with(expected)),
                "{expected}: {staging:?}"
            );
        }
        // An environment that points them elsewhere is not warned about.
        assert!(
            warned("production").is_empty(),
            "{:?}",
            warned("production")
        );
    }

    #[test]
    fn empty_values_are_unset_only_when_required() {
        assert!(is_unset("", false));
        assert!(!is_unset("", true));
        assert!(is_unset("changethis", true));
        assert!(!is_unset("real", false));
    }
}
