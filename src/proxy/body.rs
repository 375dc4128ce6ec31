//! The two body types of the data path, as enums rather than boxed trait objects so a proxied
//! request allocates nothing for its body: a request body is the client's streaming body or a
//! small buffered one (for retries); a response body is the endpoint's streaming body (which
//! returns its connection to the pool when it ends) or one Switchboard wrote itself.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::pool::Checkin;

/// A buffered body: its one frame, then the end.
fn poll_full(b: &mut Option<Bytes>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
    Poll::Ready(b.take().map(|d| Ok(Frame::data(d))))
}

fn full_hint(b: &Option<Bytes>) -> SizeHint {
    SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
}

/// A request body on its way to an endpoint.
pub enum ReqBody {
    Stream(Incoming),
    Full(Option<Bytes>),
}

impl ReqBody {
    pub fn empty() -> ReqBody {
        ReqBody::Full(None)
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ReqBody::Stream(b) => Pin::new(b).poll_frame(cx),
            ReqBody::Full(b) => poll_full(b),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Stream(b) => b.is_end_stream(),
            ReqBody::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Stream(b) => b.size_hint(),
            ReqBody::Full(b) => full_hint(b),
        }
    }
}

/// A response body on its way to the client.
pub enum RespBody {
    /// From an endpoint; its connection goes back to the pool once the body has ended.
    Proxied {
        body: Incoming,
        checkin: Option<Checkin>,
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
