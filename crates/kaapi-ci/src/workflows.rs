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
    #[error("`{value}` is not a SHA-256 checksum (64 hexadecimal digits, as in the release's SHA256SUMS)")]
    BadChecksum { value: String },
}

/// The GitHub repository whose releases (`.github/workflows/release.yml`) the generated
/// workflows download kaapi-deploy from.
pub const RELEASE_REPOSITORY: &str = "kaapi-deploy/kaapi-deploy";

/// How the workflows install kaapi-deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Install {
    /// Download the static Linux binary of release `v{version}` from `repository` and verify
    /// its SHA-256: against `sha256` when pinned here (the x86_64 binary), else against the
    /// release's `SHA256SUMS`. Seconds, and nothing compiles in CI.
    Release {
        repository: String,
        version: String,
        sha256: Option<String>,
    },
    /// `cargo install --locked kaapi-deploy --version V` from crates.io: the exact version that
    /// wrote the workflows, with its published lock file (compiles on the runner, cached).
    Version(String),
    /// `cargo install --locked --git URL --rev REV kaapi-deploy`: a pinned commit of a fork.
    Git { url: String, rev: String },
}

impl Install {
    /// The release of this binary's version: what wrote the workflows is what CI runs.
    pub fn this_version() -> Self {
        Install::Release {
            repository: RELEASE_REPOSITORY.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            sha256: None,
        }
    }

    /// `cargo install` of this binary's version from crates.io.
    pub fn this_version_from_source() -> Self {
        Install::Version(env!("CARGO_PKG_VERSION").to_owned())
    }

    /// The steps that put `kaapi-deploy` on the job's PATH.
    fn steps(&self, y: &mut String) {
        match self {
            Install::Release {
                repository,
                version,
                sha256,
            } => download_step(y, repository, version, sha256.as_deref()),
            Install::Version(v) => cargo_install_steps(
                y,
                &format!("cargo install --locked kaapi-deploy --version {v}"),
                v,
            ),
            Install::Git { url, rev } => cargo_install_steps(
                y,
                &format!("cargo install --locked --git {url} --rev {rev} kaapi-deploy"),
                rev,
            ),
        }
    }
}

/// The release asset of the runner's architecture (`uname -m`: x86_64, aarch64), its checksum
/// checked before it is installed; a mismatch fails the step.
fn download_step(y: &mut String, repository: &str, version: &str, sha256: Option<&str>) {
    let _ = writeln!(y, "      - name: Install kaapi-deploy {version}");
    y.push_str(
        "        env:
",
    );
    let _ = writeln!(
        y,
        "          KAAPI_DEPLOY_URL: https://github.com/{repository}/releases/download/v{version}"
    );
    y.push_str(
        "        run: |
",
    );
    let script = [
        "set -euo pipefail",
        "asset=\"kaapi-deploy-$(uname -m)-linux\"",
        "cd \"$RUNNER_TEMP\"",
        "curl -fsSL --retry 3 -o \"$asset\" \"$KAAPI_DEPLOY_URL/$asset\"",
    ];
    for line in script {
        let _ = writeln!(y, "          {line}");
    }
    match sha256 {
        Some(sum) => {
            let _ = writeln!(
                y,
                "          echo \"{sum}  $asset\" | sha256sum --check --strict"
            );
        }
        None => {
            y.push_str(
                "          curl -fsSL --retry 3 -o SHA256SUMS \"$KAAPI_DEPLOY_URL/SHA256SUMS\"\n",
            );
            y.push_str(
                "          awk -v a=\"$asset\" '$2 == a' SHA256SUMS | sha256sum --check --strict\n",
            );
        }
    }
    y.push_str("          mkdir -p \"$HOME/.local/bin\"\n");
    y.push_str("          install -m 0755 \"$asset\" \"$HOME/.local/bin/kaapi-deploy\"\n");
    y.push_str("          echo \"$HOME/.local/bin\" >> \"$GITHUB_PATH\"\n");
}

/// `cargo install` on the runner, skipped when the binary of the same version is cached.
fn cargo_install_steps(y: &mut String, command: &str, cache_version: &str) {
    y.push_str(
        "      - name: Cache kaapi-deploy\n        id: cache\n        uses: actions/cache@v5\n",
    );
    let _ = writeln!(
        y,
        "        with:\n          path: ~/.cargo/bin/kaapi-deploy\n          key: kaapi-deploy-${{{{ runner.os }}}}-{cache_version}"
    );
    y.push_str("      - name: Install kaapi-deploy\n");
    y.push_str("        if: steps.cache.outputs.cache-hit != 'true'\n");
    let _ = writeln!(y, "        run: {command}");
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
    options.install.steps(&mut y);
    // Version tags deploy production: show what the deploy will change first.
    if filter == "tags" {
        plan_step(&mut y, &config_arg);
    }
    y.push_str("      - name: Deploy\n        id: deploy\n");
    let _ = writeln!(y, "        run: kaapi-deploy{config_arg} ci");
    y
}

/// `ci --plan`: the same environment and image (a promoted digest included) as the deploy step
/// after it, compared with what runs, in the step summary. It exits 3 when the deploy will
/// change something, which is not a failure here; any other non-zero code fails the job.
fn plan_step(y: &mut String, config_arg: &str) {
    y.push_str("      - name: Plan\n        id: plan\n        run: |\n");
    y.push_str("          status=0\n");
    let _ = writeln!(
        y,
        "          kaapi-deploy{config_arg} ci --plan || status=$?"
    );
    y.push_str(
        "          if [ \"$status\" -ne 0 ] && [ \"$status\" -ne 3 ]; then exit \"$status\"; fi\n",
    );
}

/// The workflows for `config`: one per environment with a branch or tag trigger.
pub fn render(config: &Config, options: &WorkflowOptions) -> Result<Vec<Workflow>, WorkflowError> {
    if !valid_github_environment(&options.github_environment) {
        return Err(WorkflowError::BadEnvironmentName {
            value: options.github_environment.clone(),
        });
    }
    if let Install::Release {
        sha256: Some(sum), ..
    } = &options.install
    {
        if sum.len() != 64 || !sum.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(WorkflowError::BadChecksum { value: sum.clone() });
        }
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
