//! Integration tests of kaapi-aws, one module per area, against moto and loopback fakes.

mod ecr;
mod errors;
mod oidc;
mod registry_copy;
