//! A router's servers: bound listeners serving HTTP/1.1 (and 1.0) on the project's own codec
//! (`proxy::http1::server`) or HTTP/2 (with an HTTP/1.1 fallback) on hyper, each connection
//! on its own task, `maxConcurrentRequests` enforced without a queue (over the limit is 503 at
//! once, as Linkerd's `AsyncSemaphore(n, 0)`), per-server metrics, upgrades tunnelled, and a
//! graceful stop: stop accepting, let in-flight requests finish up to a deadline.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::body::{ClientBody, RespBody};
use super::conn::Conn;
use super::error::RouteError;
use super::http1::server::{self as http1_server, RecvBody, ResponseFuture, ServerConfig};
use super::router::Router;
use super::session::Protocol;
use crate::metrics::{Counter, Gauge, RequestStats, Scope};
use crate::transport::{Acceptor, Io};

/// A server's settings, from its config.
#[derive(Clone)]
pub struct ServerSettings {
    pub access_log: Option<super::access_log::AccessLog>,
    pub recent: Option<super::recent::RecentRequests>,
    pub max_concurrent: Option<u32>,
    pub max_call_depth: u32,
    pub clear_context: bool,
    pub timeout: Option<Duration>,
    /// How long a client may take to send a request head, and to start the next one on a
    /// kept-alive connection; then the connection is closed.
    pub header_read_timeout: Duration,
    /// The longest request head buffered: the router's head limits plus room for the rest.
    pub max_buf_size: usize,
    /// Open connections beyond which new ones are closed at once (`connections_refused`).
    pub max_connections: usize,
    /// What the server speaks: `Http1` serves HTTP/1.x; `H2` serves HTTP/2 (prior knowledge,
    /// or ALPN `h2`) and HTTP/1.1 from clients that send no HTTP/2 preface.
    pub protocol: Protocol,
    pub h2: H2ServerSettings,
    /// The server's TLS (`None`: plaintext).
    pub tls: Option<Arc<crate::transport::tls::ServerTls>>,
}

/// hyper's default bound on an h2 request's header list, used when `maxHeaderListBytes` is unset.
pub const DEFAULT_H2_MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// An h2 server's settings (section 1.6).
#[derive(Clone, Debug, Default)]
pub struct H2ServerSettings {
    pub max_concurrent_streams: Option<u32>,
    pub initial_stream_window: Option<u32>,
    pub max_frame_size: Option<u32>,
    pub max_header_list_size: Option<u32>,
}

/// Default `maxConcurrentStreamsPerConnection` of an h2 server (Linkerd's).
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 1000;

/// Default `maxConnections` of a server.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;

/// Default bound on reading one request head (and on an idle keep-alive connection).
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;

/// hyper's read buffer for heads within `max_headers_kb` and `max_initial_line_kb`.
pub fn buf_size_for(max_headers_kb: u32, max_initial_line_kb: u32) -> usize {
    // hyper's minimum is 8 KB; a little room past the limits lets the router answer 414/431
    // with Linkerd's error texts instead of hyper closing on a bare 431.
    ((max_headers_kb as usize + max_initial_line_kb as usize) * 1024 + 1024).max(8192)
}

struct ServerCtx {
    router: Arc<Router>,
    acceptor: Acceptor,
    settings: ServerSettings,
    limit: Option<Semaphore>,
    stats: RequestStats,
    connects: Counter,
    connections: Gauge,
    refused: Counter,
}

/// A bound server, ready to serve.
pub struct BoundServer {
    pub addr: SocketAddr,
    listener: TcpListener,
    ctx: Arc<ServerCtx>,
}

