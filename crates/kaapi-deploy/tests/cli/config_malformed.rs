//! `kaapi-deploy check` on malformed configs: each names the file, the line and the key, says
//! what is wrong (and, for typos, the nearest key), and exits 2.

use std::path::Path;

use assert_cmd::Command;

const HEAD: &str = "app = \"kaapi\"\n[image]\ncontext = \"backend\"\n";
const WEB: &str = "[services.backend]\nport = 8000\n";
const LOCAL: &str = "[environments.local]\nengine = \"docker\"\n";
const STAGING: &str =
    "[environments.staging]\nengine = \"ecs\"\nregion = \"eu-west-1\"\ntrigger = { branch = \"main\" }\n";

/// A config from parts, with the default web service and local environment unless replaced.
fn config(parts: &[&str]) -> String {
    parts.concat()
}

struct Case {
    name: &'static str,
    text: String,
    /// A piece of the line the diagnostic must point at, last occurrence (`None`: no line).
    line_of: Option<&'static str>,
    key: Option<&'static str>,
    message: &'static str,
    hint: Option<&'static str>,
}

fn case(
    name: &'static str,
    text: String,
    line_of: Option<&'static str>,
    key: Option<&'static str>,
    message: &'static str,
    hint: Option<&'static str>,
) -> Case {
    Case {
        name,
        text,
        line_of,
        key,
        message,
        hint,
    }
}

