//! What a server connection lends to work that may outlive its task (an upgraded tunnel): a
//! hold on the server's `connections` count, and the server's drain signal, so that the tunnel
//! counts as open while it is and closes when the server drains. It knows nothing of HTTP.

use tokio::sync::watch;

use crate::metrics::{Gauge, GaugeHold};

/// One server connection, as seen by what it starts.
pub struct Conn {
    _open: GaugeHold,
    drain: watch::Receiver<bool>,
}

impl Conn {
    /// Counts a connection in `connections` until dropped; `drain` turns true when the server
    /// stops.
    pub fn new(connections: &Gauge, drain: watch::Receiver<bool>) -> Conn {
        Conn {
            _open: GaugeHold::new(connections),
            drain,
        }
    }

    /// Resolves once the server drains.
    pub async fn drained(&self) {
        let mut rx = self.drain.clone();
        let _ = rx.wait_for(|v| *v).await;
    }
}
