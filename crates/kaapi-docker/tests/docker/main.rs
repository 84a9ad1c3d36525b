//! The integration tests of kaapi-docker: one binary, one module per area.

mod engine_image;
