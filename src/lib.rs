//! Switchboard: a service-discovery-driven proxy that reads Linkerd 1.x configs. This crate
//! holds the config model and the command-line tool; naming lives in `switchboard-namer-core`
//! and the namer crates.

pub mod admin;
pub mod build;
pub mod config;
pub mod demo;
pub mod metrics;
pub mod namerd;
pub mod proxy;
pub mod run;
pub mod transport;
