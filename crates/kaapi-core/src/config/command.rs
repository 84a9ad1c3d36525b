//! A command line written either as a TOML array (`["celery", "worker"]`) or as one string
//! split like a POSIX shell would (`"celery -A app worker"`). Images may have no shell
//! (`FROM scratch`), so a string is split here rather than handed to `sh -c`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine(Vec<String>);

impl CommandLine {
    pub fn new(argv: Vec<String>) -> Self {
        Self(argv)
    }
    pub fn argv(&self) -> &[String] {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty() || self.0.iter().all(|a| a.trim().is_empty())
    }
}

impl std::fmt::Display for CommandLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let quoted =
            shlex::try_join(self.0.iter().map(String::as_str)).unwrap_or_else(|_| self.0.join(" "));
        f.write_str(&quoted)
    }
}

impl<'de> Deserialize<'de> for CommandLine {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Line(String),
            Argv(Vec<String>),
        }
        let raw = Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "a command must be a string (\"celery -A app worker\") or an array of strings",
            )
        })?;
        match raw {
            Raw::Argv(argv) => Ok(Self(argv)),
            Raw::Line(line) => shlex::split(&line).map(Self).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "cannot split command `{line}`: unbalanced quotes"
                ))
            }),
        }
    }
}

impl Serialize for CommandLine {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}
