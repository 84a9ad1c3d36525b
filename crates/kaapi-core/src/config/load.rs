//! Finding `deploy.toml`, reading it, and turning every problem into a [`Diagnostic`] that
//! names the file, line and key.

use std::path::{Path, PathBuf};

use super::model::Config;
use super::source_map::SourceMap;
use super::validate::validate;
use crate::diagnostics::{nearest, Diagnostic};

pub const CONFIG_FILE_NAME: &str = "deploy.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no {CONFIG_FILE_NAME} in {} or any parent directory; run `kaapi-deploy init` to write one, or pass --config PATH", searched_from.display())]
    NotFound { searched_from: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} has {} problem(s):\n{}", path.display(), diagnostics.len(), render(diagnostics))]
    Invalid {
        path: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
}

fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A config read from disk, with the directory its relative paths are resolved against.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub path: PathBuf,
    pub dir: PathBuf,
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

impl LoadedConfig {
    /// A path from the config, resolved against the config file's directory.
    pub fn resolve(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }
}

/// `deploy.toml` in `start` or the nearest parent that has one.
pub fn find_config(start: &Path) -> Result<PathBuf, ConfigError> {
    start
        .ancestors()
        .map(|dir| dir.join(CONFIG_FILE_NAME))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| ConfigError::NotFound {
            searched_from: start.to_path_buf(),
        })
}

pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let (config, warnings) = parse(path, &text)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(LoadedConfig {
        path: path.to_path_buf(),
        dir,
        config,
        warnings,
    })
}

/// Parses and validates config text; `path` is used only to name the file in messages.
pub fn parse(path: &Path, text: &str) -> Result<(Config, Vec<Diagnostic>), ConfigError> {
    let map = SourceMap::new(text);
    let config: Config = toml::from_str(text).map_err(|e| ConfigError::Invalid {
        path: path.to_path_buf(),
        diagnostics: vec![from_toml_error(path, &map, &e)],
    })?;
    let mut diagnostics = validate(&config);
    for d in &mut diagnostics {
        d.file = path.to_path_buf();
        if d.line.is_none() {
            d.line = d.key.as_deref().and_then(|k| map.line_of_key(k));
        }
    }
    let (errors, warnings): (Vec<_>, Vec<_>) = diagnostics.into_iter().partition(|d| d.is_error());
    if errors.is_empty() {
        Ok((config, warnings))
    } else {
        Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            diagnostics: errors,
        })
    }
}

fn from_toml_error(path: &Path, map: &SourceMap<'_>, error: &toml::de::Error) -> Diagnostic {
    let message = error.message().trim().to_owned();
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field);
    // A missing key with an empty span is missing from the document itself: no line to show.
    let span = error.span().filter(|s| missing.is_none() || !s.is_empty());
    let line = span.as_ref().map(|s| map.line_of(s.start));
    let table = span.as_ref().and_then(|s| map.key_at(s.start));
    let key = match (missing, table) {
        (Some(field), Some(table)) => Some(format!("{table}.{field}")),
        (Some(field), None) => Some(field.to_owned()),
        (None, table) => table,
    };
    let message = match (&key, message.as_str()) {
        (Some(key), "duplicate key") => format!("`{key}` is defined twice"),
        _ => message,
    };
    let hint = hint_for(&message, key.as_deref());
    let mut diagnostic = Diagnostic::error(path, message).at_line(line);
    if let Some(key) = key {
        diagnostic = diagnostic.at_key(key);
    }
    if let Some(hint) = hint {
        diagnostic = diagnostic.with_hint(hint);
    }
    diagnostic
}

/// serde names the unknown field and the expected ones; turn that into "did you mean".
fn hint_for(message: &str, key: Option<&str>) -> Option<String> {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (typo, rest) = rest.split_once('`')?;
        let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
        return Some(match nearest(typo, expected.iter().copied()) {
            Some(best) => format!("did you mean `{best}`?"),
            None => format!("remove it; known keys here: {}", expected.join(", ")),
        });
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let (typo, rest) = rest.split_once('`')?;
        let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
        return Some(match nearest(typo, expected.iter().copied()) {
            Some(best) => format!("did you mean `{best}`?"),
            None => format!("use one of: {}", expected.join(", ")),
        });
    }
    if message.starts_with("missing field `") {
        return Some("add it; see docs/config.md for every key".to_owned());
    }
    if message.ends_with("is defined twice") {
        return Some("keep one definition and merge the keys of both into it".to_owned());
    }
    if message.contains("expected u16") && key.is_some_and(|k| k.ends_with("port")) {
        return Some("use a port between 1 and 65535".to_owned());
    }
    if message.contains("expected u32") {
        return Some("write a whole number without quotes, e.g. 2".to_owned());
    }
    if message.starts_with("invalid type:") && message.contains("expected a string") {
        return Some("quote the value, e.g. \"value\"".to_owned());
    }
    None
}
