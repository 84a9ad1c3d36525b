//! What `init` needs from a Dockerfile: the final `CMD` and the first `EXPOSE`d port of the
//! last stage.

/// A `CMD` as written: exec form (`["uv", "run", …]`) or shell form (`uv run …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    Exec(Vec<String>),
    Shell(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerfileFacts {
    pub cmd: Option<Cmd>,
    pub expose: Option<u16>,
}

/// Reads instructions (joining `\` continuations, skipping comments); a later `FROM` starts a
/// new stage and forgets what the earlier one said.
pub fn parse_dockerfile(text: &str) -> DockerfileFacts {
    let mut facts = DockerfileFacts::default();
    for instruction in instructions(text) {
        let (keyword, rest) = match instruction.split_once(char::is_whitespace) {
            Some((k, r)) => (k.to_ascii_uppercase(), r.trim()),
            None => (instruction.to_ascii_uppercase(), ""),
        };
        match keyword.as_str() {
            "FROM" => facts = DockerfileFacts::default(),
            "CMD" => facts.cmd = parse_cmd(rest),
            "EXPOSE" if facts.expose.is_none() => {
                facts.expose = rest
                    .split_whitespace()
                    .filter_map(|p| p.split('/').next()?.parse::<u16>().ok())
                    .find(|p| *p != 0);
            }
            _ => {}
        }
    }
    facts
}

fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        // Comments are dropped, also inside a continued instruction, as Docker does.
        if trimmed.starts_with('#') {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head.trim_end());
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                if !current.trim().is_empty() {
                    out.push(current.trim().to_owned());
                }
                current.clear();
            }
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}

fn parse_cmd(rest: &str) -> Option<Cmd> {
    if rest.is_empty() {
        return None;
    }
    if rest.starts_with('[') {
        if let Ok(argv) = serde_json::from_str::<Vec<String>>(rest) {
            return (!argv.is_empty()).then_some(Cmd::Exec(argv));
        }
    }
    Some(Cmd::Shell(rest.to_owned()))
}

/// The port a command line passes with `--port N`, `--port=N`, `-p N` or `--bind host:N`.
pub fn port_in_command(argv: &[String]) -> Option<u16> {
    let mut words = argv.iter().flat_map(|w| w.split_whitespace());
    while let Some(word) = words.next() {
        let value = match word {
            "--port" | "-p" | "--bind" | "-b" => words.next().map(str::to_owned),
            _ => word
                .strip_prefix("--port=")
                .or_else(|| word.strip_prefix("--bind="))
                .map(str::to_owned),
        };
        if let Some(port) = value
            .as_deref()
            .map(|v| v.rsplit(':').next().unwrap_or(v))
            .and_then(|v| v.parse::<u16>().ok())
            .filter(|p| *p != 0)
        {
            return Some(port);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exec_cmd_and_expose() {
        let facts = parse_dockerfile(
            "FROM python:3.12\n# c\nEXPOSE 80\nCMD [\"uv\", \"run\", \"uvicorn\", \"app.main:app\", \"--port\", \"80\"]\n",
        );
        assert_eq!(facts.expose, Some(80));
        assert_eq!(
            facts.cmd,
            Some(Cmd::Exec(
                ["uv", "run", "uvicorn", "app.main:app", "--port", "80"]
                    .map(String::from)
                    .to_vec()
            ))
        );
    }

    #[test]
    fn reads_shell_cmd_with_continuations_and_the_last_stage_only() {
        let facts = parse_dockerfile(
            "FROM a AS build\nEXPOSE 9999\nCMD [\"x\"]\nFROM b\nexpose 8000/tcp 9000\ncmd fastapi run \\\n  --workers 4 app/main.py\n",
        );
        assert_eq!(facts.expose, Some(8000));
        assert_eq!(
            facts.cmd,
            Some(Cmd::Shell("fastapi run --workers 4 app/main.py".to_owned()))
        );
    }

    #[test]
    fn finds_ports_in_commands() {
        let argv = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            port_in_command(&argv("uvicorn app --port 8001")),
            Some(8001)
        );
        assert_eq!(
            port_in_command(&argv("gunicorn -b 0.0.0.0:5000 app")),
            Some(5000)
        );
        assert_eq!(port_in_command(&argv("fastapi run --port=81")), Some(81));
        assert_eq!(port_in_command(&argv("celery worker")), None);
    }
}
