//! `.env` files: the `.env.example` list of variables and local secret files. Values are kept
//! as written and never logged.

use indexmap::IndexMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct EnvFileError {
    pub line: usize,
    pub message: String,
}

/// One `KEY=value` line. `Debug` leaves the value out so that it cannot end up in a log.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvEntry {
    pub key: String,
    pub value: String,
    /// 1-based line of the (last) definition.
    pub line: usize,
}

impl std::fmt::Debug for EnvEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvEntry")
            .field("key", &self.key)
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

/// `KEY=value` lines in order; `#` comments, blank lines and a leading `export ` are skipped;
/// matching single or double quotes around a value are removed.
pub fn parse(text: &str) -> Result<IndexMap<String, String>, EnvFileError> {
    Ok(parse_entries(text)?
        .into_iter()
        .map(|(key, entry)| (key, entry.value))
        .collect())
}

/// Like [`parse`], keeping the line of each variable. A variable defined twice keeps its
/// first position and its last value, as shells and Docker do.
pub fn parse_entries(text: &str) -> Result<IndexMap<String, EnvEntry>, EnvFileError> {
    let mut vars: IndexMap<String, EnvEntry> = IndexMap::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (index, raw) in text.lines().enumerate() {
        let line_number = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export")
            .filter(|rest| rest.starts_with(char::is_whitespace))
            .map_or(line, str::trim_start);
        let Some((key, value)) = line.split_once('=') else {
            return Err(EnvFileError {
                line: line_number,
                message: "expected KEY=value".to_owned(),
            });
        };
        let key = key.trim();
        if !crate::config::is_valid_variable_name(key) {
            return Err(EnvFileError {
                line: line_number,
                message: format!("invalid variable name `{}`", key.escape_debug()),
            });
        }
        let value = value_of(value.trim()).ok_or_else(|| EnvFileError {
            line: line_number,
            message: format!("the value of `{key}` opens a quote it does not close"),
        })?;
        vars.insert(
            key.to_owned(),
            EnvEntry {
                key: key.to_owned(),
                value,
                line: line_number,
            },
        );
    }
    Ok(vars)
}

/// A quoted value ends at its closing quote (anything after it, such as a comment, is
/// dropped); an unquoted one ends before ` #`, as python-dotenv and Docker Compose read it.
fn value_of(raw: &str) -> Option<String> {
    for quote in ['"', '\''] {
        if let Some(rest) = raw.strip_prefix(quote) {
            let end = rest.find(quote)?;
            return Some(rest[..end].to_owned());
        }
    }
    let value = match raw.find(" #").or_else(|| raw.find("\t#")) {
        Some(at) => &raw[..at],
        None => raw,
    };
    Some(value.trim_end().to_owned())
}

/// Values that mark a variable as not yet set for real (Kaapi's `.env.example` uses `changethis`).
pub fn is_placeholder(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    v.is_empty()
        || matches!(
            v.as_str(),
            "changethis" | "changeme" | "change-me" | "change_me" | "todo" | "xxx" | "replaceme"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_quotes_and_export() {
        let vars = parse("# c\nA=1\nexport B=\"two words\"\n\nC='x=y'\nD=\n").expect("valid");
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two words");
        assert_eq!(vars["C"], "x=y");
        assert_eq!(vars["D"], "");
    }

    #[test]
    fn reads_kaapi_style_lines() {
        let text = "CALLBACK_CONNECT_TIMEOUT = 3\nOPENAI_API_KEY=\"\"\nA=b # note\nB=\"c # d\" # e\nexported=1\n";
        let vars = parse(text).expect("valid");
        assert_eq!(vars["CALLBACK_CONNECT_TIMEOUT"], "3");
        assert_eq!(vars["OPENAI_API_KEY"], "");
        assert_eq!(vars["A"], "b");
        assert_eq!(vars["B"], "c # d");
        assert_eq!(vars["exported"], "1");
    }

    #[test]
    fn keeps_lines_and_last_value() {
        let entries = parse_entries("A=1\n\n# x\nB=2\nA=3\n").expect("valid");
        assert_eq!(entries["A"].line, 5);
        assert_eq!(entries["A"].value, "3");
        assert_eq!(entries["B"].line, 4);
    }

    #[test]
    fn rejects_lines_without_equals_bad_names_and_open_quotes() {
        assert_eq!(parse("A=1\nnope\n").map_err(|e| e.line), Err(2));
        assert!(parse("1A=x").is_err());
        let open = parse("A=\"secret-value").expect_err("open quote");
        assert!(!open.to_string().contains("secret-value"));
    }

    #[test]
    fn debug_output_leaves_values_out() {
        let entries = parse_entries("TOKEN=hunter2\n").expect("valid");
        assert!(!format!("{entries:?}").contains("hunter2"));
    }

    #[test]
    fn placeholders() {
        assert!(is_placeholder("changethis"));
        assert!(is_placeholder(" ChangeMe "));
        assert!(is_placeholder(""));
        assert!(!is_placeholder("s3cr3t"));
    }
}
