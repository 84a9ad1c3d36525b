//! `kaapi-deploy ci` over a scripted engine: the decision for each kind of git ref, and the
//! outputs, summary and annotations a deploy writes for GitHub.

use std::collections::VecDeque;
use std::path::Path;

use kaapi_ci::decide::{decide, CiDecision};
use kaapi_ci::github::{GithubContext, Vars};
use kaapi_ci::run::{run_ci, CiPlan};
use kaapi_core::config::{parse, Config};
use kaapi_core::engine::{ImageSource, LockOwner, RolloutOutcome, TaskExit};
use kaapi_core::pipeline::{DeployPlan, Migrations};
use kaapi_core::progress::Silent;
use kaapi_core::release::{Outcome, ReleaseMeta};
use kaapi_core::schema::SchemaCommands;
use kaapi_testkit::fake_engine::{image, FakeEngine, Script};

const CONFIG: &str = r#"
app = "kaapi"

[image]
context = "."

[migrations]
command = ["migrate", "up"]

[services.backend]
port = 8000

[environments.staging]
engine = "docker"
trigger = { branch = "main" }

[environments.production]
engine = "docker"
trigger = { tags = "v*" }
promote_from = "staging"
"#;

fn config() -> Config {
    parse(Path::new("deploy.toml"), CONFIG)
        .expect("the test config is valid")
        .0
}

#[test]
fn trigger_matrix_decides_and_sets_the_exit_code() {
    let config = config();
    let deploy = |env: &str, version: Option<&str>| CiDecision::Deploy {
        environment: env.to_owned(),
        version: version.map(str::to_owned),
    };
    let cases: Vec<(&str, Option<CiDecision>, Option<u8>)> = vec![
        ("refs/heads/main", Some(deploy("staging", None)), None),
        ("refs/heads/feature/x", None, Some(0)),
        (
            "refs/tags/v1.2.3",
            Some(deploy("production", Some("v1.2.3"))),
            None,
        ),
        ("refs/tags/v1.2.3-rc.1", None, Some(0)),
        ("refs/tags/v1.2", None, Some(2)),
        ("refs/tags/latest", None, Some(0)),
        ("refs/pull/42/merge", None, Some(0)),
    ];
    for (git_ref, expected, exit) in cases {
        let decision = decide(&config, git_ref);
        assert_eq!(decision.exit_code(), exit, "{git_ref}: {decision:?}");
        if let Some(expected) = expected {
            assert_eq!(decision, expected, "{git_ref}");
        }
        match (&decision, exit) {
            (CiDecision::Nothing { reason }, Some(0))
            | (CiDecision::Refused { reason }, Some(2)) => {
                let short = git_ref.rsplit('/').next().expect("a ref has a last part");
                assert!(
                    reason.contains(short),
                    "{git_ref}: the reason names it: {reason}"
                );
            }
            (CiDecision::Deploy { .. }, None) => {}
            other => panic!("{git_ref}: unexpected {other:?}"),
        }
    }
    match decide(&config, "refs/tags/v1.2") {
        CiDecision::Refused { reason } => assert!(reason.contains("semantic version"), "{reason}"),
        other => panic!("v1.2 must be refused, got {other:?}"),
    }
}

struct Files {
    _dir: tempfile::TempDir,
    ctx: GithubContext,
}

