//! What to do about a failure: the hint rules, from the facts an engine gathered. Pure, so that
//! every rule is unit-tested; the texts matched are the ones Docker, ECS and common runtimes
//! really write. The most specific rule comes first (an out-of-memory kill also says
//! "Essential container in task exited").

use super::Cause;

/// Platform texts (ECS `stoppedReason`, a container's `reason`, service events) and their hints.
const REASON_HINTS: &[(&str, &str)] = &[
    ("CannotPullContainerError", IMAGE_PULL),
    ("ResourceInitializationError", SECRETS),
    ("OutOfMemoryError", OUT_OF_MEMORY),
    (
        "failed ELB health checks",
        "the load balancer found the service unhealthy: the service must answer health.path with 200 on its port, and health.start_period must cover its start-up",
    ),
    (
        "failed container health checks",
        "the container's own health check (health.command) failed: run it in the image by hand, and check health.start_period covers start-up",
    ),
    (
        "Essential container in task exited",
        "the service's process exited: its output is in `kaapi-deploy logs ENV --service NAME`; a wrong command or a missing variable are the usual causes",
    ),
];

const IMAGE_PULL: &str = "the image could not be pulled: check that it exists (`kaapi-deploy releases ENV` shows the digest); on ECS the execution role needs ecr:GetDownloadUrlForLayer and ecr:BatchGetImage on the repository, and the tasks' subnets need a route to ECR (NAT gateway, public IP, or VPC endpoints)";
const SECRETS: &str = "the task could not be prepared, usually its secrets: the execution role needs ssm:GetParameters or secretsmanager:GetSecretValue (and kms:Decrypt) on them, the subnets need a route to SSM or Secrets Manager, and every secret must exist (`kaapi-deploy check ENV` lists them)";
const SECRET_DENIED: &str = "the execution role may not read the secret: give it secretsmanager:GetSecretValue (Secrets Manager) or ssm:GetParameters (Parameter Store), plus kms:Decrypt when a customer key encrypts it";
const SECRET_MISSING: &str = "a secret the task refers to does not exist: create it (`kaapi-deploy secrets push ENV`) or fix its name in the environment's secrets; `kaapi-deploy check ENV` lists them";
const OUT_OF_MEMORY: &str = "the container used more memory than it may: raise the service's `memory` in deploy.toml (MiB), or find what grows";
const NOT_LISTENING: &str = "nothing answered on the service's port: the process must listen on 0.0.0.0 (not 127.0.0.1) on the port deploy.toml gives (`port`), and health.start_period must cover its start-up";
const UNHEALTHY: &str = "the service answered its health check with an error: the health path must answer 200 once the service can serve; its last lines below say why it did not";
const COMMAND_NOT_FOUND: &str = "the command was not found in the image (exit 127): check the service's `command` in deploy.toml and that the image contains it";
const NOT_EXECUTABLE: &str = "the command is not executable (exit 126): check the service's `command` and the file's mode in the image";
const EXITED: &str = "the service's process exited: its last lines say why; a wrong command or a missing variable are the usual causes";

/// Words in a log line that say a setting is missing or wrong (Python's KeyError, pydantic's
/// "Field required", shell `:?` expansions, hand-written checks).
const VARIABLE_MARKERS: &[&str] = &[
    "KeyError",
    "Field required",
    "field required",
    "is not set",
    "not set",
    "parameter null or not set",
    "is not valid",
    "missing environment variable",
    "environment variable",
];

/// The hint for the first known platform reason in `text`.
pub fn hint_for(text: &str) -> Option<&'static str> {
    REASON_HINTS
        .iter()
        .find(|(reason, _)| text.contains(reason))
        .map(|(_, hint)| *hint)
}

/// `text`, followed by its hint when the reason is known.
pub fn with_hint(text: &str) -> String {
    match hint_for(text) {
        Some(hint) => format!("{text} (hint: {hint})"),
        None => text.to_owned(),
    }
}

