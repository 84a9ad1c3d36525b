//! The AWS plumbing every command shares: the SDK configuration and credentials of an
//! environment (the standard chain, or GitHub's OIDC token in Actions: `config`, `oidc`), the
//! account ID (`account`), ECR logins (`ecr`), a client of the OCI distribution API
//! (`registry`), and errors that say in one line what is missing (`error`).

pub mod account;
pub mod config;
pub mod ecr;
pub mod error;
pub mod oidc;
pub mod registry;

pub use aws_config::SdkConfig;
pub use config::{load, process_vars, Vars};
pub use error::AwsError;