fn github(git_ref: &str) -> Files {
    let dir = tempfile::tempdir().expect("temp dir");
    let vars: Vars = [
        ("GITHUB_REF", git_ref.to_owned()),
        (
            "GITHUB_SHA",
            "0123456789abcdef0123456789abcdef01234567".to_owned(),
        ),
        ("GITHUB_ACTOR", "alice".to_owned()),
        ("GITHUB_REPOSITORY", "acme/kaapi".to_owned()),
        ("GITHUB_RUN_ID", "77".to_owned()),
        ("GITHUB_SERVER_URL", "https://github.com".to_owned()),
        (
            "GITHUB_OUTPUT",
            dir.path().join("output").display().to_string(),
        ),
        (
            "GITHUB_STEP_SUMMARY",
            dir.path().join("summary.md").display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let ctx = GithubContext::from_vars(&vars).expect("context");
    Files { _dir: dir, ctx }
}

fn plan(ctx: &GithubContext, version: Option<&str>) -> CiPlan {
    CiPlan {
        plan: DeployPlan {
            image: ImageSource::Build,
            meta: ReleaseMeta {
                commit: ctx.short_sha(),
                version: version.map(str::to_owned),
                author: ctx.actor.clone(),
                created_at: chrono::Utc::now(),
            },
            owner: LockOwner {
                holder: "github-actions run 77".to_owned(),
                url: ctx.run_url(),
            },
            migrations: Some(Migrations {
                service: "backend".to_owned(),
                command: vec!["migrate".into(), "up".into()],
                schema: None,
            }),
            force: false,
            services: Vec::new(),
        },
        image_origin: "built from this commit".to_owned(),
    }
}

fn read(path: &Option<std::path::PathBuf>) -> String {
    std::fs::read_to_string(path.as_ref().expect("file set")).expect("file written")
}

/// Asserts `actual` line by line, so a failure shows the first line that differs.
fn assert_lines(actual: &str, expected: &[&str]) {
    let lines: Vec<&str> = actual.lines().collect();
    for (i, (got, want)) in lines.iter().zip(expected).enumerate() {
        assert_eq!(got, want, "line {}:\n{actual}", i + 1);
    }
    assert_eq!(lines.len(), expected.len(), "line count:\n{actual}");
}

const NEW: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const OLD: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// The timeline (gantt and table) with every time shown as `T` (see [`summary_lines`]);
/// the phases in `failed` are marked failed.
fn timings(phases: &[&str], failed: &[&str]) -> Vec<String> {
    let mut rows = vec![
        "```mermaid".to_owned(),
        "gantt".to_owned(),
        "    dateFormat x".to_owned(),
        "    axisFormat %M:%S".to_owned(),
    ];
    for (i, p) in phases.iter().enumerate() {
        let tag = if failed.contains(p) { "crit" } else { "done" };
        rows.push(format!("    {p} :{tag}, p{i}, S, E"));
    }
    rows.push("```".to_owned());
    rows.push(String::new());
    rows.push("| Phase | Start | Duration | Outcome |".to_owned());
    rows.push("| --- | ---: | ---: | --- |".to_owned());
    rows.extend(phases.iter().map(|p| {
        let outcome = if failed.contains(p) {
            "**failed**"
        } else {
            "ok"
        };
        format!("| {p} | +T | T | {outcome} |")
    }));
    rows.push("| **total** | — | **T** | — |".to_owned());
    rows
}

/// A duration as the summary prints it: digits, a dot, one digit.
fn is_duration(text: &str) -> bool {
    text.split_once('.').is_some_and(|(whole, tenth)| {
        !whole.is_empty()
            && whole.chars().all(|c| c.is_ascii_digit())
            && tenth.len() == 1
            && tenth.chars().all(|c| c.is_ascii_digit())
    })
}

/// The summary file with every time replaced by `T` (a loaded machine may take a tenth of a
/// second anywhere), and the gantt's bar times by `S, E`; each must still be a time.
fn summary_lines(path: &Option<std::path::PathBuf>) -> String {
    read(path)
        .lines()
        .map(|line| {
            let numeric = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit());
            let parts: Vec<&str> = line.rsplitn(3, ", ").collect();
            if line.starts_with("    ")
                && parts.len() == 3
                && numeric(parts[0])
                && numeric(parts[1])
            {
                return format!("{}, S, E", parts[2]);
            }
            let Some(inner) = line.strip_prefix("| ").and_then(|l| l.strip_suffix(" |")) else {
                return line.to_owned();
            };
            let cells: Vec<String> = inner.split(" | ").map(time_as_t).collect();
            format!("| {} |", cells.join(" | "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `1.2`, `1.2s`, `+1.2s`, `**1.2s**` → `T`, `T`, `+T`, `**T**`; anything else unchanged.
fn time_as_t(cell: &str) -> String {
    let (bold, inner) = match cell.strip_prefix("**").and_then(|c| c.strip_suffix("**")) {
        Some(inner) => (true, inner),
        None => (false, cell),
    };
    let (plus, inner) = match inner.strip_prefix('+') {
        Some(rest) => ("+", rest),
        None => ("", inner),
    };
    let number = inner.strip_suffix('s').unwrap_or(inner);
    if !is_duration(number) {
        return cell.to_owned();
    }
    if bold {
        format!("**{plus}T**")
    } else {
        format!("{plus}T")
    }
}

fn deployed_rows(release: &str, digest: &str, version: &str) -> Vec<String> {
    let (digest_cell, image_cell) = if digest.is_empty() {
        ("—".to_owned(), "—".to_owned())
    } else {
        (
            format!("`{digest}`"),
            format!("`127.0.0.1:5000/kaapi-repo@{digest}`"),
        )
    };
    vec![
        "| | |".to_owned(),
        "| --- | --- |".to_owned(),
        "| Environment | `staging` |".to_owned(),
        format!("| Release | {release} |"),
        format!("| Image digest | {digest_cell} |"),
        format!("| Image | {image_cell} |"),
        "| Image source | built from this commit |".to_owned(),
        "| Commit | [`0123456789ab`](https://github.com/acme/kaapi/commit/0123456789abcdef0123456789abcdef01234567) |".to_owned(),
        format!("| Version | {version} |"),
        "| Actor | @alice |".to_owned(),
        "| Run | [77](https://github.com/acme/kaapi/actions/runs/77) |".to_owned(),
    ]
}

#[tokio::test]
async fn a_successful_deploy_writes_outputs_and_a_summary() {
    let files = github("refs/heads/main");
    let engine = FakeEngine::new(
        "staging",
        Script {
            image: Some(Ok(image(NEW))),
            migration_exit: Some(TaskExit {
                exit_code: 0,
                reason: None,
                diagnosis: None,
            }),
            rollouts: VecDeque::from([RolloutOutcome::Completed]),
            verify: Some(Ok(())),
            locked_by: None,
            ..Script::default()
        },
    )
    .with_release(1, OLD, "aaaaaaaaaaaa", Outcome::Succeeded);
    let ci = plan(&files.ctx, None);

    let outcome = run_ci(&engine, &ci, &files.ctx, &Silent, std::future::pending()).await;

    assert_eq!(outcome.exit_code, 0, "{outcome:?}");
    assert!(outcome.annotations.is_empty(), "{:?}", outcome.annotations);
    assert_lines(
        &read(&files.ctx.output_file),
        &[
            "environment=staging",
            "release=2",
            format!("image={NEW}").as_str(),
            "outcome=succeeded",
        ],
    );
    let mut expected = vec![
        "## ✅ `staging`: release 2 is live".to_owned(),
        String::new(),
    ];
    expected.extend(deployed_rows("2", NEW, "—"));
    expected.extend(
        [
            "",
            "### Steps",
            "",
            "| Step | Result |",
            "| --- | --- |",
            "| Migrations | passed (exit 0) |",
            "| Rollout | completed |",
            "| Verification | passed |",
            "| Rollback | not needed |",
            "",
            "### Timeline",
            "",
        ]
        .map(str::to_owned),
    );
    expected.extend(timings(
        &["lock", "build", "register", "migrate", "rollout", "verify"],
        &[],
    ));
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_lines(&summary_lines(&files.ctx.summary_file), &expected);
    assert_eq!(
        engine.calls(),
        vec![
            "acquire_lock github-actions run 77",
            "prepare_image Build 0123456789ab",
            "register_release 2 sha256:1111111111111111111111111111111111111111111111111111111111111111",
            "run_task release 2 backend migrate up",
            "roll_out 2",
            "verify",
            "record 2 succeeded",
            "release_lock lock-1",
        ]
    );
}

#[tokio::test]
async fn a_failed_migration_reports_what_failed_and_what_still_serves() {
    let files = github("refs/heads/main");
    let engine = FakeEngine::new(
        "staging",
        Script {
            image: Some(Ok(image(NEW))),
            migration_exit: Some(TaskExit {
                exit_code: 3,
                reason: None,
                diagnosis: None,
            }),
            rollouts: VecDeque::new(),
            verify: None,
            locked_by: None,
            ..Script::default()
        },
    )
    .with_release(1, OLD, "aaaaaaaaaaaa", Outcome::Succeeded);
    let ci = plan(&files.ctx, None);

    let outcome = run_ci(&engine, &ci, &files.ctx, &Silent, std::future::pending()).await;

    assert_eq!(outcome.exit_code, 1);
    assert_eq!(
        outcome.annotations,
        vec![
            "::error title=Deploy to staging failed::migrations exited with code 3; nothing serving was changed"
        ]
    );
    assert_lines(
        &read(&files.ctx.output_file),
        &[
            "environment=staging",
            "release=2",
            format!("image={NEW}").as_str(),
            "outcome=failed_migration",
        ],
    );
    let mut expected = vec![
        "## ❌ `staging`: deploy failed in the migrations".to_owned(),
        String::new(),
    ];
    expected.extend(deployed_rows("2", NEW, "—"));
    expected.extend(
        [
            "",
            "### Steps",
            "",
            "| Step | Result |",
            "| --- | --- |",
            "| Migrations | **failed** (exit 3) |",
            "| Rollout | not started |",
            "| Verification | not run |",
            "| Rollback | not needed |",
            "",
            "### Timeline",
            "",
        ]
        .map(str::to_owned),
    );
    expected.extend(timings(
        &["lock", "build", "register", "migrate"],
        &["migrate"],
    ));
    expected.extend(
        [
            "",
            "### What failed",
            "",
            "> migrations exited with code 3; nothing serving was changed",
            "",
            format!("**Serving now:** release 1 (`{OLD}`, commit `aaaaaaaaaaaa`)").as_str(),
        ]
        .map(str::to_owned),
    );
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_lines(&summary_lines(&files.ctx.summary_file), &expected);
    assert!(
        !engine.calls().iter().any(|c| c.starts_with("roll_out")),
        "nothing serving may change: {:?}",
        engine.calls()
    );
}

#[tokio::test]
async fn a_rolled_back_deploy_names_the_failure_and_the_release_serving_again() {
    let files = github("refs/tags/v1.2.3");
    let engine = FakeEngine::new(
        "staging",
        Script {
            image: Some(Ok(image(NEW))),
            migration_exit: Some(TaskExit {
                exit_code: 0,
                reason: None,
                diagnosis: None,
            }),
            rollouts: VecDeque::from([RolloutOutcome::Completed, RolloutOutcome::Completed]),
            verify: Some(Err("GET /api/v1/utils/health/ answered 500".to_owned())),
            locked_by: None,
            ..Script::default()
        },
    )
    .with_release(1, OLD, "aaaaaaaaaaaa", Outcome::Succeeded);
    let ci = plan(&files.ctx, Some("v1.2.3"));

    let outcome = run_ci(&engine, &ci, &files.ctx, &Silent, std::future::pending()).await;

    let failure = "verification failed: GET /api/v1/utils/health/ answered 500; rolled back automatically, release 1 serves";
    assert_eq!(outcome.exit_code, 1);
    assert_eq!(
        outcome.annotations,
        vec![format!("::error title=Deploy to staging failed::{failure}")]
    );
    assert_lines(
        &read(&files.ctx.output_file),
        &[
            "environment=staging",
            "release=2",
            format!("image={NEW}").as_str(),
            "outcome=rolled_back",
        ],
    );
    let mut expected = vec![
        "## ↩️ `staging`: deploy failed and was rolled back to release 1".to_owned(),
        String::new(),
    ];
    expected.extend(deployed_rows("2", NEW, "`v1.2.3`"));
    expected.extend(
        [
            "",
            "### Steps",
            "",
            "| Step | Result |",
            "| --- | --- |",
            "| Migrations | passed (exit 0) |",
            "| Rollout | completed |",
            "| Verification | **failed** |",
            "| Rollback | rolled back to release 1 |",
            "",
            "### Timeline",
            "",
        ]
        .map(str::to_owned),
    );
    expected.extend(timings(
        &[
            "lock", "build", "register", "migrate", "rollout", "verify", "rollback",
        ],
        &["verify"],
    ));
    expected.extend(
        [
            "",
            "### What failed",
            "",
            format!("> {failure}").as_str(),
            "",
            format!("**Serving now:** release 1 (`{OLD}`, commit `aaaaaaaaaaaa`)").as_str(),
        ]
        .map(str::to_owned),
    );
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_lines(&summary_lines(&files.ctx.summary_file), &expected);
    assert_eq!(
        engine.calls()[4..],
        [
            "roll_out 2",
            "verify",
            "roll_out 1",
            "record 2 rolled_back",
            "release_lock lock-1"
        ]
    );
}

#[tokio::test]
async fn an_automatic_rollback_whose_downgrade_failed_shows_the_schema_and_what_to_run() {
    let files = github("refs/heads/main");
    let engine = FakeEngine::new(
        "staging",
        Script {
            image: Some(Ok(image(NEW))),
            rollouts: VecDeque::from([RolloutOutcome::Completed, RolloutOutcome::Completed]),
            verify: Some(Err("GET /api/v1/utils/health/ answered 500".to_owned())),
            // The deploy's migrations leave 0003; the downgrade to 0002 fails.
            task_output: vec![("migrate current".to_owned(), "0003 (head)\n".to_owned())],
            failing_tasks: vec!["migrate down 0002".to_owned()],
            ..Script::default()
        },
    )
    .with_release(1, OLD, "aaaaaaaaaaaa", Outcome::Succeeded);
    engine.releases.lock().expect("releases")[0].schema_version = Some("0002".to_owned());
    let mut ci = plan(&files.ctx, None);
    if let Some(migrations) = ci.plan.migrations.as_mut() {
        migrations.schema = Some(SchemaCommands {
            service: "backend".to_owned(),
            version: vec!["migrate".into(), "current".into()],
            downgrade: Some(vec!["migrate".into(), "down".into(), "{version}".into()]),
        });
    }

    let outcome = run_ci(&engine, &ci, &files.ctx, &Silent, std::future::pending()).await;

    assert_eq!(outcome.exit_code, 1);
    let summary = read(&files.ctx.summary_file);
    let section = [
        "### Database schema",
        "",
        "| | |",
        "| --- | --- |",
        "| Left by the migrations | `0003` |",
        "| Restored release ran on | `0002` |",
        "| Downgrade | **failed** |",
        "",
        "> the downgrade to schema version 0002 exited with code 1; release 1 serves again, but the database stays at 0003, which its code predates: deploy a fix of release 2 (its migrations are already applied), or run `kaapi-deploy run staging --service backend --release 2 -- migrate down 0002` to bring the database back to 0002",
    ]
    .join("\n");
    assert!(summary.contains(&section), "{summary}");
    // After what serves now, which it qualifies.
    let serving = summary
        .find("**Serving now:** release 1")
        .expect("serving line");
    assert!(serving < summary.find(&section).unwrap_or(0), "{summary}");
}

#[tokio::test]
async fn a_held_lock_fails_with_an_annotation_and_no_release_output() {
    let files = github("refs/heads/main");
    let engine = FakeEngine::new(
        "staging",
        Script {
            locked_by: Some("bob@laptop (pid 9)".to_owned()),
            ..Script::default()
        },
    )
    .with_release(1, OLD, "aaaaaaaaaaaa", Outcome::Succeeded);
    let ci = plan(&files.ctx, None);

    let outcome = run_ci(&engine, &ci, &files.ctx, &Silent, std::future::pending()).await;

    assert_eq!(outcome.exit_code, 1);
    assert_eq!(outcome.annotations.len(), 1, "{:?}", outcome.annotations);
    assert!(
        outcome.annotations[0].starts_with(
            "::error title=Deploy to staging failed::environment `staging` is locked by bob@laptop (pid 9)"
        ),
        "{:?}",
        outcome.annotations
    );
    assert_lines(
        &read(&files.ctx.output_file),
        &["environment=staging", "outcome=error"],
    );
    let summary = read(&files.ctx.summary_file);
    assert_eq!(
        summary.lines().next(),
        Some("## ❌ `staging`: deploy failed in lock")
    );
    assert!(
        summary.contains(&format!(
            "**Serving now:** release 1 (`{OLD}`, commit `aaaaaaaaaaaa`)"
        )),
        "{summary}"
    );
    assert_eq!(engine.calls(), vec!["acquire_lock github-actions run 77"]);
}

#[test]
fn refs_that_deploy_nothing_still_leave_outputs_and_a_summary() {
    let config = config();
    let files = github("refs/heads/feature/x");
    let (code, annotations) =
        kaapi_ci::run::report_no_deploy(&files.ctx, &decide(&config, &files.ctx.git_ref));
    assert_eq!((code, annotations.len()), (0, 0));
    assert_lines(
        &read(&files.ctx.output_file),
        &["environment=", "outcome=skipped"],
    );
    assert_lines(
        &read(&files.ctx.summary_file),
        &[
            "## ⏭️ Nothing to deploy",
            "",
            "`refs/heads/feature/x`: branch `feature/x` does not trigger any environment",
        ],
    );

    let files = github("refs/tags/v1.2");
    let (code, annotations) =
        kaapi_ci::run::report_no_deploy(&files.ctx, &decide(&config, &files.ctx.git_ref));
    let reason =
        "tag `v1.2` is not a semantic version; tag releases as vMAJOR.MINOR.PATCH, e.g. v1.2.3";
    assert_eq!(code, 2);
    assert_eq!(
        annotations,
        [format!(
            "::error title=Cannot deploy refs/tags/v1.2::{reason}"
        )]
    );
    assert_lines(
        &read(&files.ctx.output_file),
        &["environment=", "outcome=refused"],
    );
    assert_lines(
        &read(&files.ctx.summary_file),
        &[
            "## ❌ Cannot deploy this ref",
            "",
            format!("`refs/tags/v1.2`: {reason}").as_str(),
        ],
    );
}

#[test]
fn a_deploy_that_cannot_start_leaves_an_error_output_summary_and_annotation() {
    let files = github("refs/tags/v1.2.3");
    let message =
        "`staging` has no successful release of commit 0123456789ab to promote;\ndeploy it first";
    let annotations = kaapi_ci::run::report_setup_failure(&files.ctx, "production", message);
    assert_eq!(
        annotations,
        ["::error title=Deploy to production failed::`staging` has no successful release of commit 0123456789ab to promote;%0Adeploy it first"]
    );
    assert_lines(
        &read(&files.ctx.output_file),
        &["environment=production", "outcome=error"],
    );
    assert_lines(
        &read(&files.ctx.summary_file),
        &[
            "## ❌ `production`: the deploy could not start",
            "",
            "> `staging` has no successful release of commit 0123456789ab to promote;",
            "> deploy it first",
        ],
    );
}
