//! The HTTP/2 session of one endpoint: multiplexed connections, each carrying up to
//! `STREAMS_PER_CONNECTION` streams at once before another is opened; liveness by PING
//! (`PING_INTERVAL`, closed after `PING_TIMEOUT` without an answer); a connection that received
//! GOAWAY (or closed) takes no new streams while the ones it has finish. A stream counts against
//! its connection until its response body ends or is dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::{PoolStats, SessionError};
use crate::metrics::GaugeHold;
use crate::proxy::body::request::ReqBody;
use crate::transport::Connector;

/// Streams in flight on one connection before another is opened. hyper does not expose the
/// peer's `SETTINGS_MAX_CONCURRENT_STREAMS`, so this is RFC 9113's recommended minimum (100),
/// which every conforming peer allows; streams beyond a peer's own lower limit wait in h2.
pub const STREAMS_PER_CONNECTION: usize = 100;
/// How often an idle or busy connection is PINGed.
pub const PING_INTERVAL: Duration = Duration::from_secs(10);
/// A PING unanswered for this long closes the connection.
pub const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// The h2 flow-control settings of a client (section 1.6's keys).
#[derive(Debug, Clone, Default)]
pub struct H2Settings {
    pub initial_stream_window: Option<u32>,
    pub initial_connection_window: Option<u32>,
    pub max_frame_size: Option<u32>,
    pub max_header_list_size: Option<u32>,
    pub header_table_size: Option<u32>,
}

struct Conn {
    sender: SendRequest<ReqBody>,
    streams: Arc<AtomicUsize>,
}

pub struct H2Session {
    addr: SocketAddr,
    connector: Connector,
    settings: H2Settings,
    stats: PoolStats,
    conns: Mutex<Vec<Conn>>,
    /// One connection attempt at a time; others wait for it and share the result.
    connecting: tokio::sync::Mutex<()>,
    open: Arc<AtomicUsize>,
    retired: AtomicBool,
}

/// A stream's place on its connection, held until its response ends.
pub struct Stream {
    pub(super) sender: SendRequest<ReqBody>,
    streams: Arc<AtomicUsize>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.streams.fetch_sub(1, Relaxed);
    }
}

impl H2Session {
    pub fn new(
        addr: SocketAddr,
        connector: Connector,
        settings: H2Settings,
        stats: PoolStats,
    ) -> Arc<H2Session> {
        Arc::new(H2Session {
            addr,
            connector,
            settings,
            stats,
            conns: Mutex::new(Vec::new()),
            connecting: tokio::sync::Mutex::new(()),
            open: Arc::new(AtomicUsize::new(0)),
            retired: AtomicBool::new(false),
        })
    }

    pub fn open(&self) -> usize {
        self.open.load(Relaxed)
    }

    pub fn retire(&self) {
        self.retired.store(true, Relaxed);
        // Dropping the senders lets each connection close once its streams end.
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// A stream on a live connection with room, else on a new connection.
    fn pick(&self) -> Option<Stream> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.retain(|c| !c.sender.is_closed());
        let c = conns
            .iter()
            .filter(|c| c.sender.is_ready() && c.streams.load(Relaxed) < STREAMS_PER_CONNECTION)
            .min_by_key(|c| c.streams.load(Relaxed))?;
        c.streams.fetch_add(1, Relaxed);
        Some(Stream {
            sender: c.sender.clone(),
            streams: Arc::clone(&c.streams),
        })
    }

    pub async fn checkout(&self) -> Result<Stream, SessionError> {
        if let Some(s) = self.pick() {
            return Ok(s);
        }
        let _one = self.connecting.lock().await;
        // Another request may have connected while this one waited.
        if let Some(s) = self.pick() {
            return Ok(s);
        }
        let sender = self.connect().await?;
        let streams = Arc::new(AtomicUsize::new(1));
        let stream = Stream {
            sender: sender.clone(),
            streams: Arc::clone(&streams),
        };
        if !self.retired.load(Relaxed) {
            self.conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Conn { sender, streams });
        }
        Ok(stream)
    }

    async fn connect(&self) -> Result<SendRequest<ReqBody>, SessionError> {
        let addr = self.addr;
        let io = self.connector.connect(addr).await?;
        let mut b = http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .keep_alive_interval(PING_INTERVAL)
            .keep_alive_timeout(PING_TIMEOUT)
            .keep_alive_while_idle(true);
        let s = &self.settings;
        if let Some(w) = s.initial_stream_window {
            b.initial_stream_window_size(w);
        }
        if let Some(w) = s.initial_connection_window {
            b.initial_connection_window_size(w);
        }
        if let Some(f) = s.max_frame_size {
            b.max_frame_size(f);
        }
        if let Some(h) = s.max_header_list_size {
            b.max_header_list_size(h);
        }
        if let Some(t) = s.header_table_size {
            b.header_table_size(t);
        }
        let (sender, conn) = b
            .handshake(TokioIo::new(io))
            .await
            .map_err(|source| SessionError::Handshake { addr, source })?;
        self.stats.connects.incr();
        let hold = GaugeHold::new(&self.stats.connections);
        let open = Arc::clone(&self.open);
        open.fetch_add(1, Relaxed);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "h2 endpoint connection ended");
            }
            open.fetch_sub(1, Relaxed);
            drop(hold);
        });
        Ok(sender)
    }
}
