//! Build secrets (`RUN --mount=type=secret,id=ID`): where each value comes from, checked before
//! the build so a missing one is named instead of silently mounting nothing. Values are read by
//! BuildKit through the build session only; nothing here reads, copies or prints them.

use std::path::PathBuf;

use bollard::grpc::build::SecretSource;

/// One build secret: its id in the Dockerfile and where its value lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSecret {
    pub id: String,
    pub source: SecretFrom,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretFrom {
    /// A variable of the deployer's environment.
    Env(String),
    /// A file on the deployer's machine (outside the build context is best).
    File(PathBuf),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("build secret `{id}`: the variable {name} is not set; export it before the build")]
    MissingEnv { id: String, name: String },
    #[error("build secret `{id}`: the file {} cannot be read", path.display())]
    MissingFile { id: String, path: PathBuf },
}

impl BuildSecret {
    /// Fails when the value cannot be found; never looks at the value itself beyond that.
    pub fn check(&self) -> Result<(), SecretError> {
        match &self.source {
            SecretFrom::Env(name) if std::env::var_os(name).is_none() => {
                Err(SecretError::MissingEnv {
                    id: self.id.clone(),
                    name: name.clone(),
                })
            }
            SecretFrom::File(path) if !path.is_file() => Err(SecretError::MissingFile {
                id: self.id.clone(),
                path: path.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// The source the BuildKit session serves the value from.
    pub fn session_source(&self) -> SecretSource {
        match &self.source {
            SecretFrom::Env(name) => SecretSource::Env(name.clone()),
            SecretFrom::File(path) => SecretSource::File(path.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_variable_or_file_is_named_by_id() {
        let secret = BuildSecret {
            id: "pip".to_owned(),
            source: SecretFrom::Env("KAAPI_TEST_SURELY_UNSET_VARIABLE".to_owned()),
        };
        let error = secret.check().expect_err("unset");
        assert!(
            error.to_string().contains("`pip`")
                && error
                    .to_string()
                    .contains("KAAPI_TEST_SURELY_UNSET_VARIABLE"),
            "{error}"
        );
        let secret = BuildSecret {
            id: "netrc".to_owned(),
            source: SecretFrom::File("/nonexistent/netrc".into()),
        };
        assert!(matches!(
            secret.check(),
            Err(SecretError::MissingFile { .. })
        ));
    }

    #[test]
    fn a_present_file_passes_and_maps_to_a_session_file() {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        let secret = BuildSecret {
            id: "netrc".to_owned(),
            source: SecretFrom::File(file.path().to_path_buf()),
        };
        assert_eq!(secret.check(), Ok(()));
        assert_eq!(
            secret.session_source(),
            SecretSource::File(file.path().to_path_buf())
        );
    }
}
