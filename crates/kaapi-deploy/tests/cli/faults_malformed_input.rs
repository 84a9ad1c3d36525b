//! Fault suite: malformed `deploy.toml` and env files, generated at random from a fixed seed,
//! must give clean errors (diagnostics naming the file, with a message) and never panic.
//!
//! Runs in-process against the library (`kaapi_core::config::parse`, `envfile::parse`), which
//! is what the CLI calls before it exits with code 2. A seeded generator (no extra crates)
//! mutates a valid config in ways users get wrong: cut lines, swapped types, unknown keys,
//! bad names and ports, duplicated tables, random bytes, unbalanced quotes and brackets.

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use kaapi_core::config::{self, ConfigError};
use kaapi_core::envfile;

const CASES: u64 = 12_000;
const SEED: u64 = 0x6b61_6170_6964_6570; // "kaapidep"

/// A config that parses without errors; every case starts from it.
const VALID: &str = r#"app = "kaapi"

[image]
context = "backend"
build_args = { APP_VERSION = "1.0.0" }

[migrations]
command = ["/app", "migrate"]
timeout = "5m"

[services.backend]
port = 8000
replicas = 2
command = "/app serve"
health = { path = "/api/v1/utils/health/", interval = "2s", timeout = "1s", retries = 3, start_period = "10s" }
env = { LOG_LEVEL = "info" }
volumes = ["data:/data"]

[services.worker]
command = ["/app", "worker"]
replicas = 1
volumes = ["data:/data"]

[env]
PROJECT_NAME = "Kaapi"

[environments.local]
engine = "docker"
ingress_port = 18080

[environments.staging]
engine = "ecs"
region = "ap-south-1"
trigger = { branch = "main" }
url = "https://staging.example.com"
"#;

const VALID_ENV: &str = "# comment\nexport A=1\nB=\"two words\"\nC='x=y'\nD=\n\nE_2=changethis\n";

/// splitmix64: small, fast, reproducible from the seed on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Fragments users mistype: wrong types, bad names, stray syntax, non-ASCII, control bytes.
const FRAGMENTS: &[&str] = &[
    "=",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "\"",
    "'",
    "'''",
    "\"\"\"",
    "#",
    ",",
    ".",
    "\n",
    "\t",
    "\\",
    "\\u{0}",
    "0",
    "-1",
    "65536",
    "99999999999999999999",
    "1e400",
    "nan",
    "inf",
    "true",
    "\"\"",
    "[]",
    "{}",
    "app",
    "image",
    "services",
    "environments",
    "engine",
    "\"k8s\"",
    "\"docker\"",
    "\"ecs\"",
    "port",
    "replicas",
    "health",
    "path",
    "kind",
    "\"web\"",
    "\"Worker\"",
    "command",
    "ingress_port",
    "region",
    "trigger",
    "branch",
    "tags",
    "\"v*\"",
    "\"[\"",
    "timeout",
    "\"5 parsecs\"",
    "\"-3s\"",
    "secrets",
    "secrets_from",
    "env_file",
    "promote_from",
    "\"nowhere\"",
    "Kaapi_App",
    "é",
    "🦀",
    "\u{feff}",
    "\r\n",
    "\u{7f}",
    "\0",
    "1979-05-27T07:32:00Z",
    "0x1f",
    "+",
    "_",
    "a.b.c",
    "\"a\".\"b\"",
    "services.x",
];