/// Signals a server to stop; dropping it stops nothing.
#[derive(Clone)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown {
            tx: watch::channel(false).0,
        }
    }
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }
    fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }
    pub async fn wait(&self) {
        let mut rx = self.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl BoundServer {
    /// Binds `addr` (port 0 picks one). The server scope is `rt/<router>/server/<ip>/<port>`.
    pub async fn bind(
        addr: SocketAddr,
        router: Arc<Router>,
        settings: ServerSettings,
        router_scope: &Scope,
    ) -> std::io::Result<BoundServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let scope = router_scope
            .scope("server")
            .scope(&format!("{}/{}", addr.ip(), addr.port()));
        let acceptor = Acceptor {
            tls: settings
                .tls
                .clone()
                .map(|t| (t, crate::transport::TlsStats::new(&scope))),
        };
        let ctx = Arc::new(ServerCtx {
            router,
            acceptor,
            limit: settings.max_concurrent.map(|n| Semaphore::new(n as usize)),
            settings,
            stats: RequestStats::new(scope.clone()),
            connects: scope.counter("connects"),
            connections: scope.gauge("connections"),
            refused: scope.counter("connections_refused"),
        });
        Ok(BoundServer {
            addr,
            listener,
            ctx,
        })
    }

    /// Serves until `shutdown`, then drains connections for at most `grace`.
    pub async fn serve(self, shutdown: Shutdown, grace: Duration) {
        let mut stop = shutdown.subscribe();
        let (drain_tx, drain_rx) = watch::channel(false);
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = async { let _ = stop.wait_for(|v| *v).await; } => break,
                accepted = self.listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    if self.ctx.connections.get() >= self.ctx.settings.max_connections as i64 {
                        // Over the limit: closed before any byte is read, and counted.
                        self.ctx.refused.incr();
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let ctx = Arc::clone(&self.ctx);
                    // Counted at accept, so a burst of connections cannot pass the limit
                    // before their tasks run; held by the connection's task and by any
                    // upgraded tunnel that outlives it.
                    let open = Arc::new(Conn::new(&ctx.connections, drain_rx.clone()));
                    let mut drain = drain_rx.clone();
                    conns.spawn(async move {
                        ctx.connects.incr();
                        // Boxed, as the h2 path below: the task's future is the size of the
                        // largest state it may be in, and an idle HTTP/1 connection should
                        // not carry a TLS handshake's or an h2 connection's worth of it.
                        let io = match Box::pin(ctx.acceptor.accept(stream)).await {
                            Ok(io) => io,
                            Err(e) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                        };
                        let (svc_ctx, svc_open) = (Arc::clone(&ctx), Arc::clone(&open));
                        // An upgrade may outlive this connection's task: its tunnel takes a
                        // hold on the connection count (`open`).
                        match ctx.settings.protocol {
                            Protocol::Http1 => {
                                // One request at a time on the connection's own task; the
                                // request's future is boxed only while a request is in flight,
                                // so an idle connection's task stays small.
                                let handler = move |req: Request<RecvBody>| {
                                    let (ctx, open) = (Arc::clone(&svc_ctx), Arc::clone(&svc_open));
                                    let req = req.map(ClientBody::H1);
                                    Box::pin(async move { handle(ctx, req, peer, &open).await })
                                        as ResponseFuture<RespBody>
                                };
                                let cfg = ServerConfig {
                                    header_read_timeout: ctx.settings.header_read_timeout,
                                    max_head_bytes: ctx.settings.max_buf_size,
                                };
                                http1_server::serve(io, cfg, handler, &mut drain).await
                            }
                            Protocol::H2 => {
                                // hyper spawns a task per h2 stream, moving the future into
                                // it: boxed, that is a pointer instead of the whole request
                                // state (a memcpy that took 4% of the CPU under h2load).
                                let svc = service_fn(move |req: Request<Incoming>| {
                                    let (ctx, open) = (Arc::clone(&svc_ctx), Arc::clone(&svc_open));
                                    let req = req.map(ClientBody::Hyper);
                                    Box::pin(async move {
                                        Ok::<_, Infallible>(handle(ctx, req, peer, &open).await)
                                    })
                                });
                                Box::pin(serve_h2(&ctx, io, svc, &mut drain, peer)).await
                            }
                        }
                        drop(open);
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        drop(self.listener);
        drain_tx.send_replace(true);
        let deadline = Instant::now() + grace;
        while !conns.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, conns.join_next()).await.is_err() {
                tracing::warn!(open = conns.len(), "grace period over; closing connections");
                conns.abort_all();
                break;
            }
        }
    }
}

/// Runs a connection's future until it ends or the server drains; on drain, stops it
/// gracefully (no new requests, in-flight ones finish).
macro_rules! until_drained {
    ($conn:expr, $drain:expr, $peer:expr) => {{
        let conn = $conn;
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(peer = %$peer, error = %e, "connection ended");
                }
            }
            _ = async { let _ = $drain.wait_for(|v| *v).await; } => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.as_mut().await;
            }
        }
    }};
}

