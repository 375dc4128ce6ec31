//! The HTTP/1.1 session of one endpoint: a pool of connections kept alive and reused LIFO, with
//! Linkerd's `hostConnectionPool` limits (`maxSize`, `maxWaiters`, `idleTimeMs`). A connection
//! goes back to the pool only when its response body has ended (so it is idle and ready); a
//! response abandoned mid-body closes its connection. Requests go out on the project's own
//! codec (`proxy::http1::client`): no task per connection, the response body owns the
//! connection until it ends. The pool does not balance or retry.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

use super::{PoolStats, SendError, SessionError};
use crate::proxy::body::request::ReqBody;
use crate::proxy::http1::client::{self, ClientConn, RecvResponse, RecvResponseError};
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
    conn: ClientConn,
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
        if self.retired.load(Relaxed) {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.push((c, Instant::now()));
        drop(idle);
        self.released.notify_one();
    }

    fn pop_idle(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((mut c, since)) = idle.pop() {
            let expired = self.cfg.idle_time.is_some_and(|t| since.elapsed() > t);
            if !expired && c.conn.is_usable() {
                return Some(c);
            }
        }
        None
    }

    /// Drops idle connections past `idleTimeMs`.
    pub fn expire_idle(&self) {
        if let Some(t) = self.cfg.idle_time {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            idle.retain_mut(|(c, since)| since.elapsed() <= t && c.conn.is_usable());
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
            // A pooled connection's last response has ended, so it is ready at once.
            if let Some(c) = self.pop_idle() {
                return Ok(Checkin {
                    pool: Arc::clone(self),
                    conn: c,
                });
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
        let io = self.connector.connect(self.addr).await?;
        self.stats.connects.incr();
        Ok(Conn {
            conn: ClientConn::new(io),
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
    /// Sends `req` on the connection; the response body keeps the connection and gives it
    /// back to the pool when it ends.
    pub async fn send(self, req: Request<ReqBody>) -> Result<Response<H1Body>, SendError> {
        let Checkin {
            pool,
            conn: Conn { conn, _open: open },
        } = self;
        let mut req = req;
        // HTTP/1.1 requires a Host: an HTTP/1.0 client may have sent none (nginx sends its
        // upstream's name; the endpoint's address is the one name known here).
        if !req.headers().contains_key(http::header::HOST) {
            if let Ok(v) = http::HeaderValue::from_str(&pool.addr.to_string()) {
                req.headers_mut().insert(http::header::HOST, v);
            }
        }
        match client::send(conn, req).await {
            Ok(resp) => {
                let (parts, recv) = resp.into_parts();
                let mut body = H1Body {
                    recv,
                    back: Some((pool, open)),
                };
                if body.recv.is_end_stream() {
                    body.give_back();
                }
                Ok(Response::from_parts(parts, body))
            }
            Err(e) => Err(SendError {
                client_body: matches!(e.kind, client::SendErrorKind::Body(_)),
                error: Box::new(e.kind),
                message: e.request,
            }),
        }
    }
}

/// An endpoint's HTTP/1 response body; its connection goes back to the pool when it ends.
pub struct H1Body {
    recv: RecvResponse<ReqBody>,
    back: Option<(Arc<Pool>, OpenGuard)>,
}

impl H1Body {
    fn give_back(&mut self) {
        if let Some(conn) = self.recv.take_conn() {
            if let Some((pool, open)) = self.back.take() {
                pool.put(Conn { conn, _open: open });
            }
        }
    }
}

impl Body for H1Body {
    type Data = bytes::Bytes;
    type Error = RecvResponseError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<bytes::Bytes>, RecvResponseError>>> {
        let this = self.get_mut();
        let r = std::pin::Pin::new(&mut this.recv).poll_frame(cx);
        match &r {
            std::task::Poll::Ready(None) => this.give_back(),
            std::task::Poll::Ready(Some(Ok(_))) if this.recv.is_end_stream() => this.give_back(),
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.recv.size_hint()
    }
}
