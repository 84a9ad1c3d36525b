//! kaapi-deploy in CI: the GitHub Actions context and what a step writes back (`github`), the
//! decision a git ref leads to (`decide`), a CI deploy over any engine (`run`, `summary`), the
//! generated workflows (`workflows`) and build-once image promotion between registries
//! (`promote`). The AWS side (OIDC credentials, ECR, the registry client) is kaapi-aws.

pub mod decide;
pub mod github;
pub mod promote;
pub mod run;
pub mod summary;
pub mod workflows;
