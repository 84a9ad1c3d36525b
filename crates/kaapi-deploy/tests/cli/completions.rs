//! `completions SHELL`: the generated bash script loads in bash and completes commands and flags.

use assert_cmd::Command;

fn script(shell: &str) -> String {
    let output = Command::cargo_bin("kaapi-deploy")
        .expect("kaapi-deploy binary")
        .args(["completions", shell])
        .output()
        .expect("run kaapi-deploy");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).expect("UTF-8 script")
}

/// What bash completes for the words typed so far, with the script loaded.
fn bash_completes(script_path: &std::path::Path, words: &[&str]) -> Vec<String> {
    let words_array = words
        .iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let program = format!(
        // The function the script registers for kaapi-deploy, called as bash's `complete` would.
        "source '{}'; function=$(complete -p kaapi-deploy | sed -E 's/.*-F ([^ ]+).*/\\1/'); COMP_WORDS=({words_array}); COMP_CWORD={}; COMP_LINE='{}'; COMP_POINT=${{#COMP_LINE}}; \"$function\" kaapi-deploy '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script_path.display(),
        words.len() - 1,
        words.join(" "),
        words[words.len() - 1],
        words[words.len().saturating_sub(2)],
    );
    let output = std::process::Command::new("bash")
        .args(["-c", &program])
        .output()
        .expect("run bash");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completes_commands_and_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kaapi-deploy.bash");
    std::fs::write(&path, script("bash")).expect("write script");

    let commands = bash_completes(&path, &["kaapi-deploy", "pl"]);
    assert_eq!(commands, ["plan"], "{commands:?}");
    let flags = bash_completes(&path, &["kaapi-deploy", "deploy", "--dr"]);
    assert_eq!(flags, ["--dry-run"], "{flags:?}");
}

#[test]
fn zsh_and_fish_scripts_name_every_command() {
    for shell in ["zsh", "fish"] {
        let text = script(shell);
        for command in ["deploy", "plan", "rollback", "completions"] {
            assert!(text.contains(command), "{shell} script lacks `{command}`");
        }
    }
    let refused = Command::cargo_bin("kaapi-deploy")
        .expect("kaapi-deploy binary")
        .args(["completions", "tcsh"])
        .output()
        .expect("run kaapi-deploy");
    assert_eq!(
        refused.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}