/// Whole lines that are wrong in context.
const BAD_LINES: &[&str] = &[
    "app = 3",
    "app = \"Not A Name\"",
    "app = \"\"",
    "[services.backend]",
    "[services.\"bad name\"]",
    "port = \"8000\"",
    "port = 0",
    "port = 70000",
    "replicas = -1",
    "replicas = 1.5",
    "engine = \"k8s\"",
    "[environments.prod]\nengine = \"ecs\"",
    "[environments.local]\nengine = \"docker\"\nsecrets_from = { ssm = \"/x/\" }",
    "command = []",
    "command = \"\"",
    "command = \"unterminated 'quote\"",
    "command = [1, 2]",
    "health = \"yes\"",
    "health = { interval = \"2s\" }",
    "timeout = \"forever\"",
    "trigger = { branch = \"[\" }",
    "trigger = { tags = \"\" }",
    "promote_from = \"nowhere\"",
    "secrets = [\"A\", \"A\"]",
    "secrets = [\"1BAD\"]",
    "env = { \"1BAD\" = \"x\" }",
    "volumes = [\"no-colon\"]",
    "kind = \"web\"",
    "replcias = 2",
    "[variables]\nexample = 3",
    "[migrations]\nservice = \"ghost\"",
    "[[services]]",
    "ingress_port = 0",
    "rollout_timeout = \"0s\"",
];

fn mutate(rng: &mut Rng, base: &str) -> String {
    let mut lines: Vec<String> = base.lines().map(str::to_owned).collect();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let at = rng.below(lines.len() + 1);
        match rng.below(9) {
            // Drop a line (missing required keys, orphaned tables).
            0 if !lines.is_empty() => {
                lines.remove(at.min(lines.len() - 1));
            }
            // Insert a line that is wrong here.
            1 => lines.insert(at, rng.pick(BAD_LINES).to_owned()),
            // Duplicate a line (duplicate keys and tables).
            2 if !lines.is_empty() => {
                let line = lines[at.min(lines.len() - 1)].clone();
                lines.insert(at.min(lines.len()), line);
            }
            // Replace a value with a fragment.
            3 if !lines.is_empty() => {
                let i = at.min(lines.len() - 1);
                if let Some((key, _)) = lines[i].split_once('=') {
                    lines[i] = format!("{key}= {}", rng.pick(FRAGMENTS));
                }
            }
            // Splice fragments into the middle of a line.
            4 if !lines.is_empty() => {
                let i = at.min(lines.len() - 1);
                let mut chars: Vec<char> = lines[i].chars().collect();
                let cut = rng.below(chars.len() + 1);
                let insert: Vec<char> = rng.pick(FRAGMENTS).chars().collect();
                chars.splice(cut..cut, insert);
                lines[i] = chars.into_iter().collect();
            }
            // Truncate a line.
            5 if !lines.is_empty() => {
                let i = at.min(lines.len() - 1);
                let keep = rng.below(lines[i].chars().count() + 1);
                lines[i] = lines[i].chars().take(keep).collect();
            }
            // A run of random fragments.
            6 => {
                let n = 1 + rng.below(8);
                let line: String = (0..n).map(|_| rng.pick(FRAGMENTS)).collect();
                lines.insert(at, line);
            }
            // Random bytes as (lossy) text, control characters included.
            7 => {
                let n = 1 + rng.below(40);
                let bytes: Vec<u8> = (0..n).map(|_| (rng.next() & 0xff) as u8).collect();
                lines.insert(at, String::from_utf8_lossy(&bytes).into_owned());
            }
            // Cut the whole file short.
            _ => {
                let keep = rng.below(lines.len() + 1);
                lines.truncate(keep);
            }
        }
    }
    lines.join("\n")
}

fn check_config_case(case: u64, text: &str) -> Result<bool, String> {
    let path = Path::new("fuzz/deploy.toml");
    match config::parse(path, text) {
        Ok(_) => Ok(false),
        Err(ConfigError::Invalid {
            path: p,
            diagnostics,
        }) => {
            if p != path {
                return Err(format!(
                    "case {case}: error names {} instead of the file",
                    p.display()
                ));
            }
            if diagnostics.is_empty() {
                return Err(format!(
                    "case {case}: invalid config without any diagnostic"
                ));
            }
            let line_count = text.lines().count().max(1) + 1;
            for d in &diagnostics {
                if !d.is_error() || d.message.trim().is_empty() || d.file != path {
                    return Err(format!("case {case}: unclear diagnostic {d:?}"));
                }
                if d.line.is_some_and(|l| l == 0 || l > line_count) {
                    return Err(format!(
                        "case {case}: diagnostic points at line {:?} of a {line_count}-line file: {d}",
                        d.line
                    ));
                }
                // The rendered text is what users read on exit 2.
                if !d.to_string().starts_with("error: fuzz/deploy.toml") {
                    return Err(format!("case {case}: rendering lost the file: {d}"));
                }
            }
            Ok(true)
        }
        Err(other) => Err(format!(
            "case {case}: parse gave a non-config error: {other}"
        )),
    }
}