fn cases() -> Vec<Case> {
    vec![
        case("wrong type", config(&[HEAD, "[services.backend]\nport = \"8000\"\n", LOCAL]),
            Some("port = \"8000\""), Some("services.backend.port"), "invalid type: string \"8000\", expected u16", Some("use a port between 1 and 65535")),
        case("unknown key with a typo", config(&[HEAD, "[services.backend]\nprot = 8000\n", LOCAL]),
            Some("prot = 8000"), Some("services.backend.prot"), "unknown field `prot`", Some("did you mean `port`?")),
        case("unknown top-level key", config(&[HEAD, WEB, "[enviroments.local]\nengine = \"docker\"\n"]),
            Some("[enviroments.local]"), Some("enviroments"), "unknown field `enviroments`", Some("did you mean `environments`?")),
        case("unknown key far from any known one", config(&[HEAD, WEB, LOCAL, "colour = \"blue\"\n"]),
            Some("colour ="), Some("environments.local.colour"), "unknown field `colour`", Some("remove it; known keys here: engine")),
        case("missing migrations command", config(&[HEAD, "[migrations]\nservice = \"backend\"\n", WEB, LOCAL]),
            Some("[migrations]"), Some("migrations.command"), "missing field `command`", Some("add it")),
        case("empty service command", config(&[HEAD, "[services.backend]\nport = 8000\ncommand = \"\"\n", LOCAL]),
            Some("command = \"\""), Some("services.backend.command"), "the command is empty", Some("remove the key to use the image's CMD")),
        case("empty migrations command", config(&[HEAD, "[migrations]\ncommand = []\n", WEB, LOCAL]),
            Some("command = []"), Some("migrations.command"), "the migrations command is empty", None),
        case("command with unbalanced quotes", config(&[HEAD, "[services.backend]\nport = 8000\ncommand = \"uvicorn 'app\"\n", LOCAL]),
            Some("command = \"uvicorn"), Some("services.backend.command"), "unbalanced quotes", None),
        case("port out of range", config(&[HEAD, "[services.backend]\nport = 70000\n", LOCAL]),
            Some("port = 70000"), Some("services.backend.port"), "invalid value: integer `70000`, expected u16", Some("use a port between 1 and 65535")),
        case("port zero", config(&[HEAD, "[services.backend]\nport = 0\n", LOCAL]),
            Some("port = 0"), Some("services.backend.port"), "port 0 is out of range", Some("between 1 and 65535")),
        case("duplicate service table", config(&[HEAD, WEB, LOCAL, "[services.backend]\nport = 9000\n"]),
            Some("[services.backend]\nport = 9000"), Some("services.backend"), "`services.backend` is defined twice", Some("keep one definition")),
        case("unknown service in migrations", config(&[HEAD, "[migrations]\ncommand = \"alembic upgrade head\"\nservice = \"backedn\"\n", WEB, LOCAL]),
            Some("service = \"backedn\""), Some("migrations.service"), "unknown service `backedn`", Some("did you mean `backend`?")),
        case("unknown service in environment replicas", config(&[HEAD, WEB, LOCAL, "replicas = { wroker = 2 }\n"]),
            Some("replicas = { wroker"), Some("environments.local.replicas.wroker"), "unknown service `wroker`", Some("known services: backend")),
        case("bad duration", config(&[HEAD, WEB, "[services.backend.health]\npath = \"/health\"\ninterval = \"10 parsecs\"\n", LOCAL]),
            Some("interval = \"10 parsecs\""), Some("services.backend.health.interval"), "invalid duration `10 parsecs`", Some("")),
        case("duration that is not a string", config(&[HEAD, "[services.backend]\nport = 8000\nstop_timeout = 30\n", LOCAL]),
            Some("stop_timeout = 30"), Some("services.backend.stop_timeout"), "a duration must be a string such as \"30s\"", None),
        case("unknown engine", config(&[HEAD, WEB, "[environments.local]\nengine = \"kubernetes\"\n"]),
            Some("engine = \"kubernetes\""), Some("environments.local.engine"), "unknown variant `kubernetes`", Some("use one of: docker, ecs")),
        case("misspelt engine", config(&[HEAD, WEB, "[environments.local]\nengine = \"dokcer\"\n"]),
            Some("engine = \"dokcer\""), Some("environments.local.engine"), "unknown variant `dokcer`", Some("did you mean `docker`?")),
        case("trigger given as a full ref", config(&[HEAD, WEB, LOCAL, "trigger = { branch = \"refs/heads/main\" }\n"]),
            Some("trigger = { branch"), Some("environments.local.trigger.branch"), "`refs/heads/main` is a full ref", Some("e.g. \"main\" or \"v*\"")),
        case("trigger pattern with a space", config(&[HEAD, WEB, LOCAL, "trigger = { tags = \"v *\" }\n"]),
            Some("trigger = { tags"), Some("environments.local.trigger.tags"), "`v *` is not a valid trigger pattern", None),
        case("trigger with both branch and tags", config(&[HEAD, WEB, LOCAL, "trigger = { branch = \"main\", tags = \"v*\" }\n"]),
            Some("trigger = {"), Some("environments.local.trigger"), "a trigger names exactly one of branch or tags", None),
        case("two environments with one trigger", config(&[HEAD, WEB, LOCAL, "trigger = { branch = \"main\" }\n", STAGING]),
            Some("trigger = { branch = \"main\" }"), Some("environments.staging.trigger.branch"), "branch `main` already triggers environment `local`", None),
        case("promote_from an unknown environment", config(&[HEAD, WEB, LOCAL, STAGING, "[environments.production]\nengine = \"ecs\"\nregion = \"eu-west-1\"\npromote_from = \"stagin\"\n"]),
            Some("promote_from = \"stagin\""), Some("environments.production.promote_from"), "unknown environment `stagin`", Some("did you mean `staging`?")),
        case("promote_from itself", config(&[HEAD, WEB, LOCAL, "promote_from = \"local\"\n"]),
            Some("promote_from = \"local\""), Some("environments.local.promote_from"), "an environment cannot promote from itself", None),
        case("promote_from another engine", config(&[HEAD, WEB, LOCAL, STAGING, "promote_from = \"local\"\n"]),
            Some("promote_from = \"local\""), Some("environments.staging.promote_from"), "`staging` (ecs) cannot promote from `local` (docker)", None),
        case("docker environment reading secrets from ssm", config(&["secrets = [\"SECRET_KEY\"]\n", HEAD, WEB, LOCAL, "secrets_from = { ssm = \"/kaapi/local/\" }\n"]),
            Some("secrets_from = { ssm"), Some("environments.local.secrets_from"), "the docker engine reads secrets from a local env file", Some("env_file = \".env\"")),
        case("ecs environment reading an env file", config(&["secrets = [\"SECRET_KEY\"]\n", HEAD, WEB, STAGING, "secrets_from = { env_file = \".env\" }\n"]),
            Some("secrets_from = { env_file"), Some("environments.staging.secrets_from"), "an ecs environment cannot read a local env file", Some("ssm")),
        case("secrets without a source", config(&["secrets = [\"SECRET_KEY\"]\n", HEAD, WEB, LOCAL]),
            Some("[environments.local]"), Some("environments.local.secrets_from"), "secrets are declared but this environment does not say where they come from", Some("env_file")),
        case("two secret sources", config(&["secrets = [\"SECRET_KEY\"]\n", HEAD, WEB, STAGING, "secrets_from = { ssm = \"/a/\", secrets_manager = \"a/\" }\n"]),
            Some("secrets_from = {"), Some("environments.staging.secrets_from"), "secrets_from names exactly one of ssm, secrets_manager or env_file", None),
        case("ssm path without a leading slash", config(&["secrets = [\"SECRET_KEY\"]\n", HEAD, WEB, STAGING, "secrets_from = { ssm = \"kaapi/staging/\" }\n"]),
            Some("secrets_from = { ssm"), Some("environments.staging.secrets_from.ssm"), "SSM path `kaapi/staging/` must start with `/`", None),
        case("secret written in env", config(&["secrets = [\"SECRET_KEY\"]\n", HEAD, WEB, "[env]\nSECRET_KEY = \"abc\"\n", LOCAL, "secrets_from = { env_file = \".env\" }\n"]),
            Some("SECRET_KEY = \"abc\""), Some("env.SECRET_KEY"), "`SECRET_KEY` is a secret; its value must not be written in env", None),
        case("secret written in a service's env", config(&["secrets = [\"SECRET_KEY\"]\n", HEAD, WEB, "env = { SECRET_KEY = \"abc\" }\n", LOCAL, "secrets_from = { env_file = \".env\" }\n"]),
            Some("env = { SECRET_KEY"), Some("services.backend.env.SECRET_KEY"), "`SECRET_KEY` is a secret", None),
        case("secret listed twice", config(&["secrets = [\"SECRET_KEY\", \"SECRET_KEY\"]\n", HEAD, WEB, LOCAL, "secrets_from = { env_file = \".env\" }\n"]),
            Some("secrets = ["), Some("secrets"), "secret `SECRET_KEY` is listed twice", None),
        case("secrets given as a string", config(&["secrets = \"SECRET_KEY\"\n", HEAD, WEB, LOCAL]),
            Some("secrets = \"SECRET_KEY\""), Some("secrets"), "invalid type: string \"SECRET_KEY\", expected a sequence", None),
        case("invalid variable name", config(&[HEAD, WEB, "[env]\n\"1BAD\" = \"x\"\n", LOCAL]),
            Some("\"1BAD\""), Some("env.1BAD"), "invalid variable name `1BAD`", Some("letters, digits and underscores")),
        case("invalid app prefix", config(&["app = \"Kaapi_App\"\n[image]\ncontext = \"backend\"\n", WEB, LOCAL]),
            Some("app = \"Kaapi_App\""), Some("app"), "invalid app prefix `Kaapi_App`", Some("lowercase letters")),
        case("invalid service name", config(&[HEAD, "[services.Backend]\nport = 8000\n", LOCAL]),
            Some("[services.Backend]"), Some("services.Backend"), "invalid service name `Backend`", Some("lowercase letters")),
        case("invalid environment name", config(&[HEAD, WEB, "[environments.prod_1]\nengine = \"docker\"\n"]),
            Some("[environments.prod_1]"), Some("environments.prod_1"), "invalid environment name `prod_1`", None),
        case("missing app", config(&["[image]\ncontext = \"backend\"\n", WEB, LOCAL]),
            None, Some("app"), "missing field `app`", Some("add it")),
        case("health check without a path", config(&[HEAD, "[services.backend]\nport = 8000\nhealth = { interval = \"10s\" }\n", LOCAL]),
            Some("health = {"), Some("services.backend.health.path"), "missing field `path`", Some("add it")),
        case("missing image", config(&["app = \"kaapi\"\n", WEB, LOCAL]),
            None, Some("image"), "missing field `image`", Some("add it")),
        case("no service", config(&[HEAD, "[services]\n", LOCAL]),
            Some("[services]"), Some("services"), "no service is defined", Some("[services.backend]")),
        case("no environment", config(&[HEAD, WEB, "[environments]\n"]),
            Some("[environments]"), Some("environments"), "no environment is defined", Some("engine = \"docker\"")),
        case("web service without a port", config(&[HEAD, "[services.backend]\nkind = \"web\"\n", LOCAL]),
            Some("[services.backend]"), Some("services.backend.port"), "a web service needs a port", None),
        case("worker with a port", config(&[HEAD, WEB, "[services.worker]\nkind = \"worker\"\nport = 9000\n", LOCAL]),
            Some("port = 9000"), Some("services.worker.port"), "a worker service does not take a port", None),
        case("health check on a worker", config(&[HEAD, WEB, "[services.worker]\ncommand = \"celery worker\"\nhealth = { path = \"/\" }\n", LOCAL]),
            Some("health = { path"), Some("services.worker.health"), "a worker service has no HTTP health check", None),
        case("health path without a slash", config(&[HEAD, WEB, "[services.backend.health]\npath = \"health\"\n", LOCAL]),
            Some("path = \"health\""), Some("services.backend.health.path"), "health path `health` must start with `/`", None),
        case("health timeout not shorter than interval", config(&[HEAD, WEB, "[services.backend.health]\npath = \"/h\"\ninterval = \"5s\"\ntimeout = \"5s\"\n", LOCAL]),
            Some("timeout = \"5s\""), Some("services.backend.health.timeout"), "the health-check timeout must be shorter than its interval", None),
        case("zero health retries", config(&[HEAD, WEB, "[services.backend.health]\npath = \"/h\"\nretries = 0\n", LOCAL]),
            Some("retries = 0"), Some("services.backend.health.retries"), "retries must be between 1 and 10", None),
        case("zero replicas", config(&[HEAD, "[services.backend]\nport = 8000\nreplicas = 0\n", LOCAL]),
            Some("replicas = 0"), Some("services.backend.replicas"), "0 replicas is out of range", None),
        case("negative replicas", config(&[HEAD, "[services.backend]\nport = 8000\nreplicas = -1\n", LOCAL]),
            Some("replicas = -1"), Some("services.backend.replicas"), "invalid value: integer `-1`, expected u32", Some("whole number")),
        case("cpu out of range", config(&[HEAD, "[services.backend]\nport = 8000\ncpu = 64\n", LOCAL]),
            Some("cpu = 64"), Some("services.backend.cpu"), "64 CPU units is out of range", None),
        case("memory out of range", config(&[HEAD, "[services.backend]\nport = 8000\nmemory = 1\n", LOCAL]),
            Some("memory = 1"), Some("services.backend.memory"), "1 MiB is out of range", None),
        case("ecs environment without a region", config(&[HEAD, WEB, "[environments.staging]\nengine = \"ecs\"\n"]),
            Some("[environments.staging]"), Some("environments.staging.region"), "an ecs environment needs a region", None),
        case("url that is not http", config(&[HEAD, WEB, LOCAL, "url = \"staging.example.org\"\n"]),
            Some("url = "), Some("environments.local.url"), "`staging.example.org` is not an http(s) URL", None),
        case("ingress_port on ecs", config(&[HEAD, WEB, STAGING, "ingress_port = 8000\n"]),
            Some("ingress_port = 8000"), Some("environments.staging.ingress_port"), "ingress_port is for the docker engine only", None),
        case("name override for an unknown service", config(&[HEAD, WEB, STAGING, "names = { services = { web = \"x\" } }\n"]),
            Some("names = {"), Some("environments.staging.names.services.web"), "unknown service `web`", None),
        case("two services with one name", config(&[HEAD, WEB, "[services.worker]\ncommand = \"w\"\n", STAGING, "names = { services = { worker = \"kaapi-staging-service\" } }\n"]),
            Some("names = {"), Some("environments.staging.names.services"), "services `backend` and `worker` would both be named `kaapi-staging-service`", None),
        case("invalid volume", config(&[HEAD, "[services.backend]\nport = 8000\nvolumes = [\"data\"]\n", LOCAL]),
            Some("volumes = "), Some("services.backend.volumes.0"), "volume `data` is not NAME:/path", None),
        case("TOML syntax error", config(&[HEAD, "[services.backend]\nport = 8000\ncommand = \"uvicorn\n", LOCAL]),
            Some("command = \"uvicorn"), None, "invalid basic string", None),
    ]
}

