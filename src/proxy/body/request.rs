//! The request body of the data path, an enum rather than a boxed trait object so a proxied
//! request allocates nothing for its body: the client's streaming body (with its stall timer),
//! a small buffered one, or (h2, for retries) the client's body copied as it streams up to a
//! bound and replayed from that copy. It knows nothing of connections; the response body
//! (`response`), which holds one, sits above the sessions.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// A buffered body: its one frame, then the end.
pub(super) fn poll_full(
    b: &mut Option<Bytes>,
) -> Poll<Option<Result<Frame<Bytes>, std::convert::Infallible>>> {
    Poll::Ready(b.take().map(|d| Ok(Frame::data(d))))
}

pub(super) fn full_hint(b: &Option<Bytes>) -> SizeHint {
    SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
}

/// The client's own body, as its server connection reads it: HTTP/1 from the project's codec,
/// HTTP/2 (and the h2 router's HTTP/1.1 fallback) from hyper.
pub enum ClientBody {
    H1(crate::proxy::http1::server::RecvBody),
    Hyper(Incoming),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ReqBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ReqBodyError>>> {
        match self.get_mut() {
            ClientBody::H1(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            ClientBody::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::H1(b) => b.is_end_stream(),
            ClientBody::Hyper(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::H1(b) => b.size_hint(),
            ClientBody::Hyper(b) => b.size_hint(),
        }
    }
}

/// A request body on its way to an endpoint.
pub enum ReqBody {
    /// The client's body; it fails (as the client's fault) when no frame arrives for `stall`.
    Stream {
        body: ClientBody,
        stall: Option<Stall>,
    },
    Full(Option<Bytes>),
    /// A body being sent while a copy of it is kept (up to a bound) for a retry.
    Teed(Box<ReqBody>, Arc<Mutex<TeeCopy>>),
    /// A copy played back.
    Replay {
        data: VecDeque<Bytes>,
        trailers: Option<HeaderMap>,
    },
}

/// What a teed body has copied so far.
#[derive(Default)]
pub struct TeeCopy {
    data: Vec<Bytes>,
    trailers: Option<HeaderMap>,
    bytes: u64,
    limit: u64,
    overflow: bool,
    ended: bool,
}

/// The copy a teed request body keeps, shared with whoever may replay it.
#[derive(Clone)]
pub struct Tee(Arc<Mutex<TeeCopy>>);

impl Tee {
    /// Wraps `body`, copying up to `limit` bytes of it.
    pub fn wrap(body: ReqBody, limit: u64) -> (ReqBody, Tee) {
        let copy = Arc::new(Mutex::new(TeeCopy {
            limit,
            ..Default::default()
        }));
        (ReqBody::Teed(Box::new(body), Arc::clone(&copy)), Tee(copy))
    }

    /// The whole body again, if it was sent to its end within the bound.
    pub fn replay(&self) -> Option<ReqBody> {
        let c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (c.ended && !c.overflow).then(|| ReqBody::Replay {
            data: c.data.iter().cloned().collect(),
            trailers: c.trailers.clone(),
        })
    }
}

fn record(copy: &Mutex<TeeCopy>, frame: Option<&Frame<Bytes>>) {
    let mut c = copy.lock().unwrap_or_else(|p| p.into_inner());
    if c.overflow {
        return;
    }
    match frame {
        None => c.ended = true,
        Some(f) => {
            if let Some(d) = f.data_ref() {
                c.bytes += d.len() as u64;
                if c.bytes > c.limit {
                    c.overflow = true;
                    c.data = Vec::new();
                    return;
                }
                c.data.push(d.clone());
            } else if let Some(t) = f.trailers_ref() {
                c.trailers = Some(t.clone());
            }
        }
    }
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
    pub fn stream(body: ClientBody, stall: Option<Duration>) -> ReqBody {
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
                    Poll::Ready(r)
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
            ReqBody::Teed(inner, copy) => {
                let r = Pin::new(&mut **inner).poll_frame(cx);
                match &r {
                    Poll::Ready(Some(Ok(f))) => {
                        record(copy, Some(f));
                        if inner.is_end_stream() {
                            record(copy, None);
                        }
                    }
                    Poll::Ready(None) => record(copy, None),
                    _ => {}
                }
                r
            }
            ReqBody::Replay { data, trailers } => Poll::Ready(match data.pop_front() {
                Some(d) => Some(Ok(Frame::data(d))),
                None => trailers.take().map(|t| Ok(Frame::trailers(t))),
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Stream { body, .. } => body.is_end_stream(),
            ReqBody::Full(b) => b.is_none(),
            ReqBody::Teed(inner, _) => inner.is_end_stream(),
            ReqBody::Replay { data, trailers } => data.is_empty() && trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Stream { body, .. } => body.size_hint(),
            ReqBody::Full(b) => full_hint(b),
            ReqBody::Teed(inner, _) => inner.size_hint(),
            ReqBody::Replay { data, trailers } => {
                let n: u64 = data.iter().map(|d| d.len() as u64).sum();
                if trailers.is_none() {
                    SizeHint::with_exact(n)
                } else {
                    let mut h = SizeHint::new();
                    h.set_lower(n);
                    h
                }
            }
        }
    }
}
