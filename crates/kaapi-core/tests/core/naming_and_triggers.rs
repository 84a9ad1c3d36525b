//! The naming convention (every default and every override) and git-ref → environment
//! resolution, on configs parsed by the real loader.

use std::path::Path;

use kaapi_core::config::{parse, Config};
use kaapi_core::naming::{names, stem};
use kaapi_core::trigger::{pattern_matches, resolve, validate_pattern, Resolution};

const BASE: &str = r#"
app = "kaapi"
[image]
context = "backend"
[services.backend]
port = 80
[services.worker]
command = "celery worker"
[services.flower]
command = "celery flower"
[environments.local]
engine = "docker"
[environments.staging]
engine = "ecs"
region = "eu-west-1"
trigger = { branch = "main" }
[environments.production]
engine = "ecs"
region = "eu-west-1"
trigger = { tags = "v*" }
promote_from = "staging"
"#;

fn config(text: &str) -> Config {
    match parse(Path::new("deploy.toml"), text) {
        Ok((config, _)) => config,
        Err(e) => panic!("fixture must load: {e}"),
    }
}

#[test]
fn production_uses_the_bare_prefix() {
    let n = names(&config(BASE), "production");
    assert_eq!(n.cluster, "kaapi-cluster");
    assert_eq!(n.repository, "kaapi-repo");
    let backend = n.service("backend").expect("backend names");
    assert_eq!(backend.service, "kaapi-service");
    assert_eq!(backend.family, "kaapi-backend");
    assert_eq!(backend.log_group, "/ecs/kaapi-cluster/kaapi-service");
}

#[test]
fn staging_and_any_other_environment_insert_their_name() {
    let config = config(BASE);
    let n = names(&config, "staging");
    assert_eq!(n.cluster, "kaapi-staging-cluster");
    assert_eq!(n.repository, "kaapi-staging-repo");
    assert_eq!(n.services["backend"].service, "kaapi-staging-service");
    assert_eq!(n.services["backend"].family, "kaapi-staging-backend");
    let local = names(&config, "local");
    assert_eq!(local.cluster, "kaapi-local-cluster");
    assert_eq!(local.services["backend"].service, "kaapi-local-service");
    assert_eq!(stem("kaapi", "qa"), "kaapi-qa");
    assert_eq!(stem("kaapi", "production"), "kaapi");
}

#[test]
fn other_services_get_their_own_service_family_and_log_group() {
    let config = config(BASE);
    let staging = names(&config, "staging");
    let worker = &staging.services["worker"];
    assert_eq!(worker.service, "kaapi-staging-worker-service");
    assert_eq!(worker.family, "kaapi-staging-worker");
    assert_eq!(
        worker.log_group,
        "/ecs/kaapi-staging-cluster/kaapi-staging-worker-service"
    );
    let production = names(&config, "production");
    assert_eq!(
        production.services["flower"].service,
        "kaapi-flower-service"
    );
    assert_eq!(production.services["flower"].family, "kaapi-flower");
    assert_eq!(
        production.services.keys().collect::<Vec<_>>(),
        ["backend", "worker", "flower"]
    );
}

#[test]
fn the_first_web_service_owns_the_service_name_wherever_it_is_declared() {
    let text = BASE.replace(
        "[services.backend]\nport = 80\n",
        "[services.api]\nport = 81\n[services.backend]\nport = 80\n",
    );
    let text = text.replacen(
        "[services.api]",
        "[services.jobs]\ncommand = \"x\"\n[services.api]",
        1,
    );
    let n = names(&config(&text), "production");
    assert_eq!(n.services["jobs"].service, "kaapi-jobs-service");
    assert_eq!(n.services["api"].service, "kaapi-service");
    assert_eq!(n.services["backend"].service, "kaapi-backend-service");
}

#[test]
fn every_override_wins_and_log_groups_follow_the_overrides() {
    let text = format!(
        "{BASE}\n[environments.production.names]\ncluster = \"prod-main\"\nrepository = \"shared/kaapi\"\nservices = {{ backend = \"kaapi-web\", worker = \"kaapi-celery\" }}\nfamilies = {{ backend = \"kaapi-web-task\", flower = \"flower-task\" }}\n"
    );
    let config = config(&text);
    let n = names(&config, "production");
    assert_eq!(n.cluster, "prod-main");
    assert_eq!(n.repository, "shared/kaapi");
    assert_eq!(n.services["backend"].service, "kaapi-web");
    assert_eq!(n.services["backend"].family, "kaapi-web-task");
    assert_eq!(n.services["backend"].log_group, "/ecs/prod-main/kaapi-web");
    assert_eq!(n.services["worker"].service, "kaapi-celery");
    assert_eq!(n.services["worker"].family, "kaapi-worker");
    assert_eq!(n.services["flower"].service, "kaapi-flower-service");
    assert_eq!(n.services["flower"].family, "flower-task");
    // Overrides of one environment leave the others alone.
    let staging = names(&config, "staging");
    assert_eq!(staging.cluster, "kaapi-staging-cluster");
    assert_eq!(staging.services["backend"].service, "kaapi-staging-service");
}

