//! The GitHub Actions side of a run: the context variables the runner sets, and the three ways
//! a step talks back: `$GITHUB_OUTPUT` lines, the `$GITHUB_STEP_SUMMARY` markdown file and
//! `::error::` workflow commands on stdout.

use std::io::Write;
use std::path::{Path, PathBuf};

pub use kaapi_core::vars::{process_vars, Vars};

#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error("{name} is not set; `kaapi-deploy ci` runs inside GitHub Actions (set {name} to run it elsewhere)")]
    Missing { name: &'static str },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the runner tells a step about the run (see GitHub's "default environment variables").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubContext {
    /// `refs/heads/main`, `refs/tags/v1.2.3`, `refs/pull/42/merge`.
    pub git_ref: String,
    pub sha: String,
    pub actor: String,
    /// `owner/name`.
    pub repository: String,
    pub run_id: String,
    pub server_url: String,
    pub output_file: Option<PathBuf>,
    pub summary_file: Option<PathBuf>,
}

fn non_empty<'a>(vars: &'a Vars, name: &str) -> Option<&'a str> {
    vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

impl GithubContext {
    /// Reads the context; `GITHUB_REF` and `GITHUB_SHA` are required, the rest has defaults.
    pub fn from_vars(vars: &Vars) -> Result<Self, GithubError> {
        let required = |name: &'static str| {
            non_empty(vars, name)
                .map(str::to_owned)
                .ok_or(GithubError::Missing { name })
        };
        let optional =
            |name: &str, default: &str| non_empty(vars, name).unwrap_or(default).to_owned();
        Ok(Self {
            git_ref: required("GITHUB_REF")?,
            sha: required("GITHUB_SHA")?,
            actor: optional("GITHUB_ACTOR", "unknown"),
            repository: optional("GITHUB_REPOSITORY", ""),
            run_id: optional("GITHUB_RUN_ID", ""),
            server_url: optional("GITHUB_SERVER_URL", "https://github.com"),
            output_file: non_empty(vars, "GITHUB_OUTPUT").map(PathBuf::from),
            summary_file: non_empty(vars, "GITHUB_STEP_SUMMARY").map(PathBuf::from),
        })
    }

    /// The commit as releases record it (12 characters, as `kaapi-deploy deploy` does).
    pub fn short_sha(&self) -> String {
        self.sha.chars().take(12).collect()
    }

    /// Link to this workflow run, when the repository and run are known.
    pub fn run_url(&self) -> Option<String> {
        (!self.repository.is_empty() && !self.run_id.is_empty()).then(|| {
            format!(
                "{}/{}/actions/runs/{}",
                self.server_url.trim_end_matches('/'),
                self.repository,
                self.run_id
            )
        })
    }

    /// Link to the commit.
    pub fn commit_url(&self) -> Option<String> {
        (!self.repository.is_empty()).then(|| {
            format!(
                "{}/{}/commit/{}",
                self.server_url.trim_end_matches('/'),
                self.repository,
                self.sha
            )
        })
    }
}

/// One `$GITHUB_OUTPUT` entry: `name=value`, or the heredoc form when the value spans lines
/// (a delimiter that does not occur in the value, as GitHub's toolkit does).
pub fn output_entry(name: &str, value: &str) -> String {
    if !value.contains('\n') && !value.contains('\r') {
        return format!("{name}={value}\n");
    }
    let mut delimiter = "ghadelimiter_kaapi".to_owned();
    let mut n = 0u32;
    while value.contains(&delimiter) {
        n += 1;
        delimiter = format!("ghadelimiter_kaapi_{n}");
    }
    format!("{name}<<{delimiter}\n{value}\n{delimiter}\n")
}

fn append(path: &Path, text: &str) -> Result<(), GithubError> {
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        file.write_all(text.as_bytes())
    };
    write().map_err(|source| GithubError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Appends outputs to `$GITHUB_OUTPUT` (nothing when the file is not set).
pub fn write_outputs(ctx: &GithubContext, outputs: &[(&str, &str)]) -> Result<(), GithubError> {
    let Some(path) = &ctx.output_file else {
        return Ok(());
    };
    let text: String = outputs.iter().map(|(k, v)| output_entry(k, v)).collect();
    append(path, &text)
}

/// Appends markdown to `$GITHUB_STEP_SUMMARY` (nothing when the file is not set).
pub fn write_summary(ctx: &GithubContext, markdown: &str) -> Result<(), GithubError> {
    let Some(path) = &ctx.summary_file else {
        return Ok(());
    };
    append(path, markdown)
}

/// Escapes a workflow command's message (GitHub's `escapeData`).
pub fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a workflow command's property value (GitHub's `escapeProperty`).
pub fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// `::error title=…::message`, shown as an annotation on the run.
pub fn error_annotation(title: &str, message: &str) -> String {
    format!(
        "::error title={}::{}",
        escape_property(title),
        escape_data(message)
    )
}

