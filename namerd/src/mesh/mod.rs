//! Linkerd 1.7's `io.linkerd.mesh` gRPC API: its messages (`proto`), namerd's `io.l5d.mesh`
//! interface (`server`) and the linker's `io.l5d.mesh` interpreter (`client`).

pub mod client;
pub mod proto;
pub mod server;
