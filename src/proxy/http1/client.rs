//! The client side of an HTTP/1 connection to an endpoint, with no task of its own: `send`
//! writes the request head (the client's own target bytes when it had them) and streams the
//! body while watching for the response head; the response's body (`RecvResponse`) then owns
//! the connection, reads the body as it is polled (finishing a request body still being sent)
//! and gives the connection back (`take_conn`) once both messages ended cleanly and the
//! endpoint allows reuse. 1xx heads other than 101 are skipped; a 101 hands the connection
//! over whole. Pools and retries are the caller's.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};

use super::decode::{DecodeError, Decoded, Decoder, Encoder};
use super::head::{self, Framing, RawTarget, ResponseHeadError};
use super::wire::{Upgraded, Wire, COALESCE_BYTES};
use super::{content_length_of, is_upgrade_request};
use crate::transport::Io;

/// Errors from a request body being sent.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The longest response head an endpoint may send.
pub const MAX_RESPONSE_HEAD_BYTES: usize = 64 * 1024;

/// One connection to an endpoint.
pub struct ClientConn {
    wire: Wire,
    /// It carried an exchange before.
    reused: bool,
}

impl ClientConn {
    pub fn new(io: Io) -> ClientConn {
        ClientConn {
            wire: Wire::new(io),
            reused: false,
        }
    }

    /// Whether an idle connection can carry a request: the endpoint has not closed it or
    /// sent bytes nobody asked for. Costs no system call while the socket reports nothing.
    pub fn is_usable(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.wire.poll_read_ready(&mut cx) {
            Poll::Pending => return true,
            Poll::Ready(Err(_)) => return false,
            Poll::Ready(Ok(())) => {}
        }
        matches!(self.wire.poll_probe(&mut cx), Poll::Pending)
    }
}

/// What went wrong sending a request.
#[derive(Debug, thiserror::Error)]
pub enum SendErrorKind {
    #[error("connection error: {0}")]
    Io(#[source] io::Error),
    #[error("the endpoint closed the connection before answering")]
    Closed,
    #[error(transparent)]
    BadResponse(#[from] ResponseHeadError),
    #[error("response head larger than {MAX_RESPONSE_HEAD_BYTES} bytes")]
    HeadTooLarge,
    /// The request body failed: the client's doing, not the endpoint's.
    #[error("request body: {0}")]
    Body(#[source] BoxError),
    #[error("request body longer than its Content-Length")]
    Overrun,
}

/// A failed send; `request` is handed back when nothing of it can have been acted on.
pub struct SendError<B> {
    pub kind: SendErrorKind,
    pub request: Option<Request<B>>,
}

impl<B> std::fmt::Debug for SendError<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.kind)
    }
}

/// A response's upgraded connection, in the response's extensions (taken once).
#[derive(Clone)]
pub struct ClientUpgrade(Arc<Mutex<Option<Upgraded>>>);

impl ClientUpgrade {
    pub fn take(&self) -> Option<Upgraded> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The request body still being sent.
struct Outgoing<B> {
    body: Option<B>,
    enc: Encoder,
    done: bool,
}

impl<B> Outgoing<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    /// Writes and polls the body until it waits; `Ready(Ok)` once all of it is written. What
    /// the body has ready goes out with the head, in one write.
    fn poll_send(
        &mut self,
        wire: &mut Wire,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), SendErrorKind>> {
        loop {
            let mut body_pending = false;
            while !self.done && wire.queued() < COALESCE_BYTES {
                let Some(body) = self.body.as_mut() else {
                    self.done = true;
                    break;
                };
                match Pin::new(body).poll_frame(cx) {
                    Poll::Pending => {
                        body_pending = true;
                        break;
                    }
                    Poll::Ready(Some(Err(e))) => {
                        self.body = None;
                        return Poll::Ready(Err(SendErrorKind::Body(e.into())));
                    }
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => {
                            let mut hdr = std::mem::take(wire.out());
                            let r = self.enc.data(data, &mut hdr);
                            *wire.out() = hdr;
                            match r {
                                Ok(Some(d)) => {
                                    wire.push(d);
                                    let tail = self.enc.after_data();
                                    wire.out().extend_from_slice(tail);
                                }
                                Ok(None) => {}
                                Err(_) => return Poll::Ready(Err(SendErrorKind::Overrun)),
                            }
                        }
                        Err(frame) => {
                            let t = frame.into_trailers().ok();
                            self.finish(wire, t.as_ref())?;
                        }
                    },
                    Poll::Ready(None) => self.finish(wire, None)?,
                }
            }
            if wire.has_output() {
                match wire.poll_flush_out(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(SendErrorKind::Io(e))),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if self.done {
                return Poll::Ready(Ok(()));
            }
            if body_pending {
                return Poll::Pending;
            }
        }
    }

    fn finish(
        &mut self,
        wire: &mut Wire,
        t: Option<&http::HeaderMap>,
    ) -> Result<(), SendErrorKind> {
        self.body = None;
        self.done = true;
        let mut out = std::mem::take(wire.out());
        let r = self.enc.end(t, &mut out);
        *wire.out() = out;
        r.map_err(|_| SendErrorKind::Body("request body shorter than its Content-Length".into()))
    }
}