#[test]
fn random_malformed_configs_give_diagnostics_never_panics() {
    assert!(
        config::parse(Path::new("deploy.toml"), VALID).is_ok(),
        "the base config must be valid, or every mutation fails for the same reason: {:?}",
        config::parse(Path::new("deploy.toml"), VALID)
            .err()
            .map(|e| e.to_string())
    );
    let mut rng = Rng(SEED);
    let mut rejected = 0u64;
    let mut failures = Vec::new();
    for case in 0..CASES {
        // Mostly mutations of a valid file; some wholly random text.
        let text = if case % 10 == 9 {
            let n = rng.below(30);
            (0..n)
                .map(|_| rng.pick(FRAGMENTS))
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            mutate(&mut rng, VALID)
        };
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| check_config_case(case, &text)));
        match outcome {
            Ok(Ok(true)) => rejected += 1,
            Ok(Ok(false)) => {}
            Ok(Err(problem)) => failures.push(format!("{problem}\n--- input ---\n{text}")),
            Err(_) => failures.push(format!("case {case}: PANIC\n--- input ---\n{text}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {CASES} cases misbehaved; first:\n{}",
        failures.len(),
        failures[0]
    );
    // The generator must actually produce broken files, or the test proves nothing.
    assert!(
        rejected > CASES / 2,
        "only {rejected} of {CASES} generated configs were rejected"
    );
}

fn mutate_env(rng: &mut Rng) -> String {
    let mut lines: Vec<String> = VALID_ENV.lines().map(str::to_owned).collect();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(lines.len() + 1);
        let line = match rng.below(6) {
            0 => format!("{}={}", rng.pick(FRAGMENTS), rng.pick(FRAGMENTS)),
            1 => rng.pick(FRAGMENTS).to_owned(),
            2 => format!("export {}", rng.pick(FRAGMENTS)),
            3 => {
                let n = 1 + rng.below(30);
                let bytes: Vec<u8> = (0..n).map(|_| (rng.next() & 0xff) as u8).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
            4 => format!("KEY{}=\"{}", rng.below(9), rng.pick(FRAGMENTS)),
            _ => format!("  {} = {}  ", rng.pick(FRAGMENTS), rng.pick(FRAGMENTS)),
        };
        lines.insert(at, line);
    }
    lines.join(if rng.below(2) == 0 { "\n" } else { "\r\n" })
}

#[test]
fn random_malformed_env_files_give_line_errors_never_panics() {
    assert!(
        envfile::parse(VALID_ENV).is_ok(),
        "the base env file must parse"
    );
    let mut rng = Rng(SEED ^ 0xe4f);
    let mut rejected = 0u64;
    let mut failures = Vec::new();
    for case in 0..CASES {
        let text = mutate_env(&mut rng);
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| envfile::parse(&text)));
        match outcome {
            Ok(Ok(vars)) => {
                // Accepted files must hold only valid names.
                if let Some(bad) = vars.keys().find(|k| !config::is_valid_variable_name(k)) {
                    failures.push(format!(
                        "case {case}: accepted bad name {bad:?} from:\n{text}"
                    ));
                }
            }
            Ok(Err(e)) => {
                rejected += 1;
                let lines = text.lines().count();
                if e.line == 0 || e.line > lines || e.message.trim().is_empty() {
                    failures.push(format!("case {case}: unclear error {e:?} for:\n{text}"));
                }
            }
            Err(_) => failures.push(format!("case {case}: PANIC\n--- input ---\n{text}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {CASES} cases misbehaved; first:\n{}",
        failures.len(),
        failures[0]
    );
    assert!(
        rejected > CASES / 4,
        "only {rejected} of {CASES} generated env files were rejected"
    );
}
