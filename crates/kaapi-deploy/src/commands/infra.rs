//! `kaapi-deploy infra template ENV` and `kaapi-deploy infra policy ENV`.

use std::path::{Path, PathBuf};

use kaapi_core::config::{EngineKind, ResolvedEnvironment};
use kaapi_infra::policy::{self, Scope};
use kaapi_infra::template::{self, TemplateOptions};

use crate::cli::InfraCommand;
use crate::exit::{CliError, CliResult};
use crate::project;

pub async fn run(config: Option<&Path>, command: &InfraCommand) -> CliResult {
    match command {
        InfraCommand::Template {
            environment,
            repository,
            output,
        } => run_template(
            config,
            environment,
            repository.as_deref(),
            output.as_deref(),
        ),
        InfraCommand::Policy {
            environment,
            account,
            repository,
            out,
            pass_roles,
            github_environments,
        } => {
            let options = PolicyOptions {
                account: account.as_deref(),
                repository: repository.as_deref(),
                out: out.as_deref(),
                pass_roles,
                github_environments,
            };
            run_policy(config, environment, &options).await
        }
    }
}

/// The config and the environment, which must run on ECS.
fn load_ecs(config: Option<&Path>, environment: &str) -> CliResult<ResolvedEnvironment> {
    let target = project::resolve(config, environment)?;
    let (loaded, env) = (target.loaded(), target.env());
    if env.engine != EngineKind::Ecs {
        return Err(CliError::Usage(format!(
            "{}: environment `{environment}` uses the {} engine; AWS infrastructure is only for engine = \"ecs\"",
            loaded.path.display(),
            env.engine
        )));
    }
    Ok(target)
}

/// `--repository`, else GITHUB_REPOSITORY or the git remote.
fn repository(target: &ResolvedEnvironment, flag: Option<&str>) -> CliResult<Option<String>> {
    match flag {
        Some(repo) if kaapi_infra::repository::is_owner_repo(repo) => Ok(Some(repo.to_owned())),
        Some(repo) => Err(CliError::Usage(format!(
            "--repository `{repo}` is not OWNER/REPO"
        ))),
        None => Ok(kaapi_infra::repository::detect(target.dir())),
    }
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn print_stdout(text: &str) -> CliResult {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::Failed(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

fn write_file(path: &Path, text: &str) -> CliResult {
    std::fs::write(path, text)
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", path.display())))
}

fn run_template(
    config: Option<&Path>,
    environment: &str,
    repository_flag: Option<&str>,
    output: Option<&Path>,
) -> CliResult {
    let target = load_ecs(config, environment)?;
    let options = TemplateOptions {
        repository: repository(&target, repository_flag)?,
    };
    let yaml = template::render(&target, &options).map_err(|e| CliError::Failed(e.to_string()))?;
    match output {
        Some(path) => {
            write_file(path, &yaml)?;
            eprintln!("wrote {}", path.display());
        }
        None => print_stdout(&yaml)?,
    }
    Ok(())
}

/// The flags of `infra policy`.
struct PolicyOptions<'a> {
    account: Option<&'a str>,
    repository: Option<&'a str>,
    out: Option<&'a Path>,
    pass_roles: &'a [String],
    github_environments: &'a [String],
}

async fn run_policy(
    config: Option<&Path>,
    environment: &str,
    options: &PolicyOptions<'_>,
) -> CliResult {
    let (account_flag, repository_flag, out) = (options.account, options.repository, options.out);
    for role in options.pass_roles {
        if !role.starts_with("arn:aws:iam::") || !role.contains(":role/") {
            return Err(CliError::Usage(format!(
                "--pass-role `{role}` is not a role ARN; write arn:aws:iam::ACCOUNT:role/NAME"
            )));
        }
    }
    let target = load_ecs(config, environment)?;
    let (loaded, env) = (target.loaded(), target.env());
    let region = env.region.clone().ok_or_else(|| {
        CliError::Usage(format!(
            "{}: environment `{environment}` has no region; set environments.{environment}.region",
            loaded.path.display()
        ))
    })?;
    let account = match account_flag {
        Some(account) => account.to_owned(),
        None => {
            let aws = kaapi_aws::load(env, None, &kaapi_aws::process_vars()).await?;
            let sts = aws_sdk_sts::Client::new(&aws);
            kaapi_aws::account::account_id(&sts).await.map_err(|e| {
                CliError::Failed(format!(
                    "cannot find the AWS account from the credentials ({e}); pass --account ID"
                ))
            })?
        }
    };
    policy::validate_account(&account).map_err(|e| CliError::Usage(e.to_string()))?;
    let repository = repository(&target, repository_flag)?.ok_or_else(|| {
        CliError::Usage(
            "cannot tell this repository from GITHUB_REPOSITORY or the git remote `origin`; pass --repository OWNER/REPO"
                .to_owned(),
        )
    })?;
    let scope = Scope::new(&region, &account);
    let deploy = policy::deploy_policy_with(&target, &scope, options.pass_roles);
    let github_environments: Vec<&str> = if options.github_environments.is_empty() {
        vec![kaapi_ci::workflows::DEFAULT_GITHUB_ENVIRONMENT]
    } else {
        options
            .github_environments
            .iter()
            .map(String::as_str)
            .collect()
    };
    let trust = policy::trust_policy_for(&target, &repository, &github_environments, &scope)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let render = |value: &serde_json::Value| {
        serde_json::to_string_pretty(value)
            .map_err(|e| CliError::Failed(format!("cannot render JSON: {e}")))
    };
    match out {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| CliError::Failed(format!("cannot create {}: {e}", dir.display())))?;
            let files: [(PathBuf, &serde_json::Value); 2] = [
                (
                    dir.join(format!("{environment}-deploy-policy.json")),
                    &deploy,
                ),
                (dir.join(format!("{environment}-deploy-trust.json")), &trust),
            ];
            for (path, value) in files {
                write_file(&path, &(render(value)? + "\n"))?;
                print_stdout(&format!("{}\n", path.display()))?;
            }
        }
        None => {
            let both = serde_json::json!({"deploy_policy": deploy, "trust_policy": trust});
            print_stdout(&(render(&both)? + "\n"))?;
        }
    }
    Ok(())
}
