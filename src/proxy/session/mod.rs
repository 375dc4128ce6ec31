//! An endpoint's session, one per protocol behind the one type the balancer holds: HTTP/1.1
//! (`http1`: a pool of keep-alive connections on the project's own codec, each back in the
//! pool when its response body ends) and HTTP/2 (`h2`: multiplexed connections, a new one only when the streams in flight
//! reach the per-connection limit). A session connects through `transport` and sends one
//! request at a time for its caller; it neither balances nor retries.

pub mod h2;
pub mod http1;

use std::net::SocketAddr;
use std::sync::Arc;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::body::request::ReqBody;
use crate::metrics::{Counter, Gauge};
use crate::transport::ConnectError;

pub use crate::config::model::Protocol;

/// Why a session could not give a request a connection.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("handshake with {addr} failed: {source}")]
    Handshake {
        addr: SocketAddr,
        #[source]
        source: hyper::Error,
    },
    #[error("too many requests waiting for a connection to {addr} (maxWaiters {max})")]
    TooManyWaiters { addr: SocketAddr, max: usize },
}

/// Connection counters of the client that owns the session.
#[derive(Clone, Default)]
pub struct PoolStats {
    pub connects: Counter,
    pub connections: Gauge,
}

/// One endpoint's connections.
pub enum Session {
    Http1(Arc<http1::Pool>),
    H2(Arc<h2::H2Session>),
}

/// What a request was given to be sent on.
pub enum Checkout {
    Http1(http1::Checkin),
    H2(h2::Stream),
}

/// What a streaming response body holds until it ends: its HTTP/2 stream's place on the
/// connection. (An HTTP/1 response body owns its connection itself.)
pub enum Held {
    H2(h2::Stream),
}

impl Held {
    /// The response ended cleanly.
    pub fn release(self) {
        match self {
            Held::H2(s) => drop(s),
        }
    }
}

/// An endpoint's response body, per protocol.
pub enum EndpointBody {
    H1(http1::H1Body),
    H2(Incoming),
}

/// What an endpoint's response body fails with.
pub type EndpointBodyError = Box<dyn std::error::Error + Send + Sync>;

impl Body for EndpointBody {
    type Data = Bytes;
    type Error = EndpointBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, EndpointBodyError>>> {
        match self.get_mut() {
            EndpointBody::H1(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            EndpointBody::H2(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            EndpointBody::H1(b) => b.is_end_stream(),
            EndpointBody::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            EndpointBody::H1(b) => b.size_hint(),
            EndpointBody::H2(b) => b.size_hint(),
        }
    }
}

/// An answer: the response and what its body holds until it ends.
pub type Sent = (Response<EndpointBody>, Option<Held>);

/// A request that got no answer.
pub struct SendError {
    pub error: EndpointBodyError,
    /// The client's request body failed: the client's fault, not the endpoint's.
    pub client_body: bool,
    /// The request, when the endpoint cannot have acted on it (safe to send elsewhere).
    pub message: Option<Request<ReqBody>>,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl Session {
    pub async fn checkout(&self) -> Result<Checkout, SessionError> {
        match self {
            Session::Http1(p) => p.checkout().await.map(Checkout::Http1),
            Session::H2(s) => s.checkout().await.map(Checkout::H2),
        }
    }

    /// Closes idle connections, and busy ones as they finish: the endpoint is gone.
    pub fn retire(&self) {
        match self {
            Session::Http1(p) => p.retire(),
            Session::H2(s) => s.retire(),
        }
    }

    /// Drops connections idle past their time (HTTP/1 `idleTimeMs`; h2 connections stay,
    /// kept alive by PING).
    pub fn expire_idle(&self) {
        if let Session::Http1(p) = self {
            p.expire_idle();
        }
    }

    /// Open connections (idle and busy).
    pub fn open(&self) -> usize {
        match self {
            Session::Http1(p) => p.open(),
            Session::H2(s) => s.open(),
        }
    }
}

impl Checkout {
    /// Sends the request: the response (its body streaming) and what that body must hold
    /// until it ends.
    pub async fn send(self, req: Request<ReqBody>) -> Result<Sent, SendError> {
        match self {
            Checkout::Http1(c) => {
                let resp = c.send(req).await?;
                Ok((resp.map(EndpointBody::H1), None))
            }
            Checkout::H2(mut s) => match s.sender.try_send_request(req).await {
                Ok(resp) => {
                    let held = (!resp.body().is_end_stream()).then_some(Held::H2(s));
                    Ok((resp.map(EndpointBody::H2), held))
                }
                Err(mut e) => Err(SendError {
                    client_body: is_client_body_error(e.error()),
                    message: e.take_message(),
                    error: Box::new(e.into_error()),
                }),
            },
        }
    }
}

/// Whether hyper failed because the request body (the client's upload) failed: a user error
/// whose source is the body's own error (a stall, or the client connection's read error).
/// Other user errors (the connection task gone, say) are the connection's, not the client's.
fn is_client_body_error(e: &hyper::Error) -> bool {
    use std::error::Error as _;
    e.is_user()
        && e.source().is_some_and(|s| {
            s.is::<crate::proxy::body::BodyStalled>()
                || s.is::<hyper::Error>()
                || s.is::<crate::proxy::http1::server::RecvError>()
        })
}
