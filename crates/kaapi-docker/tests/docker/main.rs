//! The integration tests of kaapi-docker: one binary, one module per area.

mod engine_buildkit;
mod engine_image;
