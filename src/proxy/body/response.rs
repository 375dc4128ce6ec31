//! The response body of the data path: the endpoint's streaming body, which lets go of what it
//! holds (an HTTP/1 connection, back to its pool; an h2 stream's place) when it ends; the same
//! after a prefix read ahead to classify it; or one Switchboard wrote itself.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::request::{full_hint, poll_full};
use crate::proxy::session::{EndpointBody, Held};
use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

/// A response body on its way to the client.
// The proxied variant (an HTTP/1 body owns its endpoint connection, about 190 bytes) is the
// common one: boxing it would cost an allocation per request to save a copy of a few words.
#[allow(clippy::large_enum_variant)]
pub enum RespBody {
    /// From an endpoint; what it holds (an HTTP/1 connection, back to the pool then; an h2
    /// stream's place) is let go once the body has ended.
    Proxied {
        body: EndpointBody,
        checkin: Option<Held>,
        /// Told how the body ended (h2 responses whose outcome is in trailers still to come).
        on_end: Option<OnEnd>,
    },
    Full(Option<Bytes>),
    /// Frames read ahead (to classify the response by its trailers), then what follows.
    ReadAhead {
        frames: VecDeque<Frame<Bytes>>,
        then: Then,
    },
}

/// How a streamed response body ended.
pub enum Ending<'a> {
    Trailers(&'a HeaderMap),
    /// The end of the stream, without trailers.
    Eos,
    /// The stream failed (reset, connection lost).
    Error,
}

/// Called once when a response body ends (not when it is dropped unfinished).
pub struct OnEnd(pub Box<dyn FnOnce(Ending<'_>) + Send>);

fn ended(on_end: &mut Option<OnEnd>, e: Ending<'_>) {
    if let Some(f) = on_end.take() {
        (f.0)(e);
    }
}

impl RespBody {
    /// Sets what is told of this body's end, on an endpoint's body (also one behind a
    /// read-ahead prefix); false when the body is not an endpoint's.
    pub fn set_on_end(&mut self, f: OnEnd) -> bool {
        match self {
            RespBody::Proxied { on_end, .. } => {
                *on_end = Some(f);
                true
            }
            RespBody::ReadAhead {
                then: Then::Rest(b),
                ..
            } => b.set_on_end(f),
            _ => false,
        }
    }
}

/// What follows a read-ahead prefix.
pub enum Then {
    /// The body ended within the prefix.
    End,
    /// The rest of the body.
    Rest(Box<RespBody>),
    /// The body failed after the prefix.
    Fail(RespBodyError),
}

/// What a response body fails with.
pub type RespBodyError = Box<dyn std::error::Error + Send + Sync>;

/// Reads `body` ahead until it ends (`Some(trailers)` then, or `Some(empty)` with none), more
/// than `limit` bytes have come, or `wait` passes; the body returned plays it all back.
pub async fn read_ahead(
    mut body: RespBody,
    limit: u64,
    wait: Duration,
) -> (RespBody, Option<HeaderMap>) {
    use http_body_util::BodyExt;
    let mut frames = VecDeque::new();
    let mut bytes = 0u64;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if body.is_end_stream() {
            let b = RespBody::ReadAhead {
                frames,
                then: Then::End,
            };
            return (b, Some(HeaderMap::new()));
        }
        let next = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(n) => n,
            Err(_) => break,
        };
        match next {
            None => {
                let b = RespBody::ReadAhead {
                    frames,
                    then: Then::End,
                };
                return (b, Some(HeaderMap::new()));
            }
            Some(Err(e)) => {
                let b = RespBody::ReadAhead {
                    frames,
                    then: Then::Fail(e),
                };
                return (b, None);
            }
            Some(Ok(f)) => {
                if let Some(t) = f.trailers_ref() {
                    let t = t.clone();
                    frames.push_back(f);
                    let b = RespBody::ReadAhead {
                        frames,
                        then: Then::End,
                    };
                    return (b, Some(t));
                }
                bytes += f.data_ref().map_or(0, |d| d.len() as u64);
                frames.push_back(f);
                if bytes > limit {
                    break;
                }
            }
        }
    }
    let b = RespBody::ReadAhead {
        frames,
        then: Then::Rest(Box::new(body)),
    };
    (b, None)
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
    type Error = RespBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RespBodyError>>> {
        match self.get_mut() {
            RespBody::Proxied {
                body,
                checkin,
                on_end,
            } => {
                let r = Pin::new(&mut *body).poll_frame(cx);
                match &r {
                    Poll::Ready(None) => {
                        if let Some(c) = checkin.take() {
                            c.release();
                        }
                        ended(on_end, Ending::Eos);
                    }
                    Poll::Ready(Some(Ok(f))) => {
                        if let Some(t) = f.trailers_ref() {
                            ended(on_end, Ending::Trailers(t));
                        }
                        if body.is_end_stream() {
                            if let Some(c) = checkin.take() {
                                c.release();
                            }
                            ended(on_end, Ending::Eos);
                        }
                    }
                    Poll::Ready(Some(Err(_))) => ended(on_end, Ending::Error),
                    Poll::Pending => {}
                }
                r
            }
            RespBody::Full(b) => poll_full(b).map(|o| o.map(|f| f.map_err(Into::into))),
            RespBody::ReadAhead { frames, then } => {
                if let Some(f) = frames.pop_front() {
                    return Poll::Ready(Some(Ok(f)));
                }
                match then {
                    Then::End => Poll::Ready(None),
                    Then::Rest(b) => Pin::new(&mut **b).poll_frame(cx),
                    Then::Fail(_) => match std::mem::replace(then, Then::End) {
                        Then::Fail(e) => Poll::Ready(Some(Err(e))),
                        _ => Poll::Ready(None),
                    },
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RespBody::Proxied { body, .. } => body.is_end_stream(),
            RespBody::Full(b) => b.is_none(),
            RespBody::ReadAhead { frames, then } => {
                frames.is_empty()
                    && match then {
                        Then::End => true,
                        Then::Rest(b) => b.is_end_stream(),
                        Then::Fail(_) => false,
                    }
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RespBody::Proxied { body, .. } => body.size_hint(),
            RespBody::Full(b) => full_hint(b),
            RespBody::ReadAhead { frames, then } => {
                let n: u64 = frames
                    .iter()
                    .filter_map(|f| f.data_ref())
                    .map(|d| d.len() as u64)
                    .sum();
                match then {
                    Then::End if frames.iter().all(|f| f.is_data()) => SizeHint::with_exact(n),
                    Then::Rest(b) => {
                        let h = b.size_hint();
                        let mut out = SizeHint::new();
                        out.set_lower(n + h.lower());
                        if let Some(u) = h.upper() {
                            out.set_upper(n + u);
                        }
                        out
                    }
                    _ => {
                        let mut h = SizeHint::new();
                        h.set_lower(n);
                        h
                    }
                }
            }
        }
    }
}
