#![allow(dead_code)]

pub mod account;
pub use kaapi_testkit::moto;