fn deploys(resolution: Resolution, environment: &str, version: Option<&str>) {
    assert_eq!(
        resolution,
        Resolution::Deploy {
            environment: environment.to_owned(),
            version: version.map(str::to_owned)
        }
    );
}

fn reason(resolution: &Resolution) -> &str {
    match resolution {
        Resolution::Nothing { reason } | Resolution::Refused { reason } => reason,
        Resolution::Deploy { .. } => panic!("expected no deploy, got {resolution:?}"),
    }
}

#[test]
fn main_deploys_staging_and_release_tags_deploy_production() {
    let config = config(BASE);
    deploys(resolve(&config, "refs/heads/main"), "staging", None);
    deploys(
        resolve(&config, "refs/tags/v1.2.3"),
        "production",
        Some("v1.2.3"),
    );
    deploys(
        resolve(&config, "refs/tags/v10.0.0+build.5"),
        "production",
        Some("v10.0.0+build.5"),
    );
}

#[test]
fn other_branches_pull_requests_and_pre_releases_deploy_nothing() {
    let config = config(BASE);
    for git_ref in [
        "refs/heads/feature/x",
        "refs/heads/mainline",
        "refs/pull/1/merge",
        "refs/tags/v1.2.3-rc.1",
    ] {
        let r = resolve(&config, git_ref);
        assert!(matches!(r, Resolution::Nothing { .. }), "{git_ref}: {r:?}");
    }
    assert!(reason(&resolve(&config, "refs/tags/v1.2.3-rc.1")).contains("pre-release"));
    assert!(reason(&resolve(&config, "refs/pull/1/merge")).contains("pull requests"));
    assert!(reason(&resolve(&config, "refs/heads/feature/x")).contains("feature/x"));
}

#[test]
fn tags_that_are_not_semantic_versions_are_refused_with_the_reason() {
    let config = config(BASE);
    let v12 = resolve(&config, "refs/tags/v1.2");
    assert!(matches!(v12, Resolution::Refused { .. }), "{v12:?}");
    assert!(reason(&v12).contains("not a semantic version"), "{v12:?}");
    let latest = resolve(&config, "refs/tags/latest");
    assert!(matches!(latest, Resolution::Refused { .. }), "{latest:?}");
    assert!(reason(&latest).contains("v1.2.3"), "{latest:?}");
}

#[test]
fn custom_patterns_resolve() {
    let text = BASE
        .replace(
            "trigger = { branch = \"main\" }",
            "trigger = { branch = \"release/*\" }",
        )
        .replace(
            "trigger = { tags = \"v*\" }",
            "trigger = { tags = \"api-*\" }",
        );
    let config = config(&text);
    deploys(
        resolve(&config, "refs/heads/release/2024-06"),
        "staging",
        None,
    );
    assert!(matches!(
        resolve(&config, "refs/heads/main"),
        Resolution::Nothing { .. }
    ));
    deploys(
        resolve(&config, "refs/tags/api-1.4.0"),
        "production",
        Some("api-1.4.0"),
    );
    deploys(
        resolve(&config, "refs/tags/api-v2.0.1"),
        "production",
        Some("api-v2.0.1"),
    );
    assert!(matches!(
        resolve(&config, "refs/tags/api-2"),
        Resolution::Refused { .. }
    ));
    assert!(matches!(
        resolve(&config, "refs/tags/v1.2.3"),
        Resolution::Refused { .. }
    ));
}

#[test]
fn patterns_match_like_globs_and_bad_patterns_are_refused() {
    assert!(pattern_matches("v*", "v1.2.3"));
    assert!(pattern_matches("main", "main"));
    assert!(!pattern_matches("main", "main2"));
    assert!(pattern_matches("release/*/final", "release/1.2/final"));
    assert!(!pattern_matches("a*a", "a"));
    assert!(pattern_matches("*", ""));
    for bad in [
        "",
        "refs/heads/main",
        "feat ure",
        "v[0-9]*",
        "a..b",
        "x/",
        "a**",
    ] {
        assert!(validate_pattern(bad).is_err(), "{bad:?}");
    }
    assert!(validate_pattern("release/*").is_ok());
}
