//! Command-line grammar. Each subcommand maps to one module of `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "kaapi-deploy",
    // Version, commit, build date and engines: see build.rs.
    version = env!("KAAPI_DEPLOY_VERSION"),
    about = "Build, push, migrate, roll out, verify and roll back a containerized web backend",
    long_about = "Build, push, migrate, roll out, verify and roll back a containerized web backend \
                  on the local Docker Engine or on AWS ECS, from one deploy.toml."
)]
pub struct Cli {
    /// Path to deploy.toml (default: the nearest one in this directory or its parents).
    #[arg(long, global = true, env = "KAAPI_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented deploy.toml for a Kaapi-shaped repository.
    Init(InitArgs),
    /// Write deploy.toml from an environment's live ECS services (first deploy changes only the image).
    Adopt(AdoptArgs),
    /// Validate deploy.toml and every environment's variables.
    Check(CheckArgs),
    /// Secret values: generate tokens, push them to the environment's store.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Build, migrate, roll out and verify a new release.
    Deploy(DeployArgs),
    /// Show what a deploy would change, without changing anything (exit 3 when it would
    /// change something).
    Plan(PlanArgs),
    /// Roll back to the previous good release, or to release N.
    Rollback(RollbackArgs),
    /// List the releases of an environment.
    Releases(EnvJsonArgs),
    /// Show services, replicas, health, releases and recent events.
    Status(EnvJsonArgs),
    /// Serve a read-only web dashboard on 127.0.0.1: releases, health, replicas, a deploy in
    /// progress, and request, error and latency plots.
    Dashboard(DashboardArgs),
    /// Show logs, merged across replicas.
    Logs(LogsArgs),
    /// Run a one-off command as a task of the current release.
    Run(RunArgs),
    /// Run a command in a running replica (docker exec) or task (ECS Exec) of a service.
    Exec(ExecArgs),
    /// Remove the images (and on ECS the task-definition revisions and ECR images) that neither
    /// the current release nor the last N releases need.
    Prune(PruneArgs),
    /// Change services' replica counts without a new release (recorded as scaling events).
    Scale(ScaleArgs),
    /// Run only the migrations, as a one-off task of the image built from the current tree.
    Migrate(EnvJsonArgs),
    /// Deploy from CI: pick the environment from the git ref (GitHub Actions variables).
    Ci(CiArgs),
    /// Copy the image an environment runs into another and deploy it there, without rebuilding.
    Promote(PromoteArgs),
    /// Infrastructure: CloudFormation template and IAM policies.
    #[command(subcommand)]
    Infra(InfraCommand),
    /// Backing services of a docker environment (database, cache, broker): start, stop,
    /// restart, logs, status.
    Accessory(AccessoryArgs),
    /// Stop and remove what a docker environment runs (replicas, ingresses, tasks, accessories,
    /// network, and the agent when it serves nothing else); keeps the history and the images.
    Down(DownArgs),
    /// Remove an environment's deploy lock.
    Unlock(UnlockArgs),
    /// Print a shell completion script (bash, zsh, fish) to stdout.
    Completions(CompletionsArgs),
    /// Print the man page (roff) to stdout, or write one page per command to a directory.
    Man(ManArgs),
    /// The local engine's agent (keeps replicas alive, serves the ingress).
    #[command(subcommand)]
    Agent(AgentCommand),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Overwrite an existing deploy.toml.
    #[arg(long)]
    pub force: bool,
    /// Also write the GitHub Actions workflows.
    #[arg(long)]
    pub github: bool,
    /// GitHub environment the workflows deploy in (protection rules, variables).
    #[arg(long, requires = "github")]
    pub github_environment: Option<String>,
    /// Directory of the repository (default: current directory).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Resource prefix (default: the directory's name, made a valid name).
    #[arg(long)]
    pub app: Option<String>,
}