/// What a connection serves its requests with.
trait ProxyService:
    hyper::service::Service<
        Request<Incoming>,
        Response = Response<RespBody>,
        Error = Infallible,
        Future: Send + 'static,
    > + Send
    + 'static
{
}

impl<S> ProxyService for S where
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<RespBody>,
            Error = Infallible,
            Future: Send + 'static,
        > + Send
        + 'static
{
}

async fn serve_h2<S: ProxyService>(
    ctx: &ServerCtx,
    io: Io,
    svc: S,
    drain: &mut watch::Receiver<bool>,
    peer: SocketAddr,
) {
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    b.http1()
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(ctx.settings.header_read_timeout)
        .max_buf_size(ctx.settings.max_buf_size);
    let h = &ctx.settings.h2;
    let mut h2 = b.http2();
    h2.timer(TokioTimer::new())
        .keep_alive_interval(Some(super::session::h2::PING_INTERVAL))
        .keep_alive_timeout(super::session::h2::PING_TIMEOUT)
        .max_concurrent_streams(
            h.max_concurrent_streams
                .unwrap_or(DEFAULT_MAX_CONCURRENT_STREAMS),
        );
    if let Some(w) = h.initial_stream_window {
        h2.initial_stream_window_size(w);
    }
    if let Some(f) = h.max_frame_size {
        h2.max_frame_size(f);
    }
    if let Some(l) = h.max_header_list_size {
        h2.max_header_list_size(l);
    }
    // ALPN `h2` over TLS: HTTP/2 only.
    let h2_only = io.alpn() == Some(crate::transport::ALPN_H2);
    let b = if h2_only { b.http2_only() } else { b };
    // Neither hyper-util's protocol detection nor the h2 handshake has a timer: a client that
    // sends less than the preface and a SETTINGS frame header within `headerReadTimeout` is
    // closed, as an HTTP/1 client that sends no head is.
    let read = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let io = CountReads {
        io,
        read: Arc::clone(&read),
    };
    // A request received counts as a live client too (a short HTTP/1 one on an h2 router).
    let svc = MarkRequests {
        inner: svc,
        seen: Arc::clone(&read),
    };
    let wait = ctx.settings.header_read_timeout;
    let stalled = async move {
        tokio::time::sleep(wait).await;
        if read.load(std::sync::atomic::Ordering::Relaxed) >= H2_OPENING_BYTES {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = async { until_drained!(b.serve_connection(TokioIo::new(io), svc), drain, peer) } => {}
        _ = stalled => tracing::debug!(%peer, "no HTTP/2 preface in time; connection closed"),
    }
}

/// The client preface (24 bytes) and a frame header (9): what a live HTTP/2 client sends first.
const H2_OPENING_BYTES: usize = 24 + 9;

/// A service that marks the connection live once a request reaches it.
struct MarkRequests<S> {
    inner: S,
    seen: Arc<std::sync::atomic::AtomicUsize>,
}

impl<S: hyper::service::Service<Request<Incoming>>> hyper::service::Service<Request<Incoming>>
    for MarkRequests<S>
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;
    fn call(&self, req: Request<Incoming>) -> S::Future {
        self.seen
            .fetch_max(H2_OPENING_BYTES, std::sync::atomic::Ordering::Relaxed);
        self.inner.call(req)
    }
}

/// An `Io` counting the bytes read from it.
struct CountReads {
    io: Io,
    read: Arc<std::sync::atomic::AtomicUsize>,
}

impl tokio::io::AsyncRead for CountReads {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.read.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }
}

impl tokio::io::AsyncWrite for CountReads {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        b: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, b)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

