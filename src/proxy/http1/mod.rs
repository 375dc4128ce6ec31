//! HTTP/1.x, both ways, on the project's own codec over `httparse`: `head` parses and writes
//! message heads (framing decided strictly, request targets kept byte for byte), `decode`
//! frames bodies, `wire` owns a connection's bytes, `server` drives a client connection from
//! its one task, and `client` sends a request on an endpoint connection whose response body
//! then owns that connection until it ends (no connection task, no channel per request). Pools,
//! balancing and routing are the callers' (`session::http1`, `server`, `router`).
//!
//! Why not hyper here: hyper's HTTP/1 path refuses request targets nginx forwards (`{`, `"`,
//! `>`), keeps 16 KB of buffers per idle connection, and hands every client request to a
//! spawned connection task through a channel and a oneshot; a proxy that forwards heads it has
//! already parsed needs none of that. HTTP/2 stays on hyper and h2.

pub mod client;
pub mod decode;
pub mod head;
pub mod server;
pub mod wire;

use std::time::Duration;

use http::HeaderMap;

/// A response write that makes no progress for this long closes the connection: a client that
/// stops reading holds nothing for longer.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The message's `Content-Length`, when it has one valid value.
pub fn content_length_of(h: &HeaderMap) -> Option<u64> {
    let mut it = h.get_all(http::header::CONTENT_LENGTH).iter();
    let v = it.next()?;
    if it.next().is_some() {
        return None;
    }
    let s = v.to_str().ok()?.trim();
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `Connection: upgrade` with an `Upgrade` header.
pub fn is_upgrade_request(h: &HeaderMap) -> bool {
    h.contains_key(http::header::UPGRADE)
        && h.get_all(http::header::CONNECTION).iter().any(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
        })
}
