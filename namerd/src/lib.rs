//! Switchboard's namerd: dtabs kept by namespace in a store (etcd, ZooKeeper, Consul KV or
//! memory), served over HTTP to linkers and to people, with a history of every version seen; and
//! the client side a linker uses to route by a namerd.
//!
//! - `store`: the stores, their compare-and-set writes and watches.
//! - `namespaces`: per-namespace dtabs for binding, the version history, and who has seen what.
//! - `api`: the JSON shapes of the HTTP API.
//! - `controller`: the `io.l5d.httpController` interface (the REST API of reference 1.24).
//! - `client`: the HTTP client of that API, and the `io.l5d.namerd.http` interpreter built on it.
//! - `mesh`: the `io.l5d.mesh` gRPC interface and the linker interpreter of the same name.
//! - `net`: plain or TLS connections, for namerd's listeners and the clients that reach it.
//!
//! Config decoding is the main crate's; this crate is handed built values.

pub mod api;
pub mod client;
pub mod controller;
pub mod mesh;
pub mod namespaces;
pub mod net;
pub mod store;
