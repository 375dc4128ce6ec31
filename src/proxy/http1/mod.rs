//! HTTP/1.x, both ways, on the project's own codec over `httparse`: the `switchboard-codec-http1`
//! crate (`codec/http1`) parses and writes heads and frames bodies, `wire` owns a connection's
//! bytes, `server` drives a client connection from
//! its one task, and `client` sends a request on an endpoint connection whose response body
//! then owns that connection until it ends (no connection task, no channel per request). Pools,
//! balancing and routing are the callers' (`session::http1`, `server`, `router`).
//!
//! Why not hyper here: hyper's HTTP/1 path refuses request targets nginx forwards (`{`, `"`,
//! `>`), keeps 16 KB of buffers per idle connection, and hands every client request to a
//! spawned connection task through a channel and a oneshot; a proxy that forwards heads it has
//! already parsed needs none of that. HTTP/2 stays on hyper and h2.

pub mod client;
pub mod server;
pub mod wire;

pub use switchboard_codec_http1::{content_length_of, decode, head, is_upgrade_request};

use std::time::Duration;

/// A response write that makes no progress for this long closes the connection: a client that
/// stops reading holds nothing for longer.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);