/// Sends `req` on `conn`; resolves with the response head once it has come.
pub fn send<B>(conn: ClientConn, req: Request<B>) -> SendFuture<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    SendFuture {
        state: Some(Sending {
            conn,
            parts: Some(parts),
            body: Some(body),
            out: None,
            method: Method::GET,
            wrote: false,
            read_any: false,
            write_error: None,
        }),
    }
}

struct Sending<B> {
    conn: ClientConn,
    /// Kept until the answer comes, so a request that was never acted on can be handed back.
    parts: Option<http::request::Parts>,
    body: Option<B>,
    out: Option<Outgoing<B>>,
    method: Method,
    wrote: bool,
    read_any: bool,
    /// Writing failed after part of the request went out; an answer is still awaited.
    write_error: Option<io::Error>,
}

pub struct SendFuture<B> {
    state: Option<Sending<B>>,
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

impl<B> Sending<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    fn start(&mut self) -> Result<(), SendErrorKind> {
        let Some(parts) = self.parts.as_ref() else {
            return Ok(());
        };
        let h = &parts.headers;
        let ended = self.body.as_ref().is_none_or(|b| b.is_end_stream());
        let (enc, add) = if h.contains_key(http::header::TRANSFER_ENCODING) {
            (Encoder::Chunked, None)
        } else if h.contains_key(http::header::CONTENT_LENGTH) {
            match content_length_of(h) {
                Some(n) => (Encoder::Length(n), None),
                None => {
                    return Err(SendErrorKind::Body(
                        "invalid Content-Length on the request".into(),
                    ))
                }
            }
        } else if ended {
            (Encoder::None, None)
        } else {
            match self.body.as_ref().and_then(|b| b.size_hint().exact()) {
                Some(n) => (Encoder::Length(n), Some(Framing::Length(n))),
                None => (Encoder::Chunked, Some(Framing::Chunked)),
            }
        };
        let target: &[u8] = match parts.extensions.get::<RawTarget>() {
            Some(t) => &t.0,
            None => parts
                .uri
                .path_and_query()
                .map_or(b"/".as_slice(), |p| p.as_str().as_bytes()),
        };
        head::write_request(self.conn.wire.out(), &parts.method, target, h, add);
        self.method = parts.method.clone();
        // A body already at its end is not polled: the request can still be handed back.
        let (body, done) = if ended && matches!(enc, Encoder::None | Encoder::Length(0)) {
            (None, true)
        } else {
            (self.body.take(), false)
        };
        self.out = Some(Outgoing { body, enc, done });
        Ok(())
    }

    /// The error, with the request handed back when the endpoint cannot have acted on it:
    /// nothing was written, or (an idempotent request on a reused connection) it was closed
    /// before any answer, the keep-alive race. A body that was polled cannot go again.
    fn fail(mut self, kind: SendErrorKind) -> SendError<B> {
        let safe = !matches!(kind, SendErrorKind::Body(_))
            && (!self.wrote || (self.conn.reused && !self.read_any && idempotent(&self.method)));
        let request = match (safe, self.parts.take(), self.body.take()) {
            (true, Some(p), Some(b)) => Some(Request::from_parts(p, b)),
            _ => None,
        };
        SendError { kind, request }
    }
}

impl<B> Future for SendFuture<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<RecvResponse<B>>, SendError<B>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Worked on in place: the state is moved out only to finish.
        let this = &mut *self;
        let Some(s) = this.state.as_mut() else {
            return Poll::Ready(Err(SendError {
                kind: SendErrorKind::Closed,
                request: None,
            }));
        };
        match s.poll_exchange(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => {
                let Some(s) = this.state.take() else {
                    return Poll::Pending;
                };
                Poll::Ready(match r {
                    Ok(h) => Ok(s.answer(h)),
                    Err(e) => Err(s.fail(e)),
                })
            }
        }
    }
}

