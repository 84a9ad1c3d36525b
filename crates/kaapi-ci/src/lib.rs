//! kaapi-deploy in CI: the GitHub Actions context and what a step writes back (`github`), the
//! decision a git ref leads to (`decide`), a CI deploy over any engine (`run`, `summary`),
//! native GitHub OIDC to AWS (`oidc`), the generated workflows (`workflows`) and build-once
//! image promotion between registries (`promote`, `registry`, `ecr`).

pub mod decide;
pub mod ecr;
pub mod github;
pub mod oidc;
pub mod promote;
pub mod registry;
pub mod run;
pub mod summary;
pub mod workflows;
