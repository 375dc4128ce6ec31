//! The two body types of the data path, as enums rather than boxed trait objects so a proxied
//! request allocates nothing for its body: a request body is the client's streaming body or a
//! small buffered one (for retries); a response body is the endpoint's streaming body (which
//! lets go of its connection or stream when it ends) or one Switchboard wrote itself.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::session::Held;

/// A buffered body: its one frame, then the end.
fn poll_full(b: &mut Option<Bytes>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
    Poll::Ready(b.take().map(|d| Ok(Frame::data(d))))
}

fn full_hint(b: &Option<Bytes>) -> SizeHint {
    SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
}

/// A request body on its way to an endpoint.
pub enum ReqBody {
    /// The client's body; it fails (as the client's fault) when no frame arrives for `stall`.
    Stream {
        body: Incoming,
        stall: Option<Stall>,
    },
    Full(Option<Bytes>),
}

/// The body read stall timer of a streamed request body. It runs only while the body has been
/// asked for data and the client has none to give: time the proxy or the endpoint spends not
/// reading (binding, connecting, backpressure) is never the client's.
pub struct Stall {
    after: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// Set while polls keep finding no data; the timer was started by the first of them.
    waiting: bool,
}

/// A client stopped sending its request body.
#[derive(Debug, thiserror::Error)]
#[error("no request body data for {0:?} (body read timeout)")]
pub struct BodyStalled(Duration);

/// What a request body fails with.
pub type ReqBodyError = Box<dyn std::error::Error + Send + Sync>;

impl ReqBody {
    pub fn empty() -> ReqBody {
        ReqBody::Full(None)
    }

    /// The client's body, failing after `stall` without data (`None`: never).
    pub fn stream(body: Incoming, stall: Option<Duration>) -> ReqBody {
        // Only a body that is still to come needs the timer (and its allocation).
        let stall = stall.filter(|_| !body.is_end_stream()).map(|after| Stall {
            after,
            timer: Box::pin(tokio::time::sleep(after)),
            waiting: false,
        });
        ReqBody::Stream { body, stall }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = ReqBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ReqBodyError>>> {
        match self.get_mut() {
            ReqBody::Stream { body, stall } => match Pin::new(body).poll_frame(cx) {
                Poll::Ready(r) => {
                    if let Some(s) = stall {
                        s.waiting = false;
                    }
                    Poll::Ready(r.map(|f| f.map_err(Into::into)))
                }
                Poll::Pending => {
                    if let Some(s) = stall {
                        if !s.waiting {
                            s.waiting = true;
                            let next = tokio::time::Instant::now() + s.after;
                            s.timer.as_mut().reset(next);
                        }
                        if s.timer.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Some(Err(Box::new(BodyStalled(s.after)))));
                        }
                    }
                    Poll::Pending
                }
            },
            ReqBody::Full(b) => poll_full(b).map(|o| o.map(|r| r.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Stream { body, .. } => body.is_end_stream(),
            ReqBody::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Stream { body, .. } => body.size_hint(),
            ReqBody::Full(b) => full_hint(b),
        }
    }
}

/// A response body on its way to the client.
pub enum RespBody {
    /// From an endpoint; what it holds (an HTTP/1 connection, back to the pool then; an h2
    /// stream's place) is let go once the body has ended.
    Proxied {
        body: Incoming,
        checkin: Option<Held>,
    },
    Full(Option<Bytes>),
}

impl RespBody {
    pub fn text(s: impl Into<Bytes>) -> RespBody {
        let b: Bytes = s.into();
        if b.is_empty() {
            RespBody::Full(None)
        } else {
            RespBody::Full(Some(b))
        }
    }

    pub fn empty() -> RespBody {
        RespBody::Full(None)
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RespBody::Proxied { body, checkin } => {
                let r = Pin::new(&mut *body).poll_frame(cx);
                match &r {
                    Poll::Ready(None) => {
                        if let Some(c) = checkin.take() {
                            c.release();
                        }
                    }
                    Poll::Ready(Some(Ok(_))) if body.is_end_stream() => {
                        if let Some(c) = checkin.take() {
                            c.release();
                        }
                    }
                    _ => {}
                }
                r
            }
            RespBody::Full(b) => poll_full(b),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RespBody::Proxied { body, .. } => body.is_end_stream(),
            RespBody::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RespBody::Proxied { body, .. } => body.size_hint(),
            RespBody::Full(b) => full_hint(b),
        }
    }
}
