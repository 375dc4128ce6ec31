//! The only place that touches sockets and rustls: connecting to an endpoint (TCP, or TLS over
//! TCP with ALPN) and accepting a client connection (plain or TLS), each bounded by a timeout,
//! each yielding one `Io` stream and the protocol ALPN chose. It knows nothing of HTTP: which
//! protocol to speak over the stream is the caller's (`proxy::session` on the client side,
//! `proxy::server` on the server side).

pub mod tls;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::metrics::{Counter, Scope};

/// How long a TLS handshake may take, either side, before the connection is closed.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// ALPN identifiers.
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// One connection, either way, plain or TLS.
pub enum Io {
    Plain(TcpStream),
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Io {
    /// The protocol ALPN agreed on (`None` for plain connections or no agreement).
    pub fn alpn(&self) -> Option<&[u8]> {
        match self {
            Io::Plain(_) => None,
            Io::Client(s) => s.get_ref().1.alpn_protocol(),
            Io::Server(s) => s.get_ref().1.alpn_protocol(),
        }
    }

    /// Resolves once a plaintext stream is readable (without reading: no buffer is needed to
    /// wait); a TLS stream resolves at once, its reads being buffered by rustls anyway.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Io::Plain(s) => s.poll_read_ready(cx),
            _ => Poll::Ready(Ok(())),
        }
    }

    /// The peer's certificate chain (end entity first), for TLS server connections that asked
    /// for one.
    pub fn peer_certificates(&self) -> Option<&[rustls_pki_types::CertificateDer<'static>]> {
        match self {
            Io::Server(s) => s.get_ref().1.peer_certificates(),
            Io::Client(s) => s.get_ref().1.peer_certificates(),
            Io::Plain(_) => None,
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Io::Plain($s) => $e,
            Io::Client($s) => $e,
            Io::Server($s) => $e,
        }
    };
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, b))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_shutdown(cx))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Client(s) => s.is_write_vectored(),
            Io::Server(s) => s.is_write_vectored(),
        }
    }
}

/// Why a connection to an endpoint could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connection to {addr} failed: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("connection to {addr} timed out")]
    Timeout { addr: SocketAddr },
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("TLS handshake with {addr} timed out")]
    TlsTimeout { addr: SocketAddr },
    #[error("no TLS connection to {addr}: {message}")]
    TlsSetting { addr: SocketAddr, message: String },
}

/// TLS counters of one side of a router (a client, or a server): `tls/handshakes`,
/// `tls/handshake_failures/<reason>`, `tls/alpn/<protocol>`.
#[derive(Clone)]
pub struct TlsStats {
    scope: Scope,
    handshakes: Counter,
}

impl TlsStats {
    pub fn new(parent: &Scope) -> TlsStats {
        let scope = parent.scope("tls");
        TlsStats {
            handshakes: scope.counter("handshakes"),
            scope,
        }
    }

    fn success(&self, alpn: Option<&[u8]>) {
        self.handshakes.incr();
        let p = alpn
            .and_then(|a| std::str::from_utf8(a).ok())
            .unwrap_or("none");
        self.scope.scope("alpn").counter(p).incr();
    }

    fn failure(&self, e: &io::Error) {
        self.scope
            .scope("handshake_failures")
            .counter(tls::failure_reason(e))
            .incr();
    }

    fn timeout(&self) {
        self.scope
            .scope("handshake_failures")
            .counter("timeout")
            .incr();
    }
}

/// How a client reaches its endpoints: plain TCP, or TLS with a server name to verify.
#[derive(Clone)]
pub struct Connector {
    pub connect_timeout: Option<Duration>,
    /// The client's TLS, or why its settings could not be made for this client (every
    /// connection then fails: a client that must use TLS never falls back to plaintext).
    pub tls: Option<(Result<tls::ClientTls, String>, TlsStats)>,
}

impl Connector {
    pub fn plain(connect_timeout: Option<Duration>) -> Connector {
        Connector {
            connect_timeout,
            tls: None,
        }
    }

    /// Connects to `addr`: TCP (within `connect_timeout`), then the TLS handshake (within
    /// `DEFAULT_HANDSHAKE_TIMEOUT`) when the client uses TLS.
    pub async fn connect(&self, addr: SocketAddr) -> Result<Io, ConnectError> {
        let connect = TcpStream::connect(addr);
        let stream = match self.connect_timeout {
            Some(t) => tokio::time::timeout(t, connect)
                .await
                .map_err(|_| ConnectError::Timeout { addr })?,
            None => connect.await,
        }
        .map_err(|source| ConnectError::Connect { addr, source })?;
        let _ = stream.set_nodelay(true);
        let Some((tls, stats)) = &self.tls else {
            return Ok(Io::Plain(stream));
        };
        let tls = tls.as_ref().map_err(|m| ConnectError::TlsSetting {
            addr,
            message: m.clone(),
        })?;
        let name = tls.server_name(addr);
        let hs = tls.connector().connect(name, stream);
        match tokio::time::timeout(DEFAULT_HANDSHAKE_TIMEOUT, hs).await {
            Err(_) => {
                stats.timeout();
                Err(ConnectError::TlsTimeout { addr })
            }
            Ok(Err(source)) => {
                stats.failure(&source);
                Err(ConnectError::Tls { addr, source })
            }
            Ok(Ok(s)) => {
                stats.success(s.get_ref().1.alpn_protocol());
                Ok(Io::Client(Box::new(s)))
            }
        }
    }
}

/// How a server takes its connections: as they come, or through a TLS handshake.
#[derive(Clone)]
pub struct Acceptor {
    pub tls: Option<(Arc<tls::ServerTls>, TlsStats)>,
}

impl Acceptor {
    /// The connection ready to speak HTTP; a failed or slow handshake is an error (the caller
    /// closes the connection and moves on).
    pub async fn accept(&self, stream: TcpStream) -> io::Result<Io> {
        let Some((tls, stats)) = &self.tls else {
            return Ok(Io::Plain(stream));
        };
        let hs = tls.acceptor().accept(stream);
        match tokio::time::timeout(DEFAULT_HANDSHAKE_TIMEOUT, hs).await {
            Err(_) => {
                stats.timeout();
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "TLS handshake timed out",
                ))
            }
            Ok(Err(e)) => {
                stats.failure(&e);
                Err(e)
            }
            Ok(Ok(s)) => {
                stats.success(s.get_ref().1.alpn_protocol());
                Ok(Io::Server(Box::new(s)))
            }
        }
    }
}
