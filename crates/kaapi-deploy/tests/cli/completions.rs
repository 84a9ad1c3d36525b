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

fn kaapi(args: &[&str]) -> std::process::Output {
    Command::cargo_bin("kaapi-deploy")
        .expect("kaapi-deploy binary")
        .args(args)
        .output()
        .expect("run kaapi-deploy")
}

#[test]
fn the_man_page_renders_and_documents_every_command() {
    let output = kaapi(&["man"]);
    assert!(output.status.success(), "{output:?}");
    let page = String::from_utf8(output.stdout).expect("UTF-8 roff");
    assert!(page.contains(".TH kaapi-deploy 1"), "{page}");
    // groff renders it; -ww reports any roff it does not understand.
    let mut groff = std::process::Command::new("groff")
        .args(["-man", "-Tutf8", "-ww"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("groff (Debian's groff-base)");
    std::io::Write::write_all(groff.stdin.as_mut().expect("groff stdin"), page.as_bytes())
        .expect("feed groff");
    let rendered = groff.wait_with_output().expect("groff output");
    let text = String::from_utf8_lossy(&rendered.stdout);
    assert!(rendered.status.success(), "{rendered:?}");
    assert!(
        rendered.stderr.is_empty(),
        "groff: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    for command in [
        "deploy",
        "rollback",
        "plan",
        "scale",
        "exec",
        "prune",
        "down",
        "completions",
    ] {
        assert!(
            text.contains(&format!("kaapi-deploy-{command}(1)"))
                || text.contains(&format!("kaapi‐deploy‐{command}(1)")),
            "the page does not list `{command}`:\n{text}"
        );
    }
}

#[test]
fn man_out_dir_writes_a_page_per_command() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("man1");
    let output = kaapi(&["man", "--out-dir", out.to_str().expect("UTF-8 path")]);
    assert!(output.status.success(), "{output:?}");
    for (page, title) in [
        ("kaapi-deploy.1", ".TH kaapi-deploy 1"),
        ("kaapi-deploy-deploy.1", ".TH kaapi-deploy-deploy 1"),
        ("kaapi-deploy-rollback.1", ".TH kaapi-deploy-rollback 1"),
    ] {
        let text = std::fs::read_to_string(out.join(page)).expect(page);
        assert!(text.contains(title), "{page}: {text}");
    }
    // Each command's page has its own synopsis, arguments included.
    let scale = std::fs::read_to_string(out.join("kaapi-deploy-scale.1")).expect("scale page");
    assert!(scale.contains(r"\fBkaapi\-deploy scale\fR"), "{scale}");
    assert!(scale.contains(r"<\fISERVICE=N\fR>"), "{scale}");
}
