//! An endpoint's session, one per protocol behind the one type the balancer holds: HTTP/1.1
//! (`http1`: a pool of keep-alive connections, each back in the pool when its response body
//! ends) and HTTP/2 (`h2`: multiplexed connections, a new one only when the streams in flight
//! reach the per-connection limit). A session connects through `transport` and sends one
//! request at a time for its caller; it neither balances nor retries.

pub mod h2;
pub mod http1;

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::TrySendError;

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

/// What a streaming response body holds until it ends: its HTTP/1 connection (back to the pool
/// then) or its HTTP/2 stream's place on the connection.
pub enum Held {
    Http1(http1::Checkin),
    H2(h2::Stream),
}

impl Held {
    /// The response ended cleanly.
    pub fn release(self) {
        match self {
            Held::Http1(c) => c.release(),
            Held::H2(s) => drop(s),
        }
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
    /// Sends the request; an error hands the request back when it was never sent.
    pub async fn send(
        &mut self,
        req: Request<ReqBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<ReqBody>>> {
        match self {
            Checkout::Http1(c) => c.sender().try_send_request(req).await,
            Checkout::H2(s) => s.sender.try_send_request(req).await,
        }
    }

    /// What the response body keeps until it ends (`None`: nothing, it has ended or upgraded).
    pub fn hold(self, ended: bool, upgraded: bool) -> Option<Held> {
        match self {
            Checkout::Http1(c) if ended && !upgraded => {
                c.release();
                None
            }
            Checkout::Http1(_) if upgraded => None,
            Checkout::Http1(c) => Some(Held::Http1(c)),
            Checkout::H2(_) if ended => None,
            Checkout::H2(s) => Some(Held::H2(s)),
        }
    }
}
