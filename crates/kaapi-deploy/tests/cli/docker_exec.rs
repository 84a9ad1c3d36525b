//! `exec` runs a command in a running replica through the Docker exec API: its stdout and
//! stderr come through apart, its exit code becomes the CLI's, and `--replica N` picks the Nth
//! running replica, oldest first.

use crate::docker_support::{docker, Project, LABEL_ROLE};

/// Runs kaapi-deploy, returning (exit code, stdout, stderr).
fn run(project: &Project, args: &[&str]) -> (i32, String, String) {
    let output = project.cli().args(args).output().expect("run kaapi-deploy");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The containers the Docker Engine started `command` in since `since` (Unix seconds), by ID
/// (health checks are execs too, hence the command).
fn exec_containers_since(since: u64, command: &str) -> Vec<String> {
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
        + 1;
    docker(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        "event=exec_start",
        "--format",
        "{{.Actor.ID}} {{.Action}}",
    ])
    .lines()
    .filter_map(|line| line.split_once(' '))
    .filter(|(_, action)| action.trim() == format!("exec_start: {command}"))
    .map(|(id, _)| id.to_owned())
    .collect()
}

/// The backend's replicas, oldest first as the engine orders them (creation second, then ID).
fn backend_replicas(project: &Project) -> Vec<String> {
    let mut replicas: Vec<(String, String)> = project
        .containers(&[(LABEL_ROLE, "replica"), ("dev.kaapi.service", "backend")])
        .into_iter()
        .map(|id| {
            let created = docker(&[
                "ps",
                "-a",
                "--filter",
                &format!("id={id}"),
                "--format",
                "{{.CreatedAt}}",
            ]);
            (created.trim().to_owned(), id)
        })
        .collect();
    replicas.sort();
    replicas.into_iter().map(|(_, id)| id).collect()
}

#[test]
fn exec_returns_the_commands_exit_code_and_output() {
    let project = Project::new("exec");
    let (code, _, stderr) = run(&project, &["exec", "local", "--", "/app", "exit", "0"]);
    assert_eq!(code, 1, "nothing runs yet: {stderr}");
    assert!(stderr.contains("no replica of `backend` runs"), "{stderr}");

    project.deploy();

    let (code, stdout, stderr) = run(&project, &["exec", "local", "--", "/app", "exit", "3"]);
    assert_eq!(code, 3, "{stdout}\n{stderr}");
    assert_eq!(stdout, "exiting with 3\n", "stderr: {stderr}");

    // Stderr stays stderr.
    let (code, stdout, stderr) = run(&project, &["exec", "local", "--", "/app", "exit", "x"]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("exit code must be an integer"), "{stderr}");

    let (code, stdout, stderr) = run(
        &project,
        &["exec", "local", "--service", "worker", "--", "/app", "help"],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("worker     print a heartbeat"), "{stdout}");

    // The second backend replica runs the command, the first does not.
    let replicas = backend_replicas(&project);
    assert_eq!(replicas.len(), 2, "two backend replicas");
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let (code, stdout, stderr) = run(
        &project,
        &["exec", "local", "--replica", "2", "--", "/app", "exit", "7"],
    );
    assert_eq!(code, 7, "{stdout}\n{stderr}");
    let execs = exec_containers_since(since, "/app exit 7");
    let ran = |replica: &str| execs.iter().any(|id| id.starts_with(replica));
    assert!(ran(&replicas[1]), "the second replica ran it: {execs:?}");
    assert!(!ran(&replicas[0]), "the first did not: {execs:?}");

    let (code, _, stderr) = run(
        &project,
        &["exec", "local", "--replica", "3", "--", "/app", "exit", "0"],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("--replica 3: `backend` has 2 running replica(s)"),
        "{stderr}"
    );

    let (code, _, stderr) = run(
        &project,
        &[
            "exec",
            "local",
            "--service",
            "nope",
            "--",
            "/app",
            "exit",
            "0",
        ],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("no service `nope`"), "{stderr}");
}

/// With a terminal on both ends (`script` gives the CLI a pseudo-terminal), the command gets a
/// TTY: its output comes through the terminal and its exit code is still the CLI's.
#[test]
fn exec_in_a_terminal_gets_a_tty() {
    let project = Project::new("exectty");
    project.deploy();
    let cli = project.std_cli(&["exec", "local", "--", "/app", "exit", "5"]);
    let line = std::iter::once(cli.get_program())
        .chain(cli.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = std::process::Command::new("script");
    script.args(["-qefc", &line, "/dev/null"]);
    for (key, value) in cli.get_envs() {
        match value {
            Some(value) => script.env(key, value),
            None => script.env_remove(key),
        };
    }
    if let Some(dir) = cli.get_current_dir() {
        script.current_dir(dir);
    }
    let output = script
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(5), "{stdout}");
    // A TTY turns the command's "\n" into "\r\n".
    assert!(stdout.contains("exiting with 5\r\n"), "{stdout:?}");
}