#[derive(Debug, Args)]
pub struct AccessoryArgs {
    #[arg(value_enum)]
    pub action: AccessoryAction,
    pub environment: String,
    /// The accessory (default: every accessory of the environment).
    pub name: Option<String>,
    /// `logs`: keep following.
    #[arg(short, long)]
    pub follow: bool,
    /// `status`: as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccessoryAction {
    Start,
    Stop,
    Restart,
    Logs,
    Status,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Environment to check (default: every environment, config and variables only).
    pub environment: Option<String>,
    #[arg(long)]
    pub json: bool,
    /// Skip the checks that need AWS (an ECS environment's prerequisite resources).
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Print N new secret tokens (32 random bytes, base64url, 43 characters).
    Generate {
        #[arg(short = 'n', long = "count", default_value_t = 1)]
        count: u32,
    },
    /// Write secret values from an env file to the environment's secret store.
    Push {
        environment: String,
        #[arg(long = "from")]
        from: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct EnvJsonArgs {
    pub environment: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// The environment to show (default: every environment of deploy.toml).
    pub environment: Option<String>,
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 7878)]
    pub port: u16,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    pub environment: String,
    /// Deploy an image that already exists instead of building.
    #[arg(long)]
    pub image: Option<String>,
    /// Rebuild even when the environment promotes from another.
    #[arg(long)]
    pub rebuild: bool,
    /// Only show what the deploy would change, like `plan` (exit 3 when it would change
    /// something).
    #[arg(long)]
    pub dry_run: bool,
    /// Deploy even when the image and every service's settings equal what runs now.
    #[arg(long, conflicts_with = "dry_run")]
    pub force: bool,
    /// Roll only this service (repeatable); the others keep their current revision.
    #[arg(long = "service", value_name = "SERVICE", conflicts_with = "dry_run")]
    pub services: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    pub environment: String,
    /// Plan a deploy of an image that already exists instead of a build of the working tree.
    #[arg(long)]
    pub image: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    pub environment: String,
    /// Release number to go back to (default: the previous good release).
    #[arg(long)]
    pub to: Option<u64>,
    /// Roll back even when the database's schema version differs from the one the target
    /// release ran on (`[migrations] version_command`); the database is left as it is.
    #[arg(long)]
    pub force: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    pub environment: String,
    pub service: Option<String>,
    #[arg(short, long)]
    pub follow: bool,
    /// How far back, e.g. 10m, 2h.
    #[arg(long)]
    pub since: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    pub environment: String,
    /// Service whose revision runs the command (default: the web service).
    #[arg(long)]
    pub service: Option<String>,
    /// Run on this release's image and revision instead of the serving release's (e.g. a
    /// failed release's downgrade after its automatic rollback).
    #[arg(long, value_name = "N")]
    pub release: Option<u64>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    pub environment: String,
    /// Service to exec into (default: the web service).
    #[arg(long)]
    pub service: Option<String>,
    /// Which running replica or task, oldest first.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub replica: u32,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    pub environment: String,
    /// How many successful releases before the current one keep their images (rollback
    /// targets).
    #[arg(long, default_value_t = 3)]
    pub keep: usize,
    /// Only list what would be removed.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    pub environment: String,
    /// One `SERVICE=N` per service, e.g. `backend=3 worker=2`.
    #[arg(required = true, value_name = "SERVICE=N")]
    pub counts: Vec<String>,
    /// Print the scaling events as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CiArgs {
    /// Rebuild for production instead of promoting staging's image.
    #[arg(long)]
    pub rebuild: bool,
    /// Only show what the deploy would change (in the step summary), with the same image the
    /// deploy would use; exit 3 when it would change something, 0 when not.
    #[arg(long)]
    pub plan: bool,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Subcommand)]
pub enum InfraCommand {
    /// Print a CloudFormation template for an environment.
    Template {
        environment: String,
        /// GitHub repository (OWNER/REPO) the deploy role trusts (default: the git remote).
        #[arg(long)]
        repository: Option<String>,
        /// Write the template to this file instead of stdout.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
    /// Print the deploy role's IAM policy and OIDC trust policy.
    Policy {
        environment: String,
        /// AWS account ID the ARNs name (default: the caller's account, from STS).
        #[arg(long)]
        account: Option<String>,
        /// GitHub repository (OWNER/REPO) the trust policy names (default: the git remote).
        #[arg(long)]
        repository: Option<String>,
        /// Write ENV-deploy-policy.json and ENV-deploy-trust.json into this directory.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also allow passing this role (full ARN) to ECS: a role the live task definitions
        /// carry, such as `ecsTaskExecutionRole`, that `check ENV` reports. Repeatable.
        #[arg(long = "pass-role", value_name = "ARN")]
        pass_roles: Vec<String>,
        /// The GitHub environment the CD workflows run in (`init --github-environment`);
        /// default `AWS_ENV_VARS`. Repeatable.
        #[arg(long = "github-environment", value_name = "NAME")]
        github_environments: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct AdoptArgs {
    /// The environment the live services belong to (e.g. `production`).
    pub environment: String,
    /// The resource prefix (`kaapi` for `kaapi-cluster`, `kaapi-service`, …).
    #[arg(long)]
    pub app: String,
    /// AWS region (default: the AWS configuration's).
    #[arg(long)]
    pub region: Option<String>,
    /// The cluster (default: `{app}-cluster` for production, `{app}-{env}-cluster` otherwise).
    #[arg(long)]
    pub cluster: Option<String>,
    /// ECS services to adopt (repeatable; default: every service of the cluster).
    #[arg(long = "service", value_name = "NAME")]
    pub service: Vec<String>,
    /// Where to write (default: deploy.toml).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Replace an existing file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell, e.g. `bash` (then `source <(kaapi-deploy completions bash)`).
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `kaapi-deploy.1` and a page per command (`kaapi-deploy-deploy.1`, …) here instead.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    pub environment: String,
    /// Also remove the environment's volumes (accessory data, service volumes).
    #[arg(long)]
    pub volumes: bool,
    /// Do not ask for confirmation (it is asked only when stdin is a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    pub environment: String,
    /// Remove the lock even if its holder may still run.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Run the agent in the foreground (the CLI starts it on demand).
    #[command(hide = true)]
    Run {
        #[arg(long)]
        state_dir: PathBuf,
    },
    /// Run the ingress process in the foreground (the agent starts it on demand).
    #[command(hide = true)]
    Ingress {
        #[arg(long)]
        state_dir: PathBuf,
    },
    /// Stop the running agent (the ingress keeps serving).
    Stop,
    /// Say whether the agent runs, and where.
    Status,
}
