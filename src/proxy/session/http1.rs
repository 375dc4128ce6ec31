//! The HTTP/1.1 session of one endpoint: a pool of connections kept alive and reused LIFO, with
//! Linkerd's `hostConnectionPool` limits (`maxSize`, `maxWaiters`, `idleTimeMs`). A connection
//! goes back to the pool only when its response body has ended (so it is idle and ready); a
//! response abandoned mid-body closes its connection. The pool does not balance or retry.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::sync::Notify;

use super::{PoolStats, SessionError};
use crate::proxy::body::request::ReqBody;
use crate::transport::Connector;

/// Default `hostConnectionPool.idleTimeMs` (Linkerd: forever). A connection idle for longer
/// is not reused: below the idle keep-alive timeouts of common servers (Switchboard's own
/// `headerReadTimeoutMs` 10 s, Node.js 5 s), so a request is not sent on a connection the
/// peer is closing.
pub const DEFAULT_IDLE_TIME_MS: u64 = 4_000;

/// Pool limits; `None` means unbounded / forever.
#[derive(Debug, Clone, Default)]
pub struct PoolConfig {
    pub max_size: Option<usize>,
    pub max_waiters: Option<usize>,
    pub idle_time: Option<Duration>,
}

pub struct Pool {
    addr: SocketAddr,
    cfg: PoolConfig,
    connector: Connector,
    idle: Mutex<Vec<(Conn, Instant)>>,
    open: AtomicUsize,
    waiters: AtomicUsize,
    released: Notify,
    stats: PoolStats,
    /// Set when the endpoint left its client's set or the client is gone: connections
    /// coming back are closed instead of kept.
    retired: std::sync::atomic::AtomicBool,
}

/// One open connection; dropping it closes the connection.
pub struct Conn {
    pub sender: SendRequest<ReqBody>,
    _open: OpenGuard,
}

/// Counts a connection as open until it closes. It holds the pool weakly: an idle connection
/// lives in its pool, and a strong reference back would keep both alive forever.
struct OpenGuard(std::sync::Weak<Pool>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.upgrade() {
            p.open.fetch_sub(1, Relaxed);
            p.stats.connections.add(-1);
            p.released.notify_one();
        }
    }
}

/// A checked-out connection that returns to the pool when released.
pub struct Checkin {
    pool: Arc<Pool>,
    conn: Conn,
}

impl Checkin {
    pub fn release(self) {
        self.pool.put(self.conn);
    }
}

impl Pool {
    pub fn new(
        addr: SocketAddr,
        cfg: PoolConfig,
        connector: Connector,
        stats: PoolStats,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            addr,
            cfg,
            connector,
            idle: Mutex::new(Vec::new()),
            open: AtomicUsize::new(0),
            waiters: AtomicUsize::new(0),
            released: Notify::new(),
            stats,
            retired: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Open connections (idle and busy).
    pub fn open(&self) -> usize {
        self.open.load(Relaxed)
    }

    fn put(self: &Arc<Self>, c: Conn) {
        if c.sender.is_closed() || self.retired.load(Relaxed) {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.push((c, Instant::now()));
        drop(idle);
        self.released.notify_one();
    }

    fn pop_idle(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((c, since)) = idle.pop() {
            let expired = self.cfg.idle_time.is_some_and(|t| since.elapsed() > t);
            if !expired && !c.sender.is_closed() {
                return Some(c);
            }
        }
        None
    }

    /// Drops idle connections past `idleTimeMs`.
    pub fn expire_idle(&self) {
        if let Some(t) = self.cfg.idle_time {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            idle.retain(|(c, since)| since.elapsed() <= t && !c.sender.is_closed());
        }
    }

    /// Closes every idle connection, and every busy one as it comes back: the endpoint left
    /// the address set, or its client is gone.
    pub fn retire(&self) {
        self.retired.store(true, Relaxed);
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// A ready connection: an idle one, or a new one within `maxSize`.
    pub async fn checkout(self: &Arc<Self>) -> Result<Checkin, SessionError> {
        loop {
            while let Some(mut c) = self.pop_idle() {
                // A pooled connection's last response has ended, so it is ready at once.
                if c.sender.ready().await.is_ok() {
                    return Ok(Checkin {
                        pool: Arc::clone(self),
                        conn: c,
                    });
                }
            }
            let max = self.cfg.max_size.unwrap_or(usize::MAX);
            let reserved = self
                .open
                .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
                .is_ok();
            if reserved {
                self.stats.connections.add(1);
                let guard = OpenGuard(Arc::downgrade(self));
                let conn = self.connect(guard).await?;
                return Ok(Checkin {
                    pool: Arc::clone(self),
                    conn,
                });
            }
            // At maxSize: wait for a connection to be released or closed.
            let waiting = self.waiters.fetch_add(1, Relaxed);
            let _w = WaiterGuard(self);
            if let Some(mw) = self.cfg.max_waiters {
                if waiting >= mw {
                    return Err(SessionError::TooManyWaiters {
                        addr: self.addr,
                        max: mw,
                    });
                }
            }
            self.released.notified().await;
        }
    }

    async fn connect(self: &Arc<Self>, guard: OpenGuard) -> Result<Conn, SessionError> {
        let addr = self.addr;
        let io = self.connector.connect(addr).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(|source| SessionError::Handshake { addr, source })?;
        self.stats.connects.incr();
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(%addr, error = %e, "endpoint connection ended");
            }
        });
        Ok(Conn {
            sender,
            _open: guard,
        })
    }
}

struct WaiterGuard<'a>(&'a Pool);

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Relaxed);
    }
}

impl Checkin {
    pub fn sender(&mut self) -> &mut SendRequest<ReqBody> {
        &mut self.conn.sender
    }
}
