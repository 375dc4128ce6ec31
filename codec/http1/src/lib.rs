//! HTTP/1.x without I/O, for Switchboard's HTTP/1 data path: `head` parses request and response
//! heads with `httparse` (framing decided strictly, request targets kept byte for byte) and
//! writes them; `decode` frames bodies (Content-Length, chunked, close-delimited) and encodes
//! them for the way out. Sockets, connections and routing live in the proxy
//! (`src/proxy/http1`). A crate of its own so its fuzz target builds without the proxy.

pub mod decode;
pub mod head;

pub use head::{content_length_of, is_upgrade_request};
