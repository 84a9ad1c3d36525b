//! `kaapi-deploy secrets push ENV --from FILE`: writes the values of the config's declared
//! secrets to the environment's store (SSM SecureString parameters or Secrets Manager). Values
//! are checked before anything is written, and never appear in results or errors.

use std::path::{Path, PathBuf};

use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ssm::types::ParameterType;
use kaapi_aws::AwsError;
use kaapi_core::config::ResolvedEnvironment;
use kaapi_core::envfile;
use serde::Serialize;

use crate::names::{InfraNames, SecretStore};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PushReport {
    /// Where each pushed secret now lives (`/kaapi/staging/SECRET_KEY`), in file order.
    pub pushed: Vec<String>,
    /// Variables of the file that are not declared in `secrets` (not pushed).
    pub undeclared: Vec<String>,
    /// Declared secrets the file does not set (not pushed).
    pub absent: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("environment `{environment}` has no secret store: set environments.{environment}.secrets_from.ssm (e.g. \"/app/{environment}/\") or .secrets_manager in deploy.toml")]
    NoStore { environment: String },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: envfile::EnvFileError,
    },
    #[error("{}: {} still hold a placeholder value (empty, changethis, …); set real values (`kaapi-deploy secrets generate`) — nothing was pushed", path.display(), names.join(", "))]
    Placeholders { path: PathBuf, names: Vec<String> },
    #[error("{}: none of the declared secrets ({}) is set; nothing to push", path.display(), declared.join(", "))]
    Nothing {
        path: PathBuf,
        declared: Vec<String>,
    },
    #[error("environment `{environment}` keeps its secrets as keys of one JSON secret (`{secret}`); `secrets push` writes one value per secret and does not edit JSON secrets: update it with `aws secretsmanager put-secret-value --secret-id {secret} --secret-string file://secret.json` — nothing was pushed")]
    JsonSecret { environment: String, secret: String },
    #[error("cannot write secret {name}: {message} ({pushed} secret(s) were written before it)")]
    Aws {
        name: String,
        message: String,
        pushed: usize,
    },
}

/// Reads `file` and writes every declared secret it sets. Refuses (writing nothing) when any
/// of them holds a placeholder.
pub async fn push_secrets(
    target: &ResolvedEnvironment,
    file: &Path,
    aws: &aws_config::SdkConfig,
) -> Result<PushReport, PushError> {
    let environment = target.name();
    let names = InfraNames::new(target);
    let store = names
        .secret_store
        .clone()
        .ok_or_else(|| PushError::NoStore {
            environment: environment.to_owned(),
        })?;
    if let SecretStore::SecretsManagerJson { secret } = &store {
        return Err(PushError::JsonSecret {
            environment: environment.to_owned(),
            secret: secret.clone(),
        });
    }
    let text = std::fs::read_to_string(file).map_err(|source| PushError::Read {
        path: file.to_path_buf(),
        source,
    })?;
    let values = envfile::parse(&text).map_err(|source| PushError::Parse {
        path: file.to_path_buf(),
        source,
    })?;
    let declared = &target.config().secrets;
    let mut report = PushReport {
        undeclared: values
            .keys()
            .filter(|k| !declared.contains(k))
            .cloned()
            .collect(),
        absent: declared
            .iter()
            .filter(|d| !values.contains_key(*d))
            .cloned()
            .collect(),
        ..PushReport::default()
    };
    let to_push: Vec<(&String, &String)> = values
        .iter()
        .filter(|(k, _)| declared.contains(k))
        .collect();
    if to_push.is_empty() {
        return Err(PushError::Nothing {
            path: file.to_path_buf(),
            declared: declared.clone(),
        });
    }
    let placeholders: Vec<String> = to_push
        .iter()
        .filter(|(_, v)| envfile::is_placeholder(v))
        .map(|(k, _)| (*k).clone())
        .collect();
    if !placeholders.is_empty() {
        return Err(PushError::Placeholders {
            path: file.to_path_buf(),
            names: placeholders,
        });
    }
    let writer = Writer {
        ssm: aws_sdk_ssm::Client::new(aws),
        secretsmanager: aws_sdk_secretsmanager::Client::new(aws),
    };
    for (secret, value) in to_push {
        let name = store.name_of(secret);
        writer
            .write(&store, &name, value)
            .await
            .map_err(|message| PushError::Aws {
                name: name.clone(),
                // An error could echo the request; make sure it cannot carry the value.
                message: message.replace(value.as_str(), "***"),
                pushed: report.pushed.len(),
            })?;
        report.pushed.push(name);
    }
    Ok(report)
}

struct Writer {
    ssm: aws_sdk_ssm::Client,
    secretsmanager: aws_sdk_secretsmanager::Client,
}

/// One line on why a write failed (missing credentials included), never the SDK's chain.
fn message_of<E, R>(what: &str, e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    AwsError::from_sdk(what, e).to_string()
}

impl Writer {
    async fn write(&self, store: &SecretStore, name: &str, value: &str) -> Result<(), String> {
        match store {
            SecretStore::Ssm { .. } => self
                .ssm
                .put_parameter()
                .name(name)
                .value(value)
                .r#type(ParameterType::SecureString)
                .overwrite(true)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| message_of("ssm:PutParameter", &e)),
            SecretStore::SecretsManager { .. } => {
                let updated = self
                    .secretsmanager
                    .put_secret_value()
                    .secret_id(name)
                    .secret_string(value)
                    .send()
                    .await;
                match updated {
                    Ok(_) => Ok(()),
                    Err(e) if e.code() == Some("ResourceNotFoundException") => self
                        .secretsmanager
                        .create_secret()
                        .name(name)
                        .secret_string(value)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| message_of("secretsmanager:CreateSecret", &e)),
                    Err(e) => Err(message_of("secretsmanager:PutSecretValue", &e)),
                }
            }
            SecretStore::SecretsManagerJson { .. } => {
                Err("a JSON secret is not written key by key".to_owned())
            }
        }
    }
}
