//! The integration tests of kaapi-core: one binary, one module per area.

mod docs_example;
mod naming_and_triggers;
mod never_panics;
mod pipeline;
mod schema_rollback;
