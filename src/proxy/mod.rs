//! The proxy's data path for `http` routers: servers accept requests, the router identifies
//! and binds them, clients balance them over endpoint pools. Naming itself lives in
//! `switchboard-namer-core`; configuration in `config`.

pub mod access_log;
pub mod balancer;
pub mod binder;
pub mod body;
pub mod client;
pub mod conn;
pub mod error;
pub mod guard;
pub mod http1;
pub mod identify;
pub mod policy;
pub mod recent;
pub mod router;
pub mod server;
pub mod session;
