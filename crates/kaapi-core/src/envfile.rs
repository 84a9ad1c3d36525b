//! `.env` files: the `.env.example` list of variables and local secret files. Values are kept
//! as written and never logged.

use indexmap::IndexMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct EnvFileError {
    pub line: usize,
    pub message: String,
}

/// `KEY=value` lines in order; `#` comments, blank lines and a leading `export ` are skipped;
/// matching single or double quotes around a value are removed.
pub fn parse(text: &str) -> Result<IndexMap<String, String>, EnvFileError> {
    let mut vars = IndexMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(EnvFileError {
                line: index + 1,
                message: "expected KEY=value".to_owned(),
            });
        };
        let key = key.trim();
        if !crate::config::is_valid_variable_name(key) {
            return Err(EnvFileError {
                line: index + 1,
                message: format!("invalid variable name `{}`", key.escape_debug()),
            });
        }
        vars.insert(key.to_owned(), unquote(value.trim()).to_owned());
    }
    Ok(vars)
}

fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(quote) && value.ends_with(quote) {
            return &value[1..value.len() - 1];
        }
    }
    value
}

/// Values that mark a variable as not yet set for real (Kaapi's `.env.example` uses `changethis`).
pub fn is_placeholder(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    v.is_empty()
        || matches!(
            v.as_str(),
            "changethis" | "changeme" | "change-me" | "todo" | "xxx"
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
    fn rejects_lines_without_equals_and_bad_names() {
        assert_eq!(parse("A=1\nnope\n").map_err(|e| e.line), Err(2));
        assert!(parse("1A=x").is_err());
    }

    #[test]
    fn placeholders() {
        assert!(is_placeholder("changethis"));
        assert!(is_placeholder(""));
        assert!(!is_placeholder("s3cr3t"));
    }
}
