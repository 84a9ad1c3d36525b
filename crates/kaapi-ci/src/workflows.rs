//! The GitHub Actions workflows `kaapi-deploy init --github` writes: one per environment that
//! has a trigger (`cd-staging.yml` on pushes to main, `cd-production.yml` on `v*` tags), each a
//! thin caller of `kaapi-deploy ci`.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use kaapi_core::config::Config;

/// The GitHub environment the jobs run in, for its protection rules and variables (Kaapi's).
pub const DEFAULT_GITHUB_ENVIRONMENT: &str = "AWS_ENV_VARS";

#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error("{path} already exists; pass --force to overwrite it")]
    Exists { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no environment in deploy.toml has a trigger, so there is no workflow to write; add e.g. trigger = {{ branch = \"main\" }} to [environments.staging]")]
    NoTriggers,
    #[error(
        "`{value}` is not a valid GitHub environment name (letters, digits, `-`, `_`, `.`, spaces)"
    )]
    BadEnvironmentName { value: String },
}

/// How the workflows install kaapi-deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Install {
    /// `cargo install --locked kaapi-deploy --version V` from crates.io: the exact version that
    /// wrote the workflows, with its published lock file.
    Version(String),
    /// `cargo install --locked --git URL --rev REV kaapi-deploy`: a pinned commit of a fork.
    Git { url: String, rev: String },
}

impl Install {
    /// The version of this binary: what wrote the workflows is what CI runs.
    pub fn this_version() -> Self {
        Install::Version(env!("CARGO_PKG_VERSION").to_owned())
    }

    fn command(&self) -> String {
        match self {
            Install::Version(v) => format!("cargo install --locked kaapi-deploy --version {v}"),
            Install::Git { url, rev } => {
                format!("cargo install --locked --git {url} --rev {rev} kaapi-deploy")
            }
        }
    }

    fn cache_key(&self) -> String {
        match self {
            Install::Version(v) => format!("kaapi-deploy-${{{{ runner.os }}}}-{v}"),
            Install::Git { rev, .. } => format!("kaapi-deploy-${{{{ runner.os }}}}-{rev}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowOptions {
    /// GitHub environment of the deploy jobs (`AWS_ENV_VARS`).
    pub github_environment: String,
    pub install: Install,
    /// deploy.toml relative to the repository root, when it is not at the root.
    pub config_path: Option<String>,
}

impl Default for WorkflowOptions {
    fn default() -> Self {
        Self {
            github_environment: DEFAULT_GITHUB_ENVIRONMENT.to_owned(),
            install: Install::this_version(),
            config_path: None,
        }
    }
}

/// One workflow file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workflow {
    /// Relative to the repository root: `.github/workflows/cd-staging.yml`.
    pub path: PathBuf,
    pub text: String,
}

fn valid_github_environment(name: &str) -> bool {
    !name.trim().is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '))
}

/// YAML double-quoted scalar (the names here are plain, but a pattern like `v*` must be quoted).
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn workflow_text(environment: &str, on: (&str, &str), options: &WorkflowOptions) -> String {
    let (filter, pattern) = on;
    let what = if filter == "branches" {
        format!("every push to the branch `{pattern}`")
    } else {
        format!("every pushed tag matching `{pattern}`")
    };
    let config_arg = options
        .config_path
        .as_deref()
        .map(|p| format!(" --config {}", quoted(p)))
        .unwrap_or_default();
    let mut y = String::new();
    let _ = writeln!(
        y,
        "# Written by `kaapi-deploy init --github`: deploys `{environment}` on {what}."
    );
    y.push_str(
        "# `kaapi-deploy ci` picks the environment from the ref, authenticates to AWS with the\n",
    );
    y.push_str("# job's OIDC token, runs the whole pipeline and writes the step summary.\n");
    let _ = writeln!(y, "name: cd-{environment}");
    y.push('\n');
    y.push_str("on:\n  push:\n");
    let _ = writeln!(y, "    {filter}:\n      - {}", quoted(pattern));
    y.push('\n');
    y.push_str("permissions:\n  id-token: write\n  contents: read\n\n");
    y.push_str("# One deploy per environment at a time; a running deploy is never cancelled.\n");
    let _ = writeln!(
        y,
        "concurrency:\n  group: deploy-{environment}\n  cancel-in-progress: false\n"
    );
    y.push_str("jobs:\n  deploy:\n");
    let _ = writeln!(y, "    name: Deploy {environment}");
    y.push_str("    runs-on: ubuntu-latest\n");
    let _ = writeln!(
        y,
        "    environment: {}",
        quoted(&options.github_environment)
    );
    y.push_str("    timeout-minutes: 60\n");
    y.push_str("    outputs:\n");
    for name in ["environment", "release", "image", "outcome"] {
        let _ = writeln!(y, "      {name}: ${{{{ steps.deploy.outputs.{name} }}}}");
    }
    y.push_str("    env:\n      AWS_RESOURCE_PREFIX: ${{ vars.AWS_RESOURCE_PREFIX }}\n");
    y.push_str("    steps:\n");
    y.push_str("      - uses: actions/checkout@v5\n");
    y.push_str(
        "      - name: Cache kaapi-deploy\n        id: cache\n        uses: actions/cache@v5\n",
    );
    let _ = writeln!(
        y,
        "        with:\n          path: ~/.cargo/bin/kaapi-deploy\n          key: {}",
        options.install.cache_key()
    );
    y.push_str("      - name: Install kaapi-deploy\n");
    y.push_str("        if: steps.cache.outputs.cache-hit != 'true'\n");
    let _ = writeln!(y, "        run: {}", options.install.command());
    y.push_str("      - name: Deploy\n        id: deploy\n");
    let _ = writeln!(y, "        run: kaapi-deploy{config_arg} ci");
    y
}

/// The workflows for `config`: one per environment with a branch or tag trigger.
pub fn render(config: &Config, options: &WorkflowOptions) -> Result<Vec<Workflow>, WorkflowError> {
    if !valid_github_environment(&options.github_environment) {
        return Err(WorkflowError::BadEnvironmentName {
            value: options.github_environment.clone(),
        });
    }
    let workflows: Vec<Workflow> = config
        .environments
        .iter()
        .filter_map(|(name, env)| {
            let trigger = env.trigger.as_ref()?;
            let on = match (&trigger.branch, &trigger.tags) {
                (Some(branch), _) => ("branches", branch.as_str()),
                (None, Some(tags)) => ("tags", tags.as_str()),
                (None, None) => return None,
            };
            Some(Workflow {
                path: PathBuf::from(format!(".github/workflows/cd-{name}.yml")),
                text: workflow_text(name, on, options),
            })
        })
        .collect();
    if workflows.is_empty() {
        return Err(WorkflowError::NoTriggers);
    }
    Ok(workflows)
}

/// Writes the workflows under `repo_dir`, refusing to overwrite any existing file unless
/// `force` (checked for every file before writing any). Returns the paths written.
pub fn write(
    repo_dir: &Path,
    config: &Config,
    options: &WorkflowOptions,
    force: bool,
) -> Result<Vec<PathBuf>, WorkflowError> {
    let workflows = render(config, options)?;
    if !force {
        if let Some(existing) = workflows
            .iter()
            .map(|w| repo_dir.join(&w.path))
            .find(|p| p.exists())
        {
            return Err(WorkflowError::Exists { path: existing });
        }
    }
    let mut written = Vec::new();
    for workflow in workflows {
        let path = repo_dir.join(&workflow.path);
        let io = |source| WorkflowError::Write {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, &workflow.text).map_err(io)?;
        written.push(path);
    }
    Ok(written)
}