impl<B> Sending<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    /// Writes what can be written (an early answer may come before the body ends) and reads
    /// until a final response head has come.
    fn poll_exchange(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<head::ResponseHead, SendErrorKind>> {
        if self.out.is_none() {
            self.start()?;
        }
        if let Some(out) = self.out.as_mut() {
            let before = self.conn.wire.written();
            let r = out.poll_send(&mut self.conn.wire, cx);
            self.wrote |= self.conn.wire.written() != before;
            match r {
                // An endpoint may answer early (401, 413) and close before reading the whole
                // upload: writing fails, the answer may still be there to read.
                Poll::Ready(Err(SendErrorKind::Io(e)))
                    if self.wrote && self.write_error.is_none() =>
                {
                    self.write_error = Some(e);
                    out.done = true;
                    out.body = None;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                _ => {}
            }
        }
        loop {
            if !self.conn.wire.rbuf.is_empty() {
                self.read_any = true;
                match head::parse_response(&mut self.conn.wire.rbuf, &self.method) {
                    Err(e) => return Poll::Ready(Err(e.into())),
                    Ok(Some(h)) => {
                        let st = h.parts.status;
                        if st.is_informational() && st != StatusCode::SWITCHING_PROTOCOLS {
                            continue;
                        }
                        return Poll::Ready(Ok(h));
                    }
                    Ok(None) => {
                        if self.conn.wire.rbuf.len() > MAX_RESPONSE_HEAD_BYTES {
                            return Poll::Ready(Err(SendErrorKind::HeadTooLarge));
                        }
                    }
                }
            }
            match self.conn.wire.poll_read_more(cx) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(match self.write_error.take() {
                        Some(e) => SendErrorKind::Io(e),
                        None => SendErrorKind::Closed,
                    }))
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Err(SendErrorKind::Io(
                        self.write_error.take().unwrap_or(e),
                    )))
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<B> Sending<B> {
    fn answer(mut self, h: head::ResponseHead) -> Response<RecvResponse<B>> {
        let mut parts = h.parts;
        let upgraded = parts.status == StatusCode::SWITCHING_PROTOCOLS
            && self
                .parts
                .as_ref()
                .is_some_and(|p| is_upgrade_request(&p.headers));
        self.parts = None;
        // An upload still to finish, or whose last bytes are still queued, goes on.
        let unflushed = self.conn.wire.has_output();
        let out = self
            .out
            .take()
            .filter(|o| !o.done || unflushed)
            .map(Box::new);
        if upgraded {
            let (io, pre) = self.conn.wire.into_parts();
            parts
                .extensions
                .insert(ClientUpgrade(Arc::new(Mutex::new(Some(Upgraded::new(
                    io, pre,
                ))))));
            return Response::from_parts(parts, RecvResponse::done());
        }
        let dec = Decoder::new(h.framing);
        let recv = RecvResponse {
            conn: Some(self.conn),
            dec,
            keep_alive: h.keep_alive,
            out,
            failed: false,
            write_failed: self.write_error.is_some(),
        };
        Response::from_parts(parts, recv)
    }
}

/// A response body read from the endpoint connection it owns.
pub struct RecvResponse<B> {
    conn: Option<ClientConn>,
    dec: Decoder,
    keep_alive: bool,
    /// A request body still being sent (rare: an endpoint that answers before reading all of
    /// it), boxed to keep the common body small.
    out: Option<Box<Outgoing<B>>>,
    failed: bool,
    /// The upload broke off: the connection is not reused.
    write_failed: bool,
}

/// A response body that broke off.
#[derive(Debug, thiserror::Error)]
pub enum RecvResponseError {
    #[error(transparent)]
    Malformed(#[from] DecodeError),
    #[error("reading the response body failed: {0}")]
    Io(#[source] io::Error),
}

impl<B> RecvResponse<B> {
    fn done() -> RecvResponse<B> {
        RecvResponse {
            conn: None,
            dec: Decoder::Done,
            keep_alive: false,
            out: None,
            failed: false,
            write_failed: false,
        }
    }

    /// The connection, for another request, once this exchange ended cleanly.
    pub fn take_conn(&mut self) -> Option<ClientConn> {
        if !self.dec.is_done() || self.failed || !self.keep_alive {
            return None;
        }
        if self.out.as_ref().is_some_and(|o| !o.done) || self.write_failed {
            return None;
        }
        let mut c = self.conn.take()?;
        if !c.wire.rbuf.is_empty() || c.wire.has_output() {
            return None;
        }
        c.reused = true;
        c.wire.release_buffers();
        Some(c)
    }
}

impl<B> Body for RecvResponse<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = RecvResponseError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RecvResponseError>>> {
        let this = self.get_mut();
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        let unflushed = conn.wire.has_output();
        if let Some(out) = this.out.as_mut().filter(|o| !o.done || unflushed) {
            // The endpoint answered early; the rest of the upload goes on while it is read.
            if let Poll::Ready(Err(e)) = out.poll_send(&mut conn.wire, cx) {
                tracing::debug!(error = %e, "request body ended early after the response began");
                this.out = None;
                this.keep_alive = false;
            }
        }
        loop {
            match this.dec.decode(&mut conn.wire.rbuf) {
                Ok(Decoded::Data(b)) => return Poll::Ready(Some(Ok(Frame::data(b)))),
                Ok(Decoded::Trailers(t)) => return Poll::Ready(Some(Ok(Frame::trailers(t)))),
                Ok(Decoded::End) => return Poll::Ready(None),
                Ok(Decoded::More) => {}
                Err(e) => {
                    this.failed = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
            match conn.wire.poll_read_more(cx) {
                Poll::Ready(Ok(0)) => {
                    this.keep_alive = false;
                    return match this.dec.eof() {
                        Ok(_) => Poll::Ready(None),
                        Err(e) => {
                            this.failed = true;
                            Poll::Ready(Some(Err(e.into())))
                        }
                    };
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    this.failed = true;
                    return Poll::Ready(Some(Err(RecvResponseError::Io(e))));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.dec.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.dec {
            Decoder::Length(n) => SizeHint::with_exact(n),
            Decoder::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
