//! How namerd's listeners take connections and how linkers reach namerd: plain TCP, or TLS over
//! it, each handshake bounded by [`HANDSHAKE_TIMEOUT`]. The rustls settings (certificates, trust
//! roots, client authentication, their reloading) are built by the caller from config, in the
//! binary's `transport::tls`, the one place TLS settings are made; this module only runs
//! handshakes with them. It knows nothing of HTTP: the controller, the mesh server and both
//! clients speak their protocol over the [`Stream`] it yields.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

/// How long a TLS handshake may take, either side.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a listener's connection may go without a write making progress (its peer reading
/// nothing) before it is closed; see [`WriteStall`].
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// One connection, plain or TLS, either side, over `S` (a listener's connections are TCP
/// under [`WriteStall`], so TLS's own writes, its close_notify included, are bounded too).
pub enum Stream<S = TcpStream> {
    Plain(S),
    Client(Box<client::TlsStream<S>>),
    Server(Box<server::TlsStream<S>>),
}

/// What a listener's [`Acceptor`] yields.
pub type Accepted = Stream<WriteStall<TcpStream>>;

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Plain($s) => $e,
            Stream::Client($s) => $e,
            Stream::Server($s) => $e,
        }
    };
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, b))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write_vectored(cx, b))
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Client(s) => s.is_write_vectored(),
            Stream::Server(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// How a listener takes its connections: as they come, or through a TLS handshake.
#[derive(Clone, Default)]
pub struct Acceptor {
    tls: Option<TlsAcceptor>,
}

impl Acceptor {
    pub fn plain() -> Acceptor {
        Acceptor { tls: None }
    }

    pub fn tls(acceptor: TlsAcceptor) -> Acceptor {
        Acceptor {
            tls: Some(acceptor),
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The connection ready for the protocol; a failed or slow handshake is an error (the
    /// caller closes the connection). Its writes may not stall past [`WRITE_STALL_TIMEOUT`].
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<Accepted> {
        let _ = tcp.set_nodelay(true);
        let tcp = WriteStall::new(tcp, WRITE_STALL_TIMEOUT);
        let Some(tls) = &self.tls else {
            return Ok(Stream::Plain(tcp));
        };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
            Ok(r) => r.map(|s| Stream::Server(Box::new(s))),
        }
    }
}

/// Takes connections from `listener` until the task is dropped, at most `max` open at once
/// (past it, accepting waits for one to close). Each is taken through `acceptor` in its own
/// task, then handed to `serve` with its peer's address; a failed handshake just closes it.
pub async fn accept_loop<F, Fut>(
    listener: tokio::net::TcpListener,
    acceptor: Acceptor,
    max: usize,
    serve: F,
) where
    F: Fn(Accepted, std::net::SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(max));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (acceptor, serve) = (acceptor.clone(), serve.clone());
        tokio::spawn(async move {
            let _slot = slot;
            match acceptor.accept(tcp).await {
                Ok(io) => serve(io, peer).await,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "connection refused in its TLS handshake");
                }
            }
        });
    }
}

/// TLS to namerd: the rustls client config and the name namerd's certificate must carry.
#[derive(Clone)]
pub struct ClientTls {
    pub config: Arc<tokio_rustls::rustls::ClientConfig>,
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// Dials namerd for hyper's client and for tonic: TCP by hyper-util's connector (name lookup,
/// connect timeout, TCP keepalive), then TLS when configured. URIs stay `http://` either way:
/// whether to use TLS is this dialer's setting, not the URI's.
#[derive(Clone)]
pub struct Dialer {
    tcp: HttpConnector,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// Who is dialled, for errors ("namerd", "Consul").
    peer: &'static str,
}

impl Dialer {
    pub fn new(tcp: HttpConnector, tls: Option<&ClientTls>, peer: &'static str) -> Dialer {
        Dialer {
            tcp,
            tls: tls.map(|t| {
                (
                    TlsConnector::from(Arc::clone(&t.config)),
                    t.server_name.clone(),
                )
            }),
            peer,
        }
    }
}

/// An error and its causes on one line. hyper's client errors say only "client error
/// (Connect)" and keep the reason (a refused connection, a rejected certificate) in their
/// sources.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

/// A dialled connection, as hyper's client and tonic take it.
pub struct Conn(TokioIo<Stream>);

impl hyper::rt::Read for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, b)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, b)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl tower_service::Service<Uri> for Dialer {
    type Response = Conn;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Conn>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp.poll_ready(cx).map_err(io::Error::other)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connect = self.tcp.call(uri);
        let tls = self.tls.clone();
        let peer = self.peer;
        Box::pin(async move {
            let tcp = connect.await.map_err(io::Error::other)?.into_inner();
            let Some((tls, name)) = tls else {
                return Ok(Conn(TokioIo::new(Stream::Plain(tcp))));
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.connect(name, tcp)).await {
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("TLS handshake with {peer} timed out"),
                )),
                Ok(Err(e)) => Err(io::Error::new(e.kind(), format!("TLS with {peer}: {e}"))),
                Ok(Ok(s)) => Ok(Conn(TokioIo::new(Stream::Client(Box::new(s))))),
            }
        })
    }
}

