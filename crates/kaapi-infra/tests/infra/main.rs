//! The integration tests of kaapi-infra: one binary, one module per area.

mod support;

mod check_against_moto;
mod iam_conformance;
mod json_secret_keys;
mod secrets_push_on_moto;
mod template_on_moto;
mod validators;
