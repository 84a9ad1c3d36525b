//! The complete example of docs/config.md loads, and the names it promises are the ones the
//! naming convention produces.

use std::path::Path;

use kaapi_core::config::parse;
use kaapi_core::naming::names;

fn complete_example() -> String {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.md");
    let text = std::fs::read_to_string(&docs).expect("docs/config.md is readable");
    let section = text
        .split("## A complete example (Kaapi)")
        .nth(1)
        .expect("the docs have a complete example");
    let block = section
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("the example is a toml block");
    block.to_owned()
}

#[test]
fn the_complete_example_loads_without_warnings() {
    let (config, warnings) = match parse(Path::new("docs/config.md"), &complete_example()) {
        Ok(loaded) => loaded,
        Err(e) => panic!("the documented example must load: {e}"),
    };
    assert!(warnings.is_empty(), "{warnings:?}");
    let staging = names(&config, "staging");
    assert_eq!(staging.cluster, "kaapi-staging-cluster");
    assert_eq!(staging.repository, "kaapi-staging-repo");
    let services: Vec<&str> = staging
        .services
        .values()
        .map(|s| s.service.as_str())
        .collect();
    assert_eq!(
        services,
        [
            "kaapi-staging-service",
            "kaapi-staging-worker-service",
            "kaapi-staging-flower-service"
        ]
    );
    let production = names(&config, "production");
    assert_eq!(production.cluster, "kaapi-cluster");
    assert_eq!(production.repository, "kaapi-repo");
    let services: Vec<&str> = production
        .services
        .values()
        .map(|s| s.service.as_str())
        .collect();
    assert_eq!(
        services,
        [
            "kaapi-service",
            "kaapi-worker-service",
            "kaapi-flower-service"
        ]
    );
    assert_eq!(config.replicas("production", "backend"), 3);
    assert_eq!(config.replicas("staging", "backend"), 1);
}