fn line_number(text: &str, piece: &str) -> usize {
    // The last occurrence: a repeated piece is the one that is wrong.
    let at = text
        .rfind(piece)
        .unwrap_or_else(|| panic!("fixture has no `{piece}`"));
    text[..at].matches('\n').count() + 1
}

fn check(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("kaapi-deploy").expect("binary builds");
    cmd.current_dir(dir).env("NO_COLOR", "1").arg("check");
    cmd
}

#[test]
fn every_malformed_config_is_named_precisely_and_exits_2() {
    let cases = cases();
    assert!(cases.len() >= 25, "only {} cases", cases.len());
    let mut names = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for case in &cases {
        assert!(names.insert(case.name), "duplicate case name {}", case.name);
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("deploy.toml");
        std::fs::write(&path, &case.text).expect("write config");
        let output = check(dir.path()).output().expect("run check");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let mut location = format!("{}", path.display());
        if let Some(piece) = case.line_of {
            location.push_str(&format!(":{}", line_number(&case.text, piece)));
        }
        if let Some(key) = case.key {
            location.push_str(&format!(": `{key}`"));
        }
        let mut problems = Vec::new();
        if output.status.code() != Some(2) {
            problems.push(format!("exit {:?}", output.status.code()));
        }
        let diagnostic = stderr
            .lines()
            .find(|l| l.contains(&location) && l.contains(case.message));
        if diagnostic.is_none() {
            problems.push(format!("no line with `{location}` and `{}`", case.message));
        }
        if let Some(hint) = case.hint {
            if !stderr.contains(&format!("hint: {hint}")) && !stderr.contains(hint) {
                problems.push(format!("no hint `{hint}`"));
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n--- stderr:\n{stderr}",
                case.name,
                problems.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn malformed_config_with_json_prints_a_report_and_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = config(&[HEAD, "[services.backend]\nprot = 8000\n", LOCAL]);
    std::fs::write(dir.path().join("deploy.toml"), &text).expect("write config");
    let output = check(dir.path()).arg("--json").output().expect("run check");
    assert_eq!(output.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert_eq!(report["ok"], false);
    assert_eq!(report["errors"], 1);
    let finding = &report["findings"][0];
    assert_eq!(finding["key"], "services.backend.prot");
    assert_eq!(finding["line"], 5);
    assert_eq!(finding["hint"], "did you mean `port`?");
}

#[test]
fn missing_or_unreadable_config_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = check(dir.path()).output().expect("run check");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("kaapi-deploy init"));
    let output = check(dir.path())
        .args(["--config", "nope.toml"])
        .output()
        .expect("run check");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read nope.toml"));
}

#[test]
fn unknown_environment_argument_exits_2_with_the_nearest_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("deploy.toml"),
        config(&[HEAD, WEB, LOCAL, STAGING]),
    )
    .expect("write");
    let output = check(dir.path())
        .arg("stagign")
        .output()
        .expect("run check");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("did you mean `staging`?"));
}
