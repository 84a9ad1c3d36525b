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

const EXPECTED: &str = "a command: a string (\"celery -A app worker\") or an array of strings";

impl<'de> Deserialize<'de> for CommandLine {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A visitor rather than an untagged enum, so that serde's own errors (a missing
        // `command`, a wrong type) reach the user unchanged.
        struct Visitor;

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = CommandLine;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(EXPECTED)
            }

            fn visit_str<E: serde::de::Error>(self, line: &str) -> Result<CommandLine, E> {
                shlex::split(line).map(CommandLine).ok_or_else(|| {
                    E::custom(format!("cannot split command `{line}`: unbalanced quotes"))
                })
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<CommandLine, A::Error> {
                let mut argv = Vec::new();
                while let Some(arg) = seq.next_element::<String>().map_err(|_| {
                    <A::Error as serde::de::Error>::custom(
                        "every element of a command array must be a string",
                    )
                })? {
                    argv.push(arg);
                }
                Ok(CommandLine(argv))
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

impl Serialize for CommandLine {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Holder {
        command: CommandLine,
    }

    fn read(text: &str) -> Result<Vec<String>, String> {
        toml::from_str::<Holder>(text)
            .map(|h| h.command.argv().to_vec())
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn reads_strings_and_arrays() {
        assert_eq!(
            read("command = \"celery -A 'my app' worker\""),
            Ok(vec![
                "celery".into(),
                "-A".into(),
                "my app".into(),
                "worker".into()
            ])
        );
        assert_eq!(
            read("command = [\"a b\", \"c\"]"),
            Ok(vec!["a b".into(), "c".into()])
        );
    }

    #[test]
    fn says_what_is_wrong() {
        assert_eq!(read(""), Err("missing field `command`".to_owned()));
        assert!(read("command = 5").is_err_and(|e| e.contains("a string")));
        assert!(read("command = [1]").is_err_and(|e| e.contains("must be a string")));
        assert!(read("command = \"a 'b\"").is_err_and(|e| e.contains("unbalanced quotes")));
    }
}
