//! Not a timed test: a benchmark that prints where a deploy's time goes (build, migrate,
//! replicas started, healthy, traffic switched, total) and how long a rollback takes.
//!
//!     cargo test -p kaapi-deploy --test docker_bench -- --ignored --nocapture

use crate::docker_support::Project;

/// Seconds from the progress line's `[  12.3s]` stamp of the first line containing `needle`
/// after the line containing `after`.
fn stamp(stderr: &str, after: &str, needle: &str) -> Option<f64> {
    let mut lines = stderr.lines().skip_while(|l| !l.contains(after));
    lines.find(|l| l.contains(needle)).and_then(|l| {
        let inside = l.strip_prefix('[')?.split(']').next()?;
        inside.trim().trim_end_matches('s').parse().ok()
    })
}

fn report(label: &str, json: &str, stderr: &str) {
    let value: serde_json::Value = serde_json::from_str(json).expect("report JSON");
    println!(
        "{label}: outcome {}, total {:.2}s",
        value["outcome"],
        value["total_seconds"].as_f64().unwrap_or(0.0)
    );
    for phase in value["phases"].as_array().into_iter().flatten() {
        println!(
            "  {:<9} {:>6.2}s",
            phase["phase"].as_str().unwrap_or("?"),
            phase["seconds"].as_f64().unwrap_or(0.0)
        );
    }
    let rollout = stamp(stderr, "==> rollout", "==> rollout");
    let points = [
        (
            "first replica started",
            stamp(stderr, "==> rollout", "started"),
        ),
        (
            "last replica healthy",
            stderr
                .lines()
                .skip_while(|l| !l.contains("==> rollout"))
                .filter(|l| l.contains("is healthy"))
                .last()
                .and_then(|l| {
                    l.strip_prefix('[')?
                        .split(']')
                        .next()?
                        .trim()
                        .trim_end_matches('s')
                        .parse()
                        .ok()
                }),
        ),
        (
            "traffic switched",
            stamp(stderr, "==> rollout", "switched traffic"),
        ),
    ];
    for (name, at) in points {
        if let (Some(at), Some(start)) = (at, rollout) {
            println!("  {name:<22} +{:.2}s into the rollout", at - start);
        }
    }
}

#[test]
#[ignore = "benchmark: prints figures, asserts only that the deploys succeed"]
fn deploy_and_rollback_phases() {
    let project = Project::new("bench");
    for (label, version) in [("first deploy", "1.0.0"), ("second deploy", "2.0.0")] {
        project.configure(version, "");
        let output = project
            .cli()
            .args(["deploy", "local", "--json"])
            .output()
            .expect("deploy");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        report(
            label,
            &String::from_utf8_lossy(&output.stdout),
            &String::from_utf8_lossy(&output.stderr),
        );
    }
    let output = project
        .cli()
        .args(["rollback", "local", "--json"])
        .output()
        .expect("rollback");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    report(
        "rollback",
        &String::from_utf8_lossy(&output.stdout),
        &String::from_utf8_lossy(&output.stderr),
    );
}