/// `::warning title=…::message`.
pub fn warning_annotation(title: &str, message: &str) -> String {
    format!(
        "::warning title={}::{}",
        escape_property(title),
        escape_data(message)
    )
}

/// The workflows pass the repository variable `AWS_RESOURCE_PREFIX`; resources are named from
/// deploy.toml's `app`, so a different value means the two disagree: say so (a warning).
pub fn resource_prefix_warning(vars: &Vars, app: &str) -> Option<String> {
    let prefix = non_empty(vars, "AWS_RESOURCE_PREFIX")?;
    (prefix != app).then(|| {
        warning_annotation(
            "AWS_RESOURCE_PREFIX differs from deploy.toml",
            &format!(
                "the repository variable AWS_RESOURCE_PREFIX is `{prefix}` but deploy.toml has app = \"{app}\"; resources are named from deploy.toml (e.g. {app}-cluster): make them agree"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_the_context_from_a_map() {
        let ctx = GithubContext::from_vars(&vars(&[
            ("GITHUB_REF", "refs/heads/main"),
            ("GITHUB_SHA", "0123456789abcdef0123"),
            ("GITHUB_ACTOR", "alice"),
            ("GITHUB_REPOSITORY", "acme/kaapi"),
            ("GITHUB_RUN_ID", "77"),
            ("GITHUB_SERVER_URL", "https://github.example/"),
            ("GITHUB_OUTPUT", "/tmp/out"),
            ("GITHUB_STEP_SUMMARY", ""),
        ]))
        .expect("complete context");
        assert_eq!(ctx.git_ref, "refs/heads/main");
        assert_eq!(ctx.short_sha(), "0123456789ab");
        assert_eq!(ctx.actor, "alice");
        assert_eq!(
            ctx.run_url().as_deref(),
            Some("https://github.example/acme/kaapi/actions/runs/77")
        );
        assert_eq!(ctx.output_file, Some(PathBuf::from("/tmp/out")));
        assert_eq!(ctx.summary_file, None, "an empty variable counts as unset");
    }

    #[test]
    fn a_missing_ref_names_the_variable() {
        let err = GithubContext::from_vars(&vars(&[("GITHUB_SHA", "abc")]))
            .expect_err("GITHUB_REF is required");
        assert!(
            err.to_string().starts_with("GITHUB_REF is not set"),
            "{err}"
        );
    }

    #[test]
    fn a_differing_resource_prefix_is_a_warning() {
        let differing = vars(&[("AWS_RESOURCE_PREFIX", "acme")]);
        assert_eq!(
            resource_prefix_warning(&differing, "kaapi").as_deref(),
            Some("::warning title=AWS_RESOURCE_PREFIX differs from deploy.toml::the repository variable AWS_RESOURCE_PREFIX is `acme` but deploy.toml has app = \"kaapi\"; resources are named from deploy.toml (e.g. kaapi-cluster): make them agree")
        );
        assert_eq!(
            resource_prefix_warning(&vars(&[("AWS_RESOURCE_PREFIX", "kaapi")]), "kaapi"),
            None
        );
        assert_eq!(resource_prefix_warning(&vars(&[]), "kaapi"), None);
    }

    #[test]
    fn single_line_outputs_are_name_equals_value() {
        assert_eq!(output_entry("release", "7"), "release=7\n");
    }

    #[test]
    fn multiline_outputs_use_a_delimiter_absent_from_the_value() {
        let value = "a\nghadelimiter_kaapi\nb";
        let entry = output_entry("notes", value);
        assert_eq!(
            entry,
            "notes<<ghadelimiter_kaapi_1\na\nghadelimiter_kaapi\nb\nghadelimiter_kaapi_1\n"
        );
    }

    #[test]
    fn annotations_escape_percent_and_newlines_and_property_separators() {
        assert_eq!(
            error_annotation("deploy: staging, failed", "100% broken\r\nsee logs"),
            "::error title=deploy%3A staging%2C failed::100%25 broken%0D%0Asee logs"
        );
    }
}
