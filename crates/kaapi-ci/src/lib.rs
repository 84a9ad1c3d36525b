//! kaapi-deploy in CI: the GitHub Actions context and what a step writes back (`github`), the
//! decision a git ref leads to (`decide`), a CI deploy over any engine (`run`, `summary`), the
//! generated workflows (`workflows`) and build-once image promotion between registries
//! (`choice`, `promote`). The AWS side (OIDC credentials, ECR, the registry client) is kaapi-aws;
//! `promote` needs it and comes with the `aws` feature (default), the rest never does.

pub mod choice;
pub mod decide;
pub mod github;
#[cfg(feature = "aws")]
pub mod promote;
pub mod run;
pub mod summary;
pub mod workflows;
