//! The integration tests of kaapi-ci: one binary, one module per area.

mod ci_run;
mod promote;
mod promote_iam;
mod workflow_install;
mod workflows;
