//! The integration tests of kaapi-infra: one binary, one module per area.

mod support;

mod check_against_moto;
mod secrets_push_on_moto;
mod template_on_moto;
mod validators;