async fn handle(
    ctx: Arc<ServerCtx>,
    req: Request<ClientBody>,
    peer: SocketAddr,
    open: &Arc<Conn>,
) -> Response<RespBody> {
    let sampled = ctx.settings.recent.as_ref().is_some_and(|r| r.sample());
    let wanted = ctx.settings.access_log.is_some() || sampled;
    let started = Instant::now();
    let logged = wanted.then(|| {
        let h = |n: http::header::HeaderName| {
            req.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        (
            req.method().to_string(),
            req.uri().to_string(),
            req.version(),
            h(http::header::REFERER),
            h(http::header::USER_AGENT),
        )
    });
    let host = sampled
        .then(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        })
        .flatten();
    let resp = handle_inner(&ctx, req, open).await;
    if let Some((method, uri, version, referer, ua)) = logged {
        if let Some(log) = &ctx.settings.access_log {
            log.log(&super::access_log::Entry {
                remote: peer,
                method: &method,
                uri: &uri,
                version,
                status: resp.status().as_u16(),
                size: http_body::Body::size_hint(resp.body()).exact(),
                referer: referer.as_deref(),
                user_agent: ua.as_deref(),
            });
        }
        if let (true, Some(recent)) = (sampled, &ctx.settings.recent) {
            recent.record(super::recent::Record {
                at_ms: 0,
                router: ctx.router.label.clone(),
                remote: peer.to_string(),
                method,
                uri,
                host,
                status: resp.status().as_u16(),
                latency_ms: started.elapsed().as_millis() as u64,
            });
        }
    }
    resp
}

/// Counts a request as pending until it answers; a request abandoned mid-way (the client
/// went away, or the shutdown grace ran out) is recorded as a failure when dropped.
struct Pending<'a> {
    ctx: &'a ServerCtx,
    start: Instant,
    done: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.ctx.stats.pending.add(-1);
        if !self.done {
            self.ctx
                .stats
                .record(None, self.start.elapsed().as_millis() as u64, false);
        }
    }
}

async fn handle_inner(
    ctx: &Arc<ServerCtx>,
    req: Request<ClientBody>,
    open: &Arc<Conn>,
) -> Response<RespBody> {
    let start = Instant::now();
    // gRPC exists only over HTTP/2 (h2 routers); HTTP/1 routers skip the header lookups.
    let grpc = ctx.settings.protocol == Protocol::H2 && is_grpc(&req);
    ctx.stats.pending.add(1);
    let mut pending = Pending {
        ctx,
        start,
        done: false,
    };
    let _permit = match &ctx.limit {
        Some(s) => match s.try_acquire() {
            Ok(p) => Some(p),
            Err(_) => {
                let max = ctx.settings.max_concurrent.unwrap_or(0);
                let resp = ctx
                    .router
                    .error_response(&RouteError::Overloaded(max), grpc);
                return finish(&mut pending, resp, grpc);
            }
        },
        None => None,
    };
    let route = ctx.router.route(
        req,
        ctx.settings.max_call_depth,
        ctx.settings.clear_context,
        open,
    );
    // Pinned where it is: wrapping the (large) future by value would copy it.
    tokio::pin!(route);
    let result = match ctx.settings.timeout {
        Some(t) => match tokio::time::timeout(t, route.as_mut()).await {
            Ok(r) => r,
            Err(_) => Err(RouteError::Timeout(format!(
                "exceeded {}ms server timeout",
                t.as_millis()
            ))),
        },
        None => route.await,
    };
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "request failed");
            ctx.router.error_response(&e, grpc)
        }
    };
    if ctx.settings.clear_context {
        let names: Vec<_> = resp
            .headers()
            .keys()
            .filter(|k| k.as_str().starts_with("l5d-"))
            .cloned()
            .collect();
        let had_err = resp.headers().contains_key(super::error::L5D_ERR);
        for n in names {
            resp.headers_mut().remove(n);
        }
        if had_err {
            *resp.body_mut() = RespBody::empty();
            resp.headers_mut()
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
    }
    finish(&mut pending, resp, grpc)
}

/// A gRPC call: its errors are answered as gRPC statuses.
fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

fn finish(p: &mut Pending<'_>, resp: Response<RespBody>, grpc: bool) -> Response<RespBody> {
    let status = resp.status().as_u16();
    // A trailers-only gRPC answer carries its outcome in the head.
    let grpc_failed = grpc
        && resp
            .headers()
            .get(super::error::GRPC_STATUS)
            .is_some_and(|v| v.as_bytes() != b"0");
    p.ctx.stats.record(
        Some(status),
        p.start.elapsed().as_millis() as u64,
        status < 500 && !grpc_failed,
    );
    p.done = true;
    resp
}