/// What the failure was, from the facts.
pub(super) fn classify(
    reason: &str,
    exit_code: Option<i64>,
    oom_killed: bool,
    health_output: Option<&str>,
) -> Cause {
    let has = |needle: &str| reason.contains(needle);
    if oom_killed || has("OutOfMemoryError") || has("OOMKilled") {
        Cause::OutOfMemory
    } else if has("CannotPullContainerError") || has("pull access denied") {
        Cause::ImagePull
    } else if has("ResourceInitializationError") || mentions_secret_failure(reason) {
        Cause::Secrets
    } else if has("failed ELB health checks") || has("failed container health checks") {
        // ECS stops such tasks itself, so their exit code says nothing about the cause.
        Cause::HealthCheck
    } else if exit_code.is_some() {
        // A process that exited failed its probes too; the exit is the cause.
        Cause::Exited
    } else if health_output.is_some() || has("health check") || has("did not become healthy") {
        Cause::HealthCheck
    } else if has("exited") {
        Cause::Exited
    } else {
        Cause::Unknown
    }
}

fn mentions_secret_failure(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    (lower.contains("secret") || lower.contains("ssm") || lower.contains("parameter"))
        && (lower.contains("accessdenied")
            || lower.contains("not authorized")
            || lower.contains("resourcenotfound")
            || lower.contains("parameternotfound")
            || lower.contains("invalidparameters"))
}

/// The hint for a classified failure: a rule on the cause, refined by what the reason, the
/// health output and the last log lines say.
pub(super) fn hint(
    cause: Cause,
    reason: &str,
    exit_code: Option<i64>,
    health_output: Option<&str>,
    logs: &[String],
) -> Option<String> {
    let text = match cause {
        Cause::OutOfMemory => OUT_OF_MEMORY,
        Cause::ImagePull => IMAGE_PULL,
        Cause::Secrets => {
            let lower = reason.to_ascii_lowercase();
            if lower.contains("accessdenied") || lower.contains("not authorized") {
                SECRET_DENIED
            } else if lower.contains("notfound") || lower.contains("invalidparameters") {
                SECRET_MISSING
            } else {
                SECRETS
            }
        }
        Cause::HealthCheck => {
            let probe = health_output.unwrap_or(reason).to_ascii_lowercase();
            if probe.contains("refused")
                || probe.contains("no probe answered")
                || probe.contains("connect")
            {
                NOT_LISTENING
            } else if let Some(hint) = hint_for(reason) {
                hint
            } else {
                UNHEALTHY
            }
        }
        Cause::Exited => {
            if let Some(line) = variable_line(logs) {
                return Some(match variable_name(line) {
                    Some(name) => format!("a variable looks missing or invalid (`{name}`): set it in deploy.toml ([env], or the environment's secrets); `kaapi-deploy check ENV` compares them with .env.example"),
                    None => "a variable looks missing or invalid: set it in deploy.toml ([env], or the environment's secrets); `kaapi-deploy check ENV` compares them with .env.example".to_owned(),
                });
            }
            match exit_code {
                Some(127) => COMMAND_NOT_FOUND,
                Some(126) => NOT_EXECUTABLE,
                _ => EXITED,
            }
        }
        Cause::Unknown => return hint_for(reason).map(str::to_owned),
    };
    Some(text.to_owned())
}

/// The last log line that says a setting is missing or wrong.
fn variable_line(logs: &[String]) -> Option<&str> {
    logs.iter()
        .rev()
        .map(String::as_str)
        .find(|line| VARIABLE_MARKERS.iter().any(|m| line.contains(m)))
}

/// The variable a line names: the first upper-case identifier of two characters or more
/// (`DATABASE_URL`, `'SECRET_KEY'`, `PORT="x"`).
fn variable_name(line: &str) -> Option<&str> {
    line.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .filter(|word| !matches!(*word, "KEY" | "ERROR" | "FATAL" | "WARN" | "INFO"))
        .find(|word| {
            let identifier = word.starts_with(|c: char| c.is_ascii_uppercase());
            identifier && ((word.contains('_') && word.len() >= 2) || word.len() >= 3)
        })
}