/// A stream whose writes may not stall: a write that makes no progress for `limit` fails
/// with `TimedOut`, so the server drops a peer that stopped reading (its socket buffers full)
/// instead of holding the connection forever. Reads are untouched.
pub struct WriteStall<S> {
    inner: S,
    limit: Duration,
    /// Armed while a write is pending; disarmed by any progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteStall<S> {
    pub fn new(inner: S, limit: Duration) -> WriteStall<S> {
        WriteStall {
            inner,
            limit,
            stalled: None,
        }
    }

    /// After a pending write: arms the timer, and fails once it has run out.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer read nothing for too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStall<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStall<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, b) {
            Poll::Pending => self.pending(cx),
            r => {
                self.stalled = None;
                r
            }
        }
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, b) {
            Poll::Pending => self.pending(cx),
            r => {
                self.stalled = None;
                r
            }
        }
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.pending(cx),
            r => {
                self.stalled = None;
                r
            }
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_shutdown(cx) {
            Poll::Pending => self.pending(cx),
            r => {
                self.stalled = None;
                r
            }
        }
    }
}

/// A stream that first replays bytes already read from it.
pub struct Rewind<S> {
    pre: Vec<u8>,
    at: usize,
    inner: S,
}

/// Reads the first `n` bytes of `s` within `timeout` (an HTTP/2 preface, say), for a server
/// that must not hold a connection open for a peer that sends nothing; the returned stream
/// replays them. `None` when the peer closed, failed or was too slow.
pub async fn read_first<S: AsyncRead + Unpin>(
    mut s: S,
    n: usize,
    timeout: Duration,
) -> Option<Rewind<S>> {
    let mut pre = vec![0u8; n];
    match tokio::time::timeout(timeout, s.read_exact(&mut pre)).await {
        Ok(Ok(_)) => Some(Rewind {
            pre,
            at: 0,
            inner: s,
        }),
        _ => None,
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = &mut *self;
        if me.at < me.pre.len() {
            let n = (me.pre.len() - me.at).min(buf.remaining());
            buf.put_slice(&me.pre[me.at..me.at + n]);
            me.at += n;
            if me.at == me.pre.len() {
                me.pre = Vec::new();
                me.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut me.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, b)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, b)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn rewind_replays_what_was_read_first() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b"PRI * HTTP/2.0 and the rest").await.unwrap();
        drop(a);
        let mut r = read_first(b, 14, Duration::from_secs(1)).await.unwrap();
        let mut all = String::new();
        r.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "PRI * HTTP/2.0 and the rest");
    }

    #[tokio::test]
    async fn a_write_that_stalls_fails_and_progress_rearms_the_timer() {
        // A peer that reads nothing: the 64-byte pipe fills and the next write times out.
        let (a, mut b) = tokio::io::duplex(64);
        let mut w = WriteStall::new(a, Duration::from_millis(100));
        w.write_all(&[0u8; 64]).await.unwrap();
        let e = w.write_all(&[0u8; 64]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        drop(w);
        let mut first = Vec::new();
        b.read_to_end(&mut first).await.unwrap();
        assert_eq!(first.len(), 64);
        // A slow reader that keeps reading is not cut off, however long the whole write takes.
        let (a, mut slow) = tokio::io::duplex(64);
        let mut w = WriteStall::new(a, Duration::from_millis(200));
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut buf = [0u8; 16];
            while got < 1024 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                got += slow.read(&mut buf).await.unwrap();
            }
            got
        });
        w.write_all(&[1u8; 1024]).await.unwrap();
        assert_eq!(reader.await.unwrap(), 1024);
    }

    #[tokio::test]
    async fn a_peer_that_sends_too_little_in_time_is_dropped() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b"PRI").await.unwrap();
        assert!(read_first(b, 24, Duration::from_millis(50)).await.is_none());
        drop(a);
        let (a, b) = tokio::io::duplex(64);
        drop(a);
        assert!(read_first(b, 24, Duration::from_secs(1)).await.is_none());
    }
}
