#![allow(dead_code)]

pub mod account;
pub mod moto;
