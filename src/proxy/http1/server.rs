//! The server side of an HTTP/1 connection, driven from the connection's one task: read a head
//! (within `headerReadTimeoutMs`, refused with a status and a reason when malformed), hand the
//! request to the handler, stream the request body to it through a small bounded channel while
//! the response streams back, then keep the connection for the next request (pipelined bytes
//! included) or close it. It sends `100 Continue` when the handler first asks for a body that
//! expects it, writes no body for HEAD, 1xx, 204 and 304, frames what it writes itself
//! (`Content-Length`, chunked, or close-delimited for HTTP/1.0), and hands a `101` connection
//! over whole. Routing is the handler's; nothing here knows of it.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{BufMut, Bytes};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{oneshot, watch};
use tokio::time::{Instant, Sleep};

use super::decode::{DecodeError, Decoded, Decoder, Encoder};
use super::head::{self, ConnHeader, Framing, HeadError, RequestHead};
use super::wire::{Upgraded, Wire, COALESCE_BYTES};
use super::{content_length_of, is_upgrade_request, WRITE_STALL_TIMEOUT};
use crate::transport::Io;

/// Request body bytes the connection reads ahead of the handler.
pub const BODY_CHANNEL_BYTES: usize = 32 * 1024;
/// What a queued frame counts for beyond its data: a body of one-byte chunks cannot queue
/// thousands of frames within the bound.
const FRAME_COST: usize = 128;

/// A server connection's settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// How long a client may take to send a head, and to start the next one when idle.
    pub header_read_timeout: Duration,
    /// The longest head buffered; past it, 431.
    pub max_head_bytes: usize,
}

/// What the handler returns for a request.
pub type ResponseFuture<B> = Pin<Box<dyn Future<Output = Response<B>> + Send>>;

/// Where an upgraded (101) connection is handed over, in the request's extensions.
#[derive(Clone)]
pub struct OnUpgrade(Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

impl OnUpgrade {
    /// The client's connection, once the 101 answer has been written.
    pub async fn upgraded(&self) -> Option<Upgraded> {
        let rx = self.0.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        rx.await.ok()
    }
}

/// Why a request body failed (always the client's doing).
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    #[error(transparent)]
    Malformed(#[from] DecodeError),
    #[error("the client closed the connection before its body ended")]
    Closed,
    #[error("reading the request body failed: {0}")]
    Io(#[source] io::Error),
}

#[derive(Default)]
pub struct Chan {
    frames: VecDeque<Frame<Bytes>>,
    queued: usize,
    /// `Some(Ok)`: ended; `Some(Err)`: failed (the error taken once read).
    end: Option<Result<(), Option<RecvError>>>,
    /// The handler asked for data and found none.
    wanted: bool,
    rx_dropped: bool,
    rx: Option<Waker>,
    tx: Option<Waker>,
}

impl Chan {
    fn wake_rx(&mut self) {
        if let Some(w) = self.rx.take() {
            w.wake();
        }
    }
}

/// A request body, read from the client's connection as the handler polls it.
pub enum RecvBody {
    Empty,
    Chan(Arc<Mutex<Chan>>),
}

impl RecvBody {
    fn lock(c: &Mutex<Chan>) -> std::sync::MutexGuard<'_, Chan> {
        c.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = RecvError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RecvError>>> {
        let RecvBody::Chan(c) = self.get_mut() else {
            return Poll::Ready(None);
        };
        let mut ch = RecvBody::lock(c);
        if let Some(f) = ch.frames.pop_front() {
            ch.queued -= (FRAME_COST + f.data_ref().map_or(0, |d| d.len())).min(ch.queued);
            if let Some(w) = ch.tx.take() {
                w.wake();
            }
            return Poll::Ready(Some(Ok(f)));
        }
        match &mut ch.end {
            Some(Ok(())) => Poll::Ready(None),
            // The failure stays: a reader polling again never sees a clean end.
            Some(Err(e)) => Poll::Ready(Some(Err(e.take().unwrap_or(RecvError::Closed)))),
            None => {
                ch.wanted = true;
                ch.rx = Some(cx.waker().clone());
                if let Some(w) = ch.tx.take() {
                    w.wake();
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RecvBody::Empty => true,
            RecvBody::Chan(c) => {
                let ch = RecvBody::lock(c);
                ch.frames.is_empty() && matches!(ch.end, Some(Ok(())))
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RecvBody::Empty => SizeHint::with_exact(0),
            RecvBody::Chan(_) => SizeHint::default(),
        }
    }
}

impl Drop for RecvBody {
    fn drop(&mut self) {
        if let RecvBody::Chan(c) = self {
            let mut ch = RecvBody::lock(c);
            ch.rx_dropped = true;
            ch.frames.clear();
            if let Some(w) = ch.tx.take() {
                w.wake();
            }
        }
    }
}

/// The connection's end of a request body.
struct Feed {
    dec: Decoder,
    chan: Arc<Mutex<Chan>>,
    expect_continue: bool,
    done: bool,
    /// The body was read to its end.
    complete: bool,
}

impl Drop for Feed {
    /// A body the connection stops reading (the exchange ended first) fails for its reader,
    /// instead of waiting for data that will never come.
    fn drop(&mut self) {
        if !self.done {
            let mut ch = RecvBody::lock(&self.chan);
            ch.end = Some(Err(Some(RecvError::Closed)));
            ch.wake_rx();
        }
    }
}

enum Outcome {
    KeepAlive,
    Close,
    Upgrade(oneshot::Sender<Upgraded>),
}

/// Serves HTTP/1 requests on `io` with `handler` until the connection ends, the client is idle
/// past the header read timeout, or `drain` turns true (between requests).
pub async fn serve<B, F>(
    io: Io,
    cfg: ServerConfig,
    mut handler: F,
    drain: &mut watch::Receiver<bool>,
) where
    F: FnMut(Request<RecvBody>) -> ResponseFuture<B>,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display,
{
    let mut wire = Wire::new(io);
    // One timer for the connection's life, reset for each wait.
    let mut timer = Box::pin(tokio::time::sleep(cfg.header_read_timeout));
    loop {
        timer
            .as_mut()
            .reset(Instant::now() + cfg.header_read_timeout);
        let head = match read_head(&mut wire, &cfg, timer.as_mut(), drain).await {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "request head refused");
                refuse(&mut wire, &e);
                break;
            }
        };
        let RequestHead {
            mut parts,
            framing,
            keep_alive,
            expect_continue,
        } = head;
        let (body, feed) = match framing {
            Framing::Empty => (RecvBody::Empty, None),
            f => {
                let chan = Arc::new(Mutex::new(Chan::default()));
                let feed = Feed {
                    dec: Decoder::new(f),
                    chan: Arc::clone(&chan),
                    expect_continue,
                    done: false,
                    complete: false,
                };
                (RecvBody::Chan(chan), Some(feed))
            }
        };
        let upgrade_tx = if is_upgrade_request(&parts.headers) {
            let (tx, rx) = oneshot::channel();
            parts
                .extensions
                .insert(OnUpgrade(Arc::new(Mutex::new(Some(rx)))));
            Some(tx)
        } else {
            None
        };
        let method_head = parts.method == Method::HEAD;
        let version = parts.version;
        let fut = handler(Request::from_parts(parts, body));
        let ex = Exchange {
            wire: &mut wire,
            max_head: cfg.max_head_bytes,
            feed,
            fut: Some(fut),
            body: None,
            enc: Encoder::None,
            method_head,
            version,
            keep: keep_alive,
            upgrade_tx,
            upgrading: false,
            body_done: false,
            drain,
            timer: timer.as_mut(),
            stalled: false,
        };
        match ex.await {
            Outcome::KeepAlive => continue,
            Outcome::Close => break,
            Outcome::Upgrade(tx) => {
                let (io, pre) = wire.into_parts();
                let _ = tx.send(Upgraded::new(io, pre));
                return;
            }
        }
    }
    close(wire).await;
}

/// What a closing connection reads and discards at most.
const LINGER_BYTES: usize = 256 * 1024;

/// Writes what is left (a refusal) and closes the write side, within a bound.
async fn close(mut wire: Wire) {
    let done = async {
        if wire.has_output() {
            std::future::poll_fn(|cx| wire.poll_flush_out(cx)).await?;
        }
        tokio::io::AsyncWriteExt::shutdown(&mut wire.io).await?;
        // Read what the client still sends (an unread body) before dropping the socket:
        // closing with unread data makes the kernel reset the connection, which can destroy
        // the answer before the client reads it (RFC 9112 section 9.6).
        let mut drained = 0usize;
        while drained < LINGER_BYTES {
            wire.rbuf.clear();
            match std::future::poll_fn(|cx| wire.poll_read_more(cx)).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
        Ok::<(), io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), done).await;
}

/// Answers a head that could not be taken, and closes.
fn refuse(wire: &mut Wire, e: &HeadError) {
    let text = format!("{}\n", e.what);
    let out = wire.out();
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(e.status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(e.status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\ncontent-type: text/plain\r\nl5d-err: ");
    out.put_slice(e.what.as_bytes());
    out.put_slice(b"\r\ncontent-length: ");
    out.put_slice(head::itoa(text.len() as u64).as_bytes());
    out.put_slice(b"\r\nconnection: close\r\n\r\n");
    out.put_slice(text.as_bytes());
}

enum Step {
    Read(io::Result<usize>),
    Timeout,
    Drain,
}

/// The next request head; `Ok(None)` when the connection ends first (closed, idle too long,
/// or drained while idle).
async fn read_head(
    wire: &mut Wire,
    cfg: &ServerConfig,
    mut timer: Pin<&mut Sleep>,
    drain: &mut watch::Receiver<bool>,
) -> Result<Option<RequestHead>, HeadError> {
    loop {
        if !wire.rbuf.is_empty() {
            if let Some(h) = head::parse_request(&mut wire.rbuf)? {
                return Ok(Some(h));
            }
            if wire.rbuf.len() >= cfg.max_head_bytes {
                return Err(HeadError {
                    status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    what: "request head too large",
                });
            }
        }
        let idle = wire.rbuf.is_empty();
        if idle {
            if *drain.borrow() {
                return Ok(None);
            }
            wire.release_buffers();
        }
        let step = tokio::select! {
            biased;
            r = std::future::poll_fn(|cx| {
                if idle {
                    if let Err(e) = std::task::ready!(wire.poll_read_ready(cx)) {
                        return Poll::Ready(Err(e));
                    }
                }
                wire.poll_read_more(cx)
            }) => Step::Read(r),
            _ = timer.as_mut() => Step::Timeout,
            _ = drain.wait_for(|v| *v), if idle => Step::Drain,
        };
        match step {
            Step::Read(Ok(0)) | Step::Read(Err(_)) | Step::Timeout | Step::Drain => {
                return Ok(None)
            }
            Step::Read(Ok(_)) => {}
        }
    }
}

/// One request and its response on the connection.
struct Exchange<'a, B> {
    wire: &'a mut Wire,
    max_head: usize,
    feed: Option<Feed>,
    fut: Option<ResponseFuture<B>>,
    body: Option<B>,
    enc: Encoder,
    method_head: bool,
    version: Version,
    keep: bool,
    upgrade_tx: Option<oneshot::Sender<Upgraded>>,
    upgrading: bool,
    body_done: bool,
    drain: &'a watch::Receiver<bool>,
    /// Bounds a write that makes no progress.
    timer: Pin<&'a mut Sleep>,
    stalled: bool,
}

impl<B> Exchange<'_, B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    /// Moves the request body along: true when something happened.
    fn poll_feed(&mut self, cx: &mut Context<'_>) -> Result<bool, ()> {
        let responding = self.fut.is_none();
        let Some(f) = self.feed.as_mut().filter(|f| !f.done) else {
            return Ok(false);
        };
        let mut progress = false;
        loop {
            {
                let mut ch = RecvBody::lock(&f.chan);
                if ch.rx_dropped {
                    f.done = true;
                    return Ok(true);
                }
                if f.expect_continue && responding {
                    // The answer has begun: a 100 now would land inside it. The client may
                    // still send its body; if not, the connection closes after the answer.
                    f.expect_continue = false;
                }
                if f.expect_continue {
                    if !ch.wanted {
                        ch.tx = Some(cx.waker().clone());
                        return Ok(progress);
                    }
                    f.expect_continue = false;
                    self.wire.out().put_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                    progress = true;
                }
                if ch.queued >= BODY_CHANNEL_BYTES {
                    ch.tx = Some(cx.waker().clone());
                    return Ok(progress);
                }
            }
            let push = |f: &mut Feed, item: Result<Option<Frame<Bytes>>, RecvError>| {
                let mut ch = RecvBody::lock(&f.chan);
                match item {
                    Ok(Some(frame)) => {
                        ch.queued += FRAME_COST + frame.data_ref().map_or(0, |d| d.len());
                        ch.frames.push_back(frame);
                    }
                    Ok(None) => {
                        ch.end = Some(Ok(()));
                        f.done = true;
                        f.complete = true;
                    }
                    Err(e) => {
                        ch.end = Some(Err(Some(e)));
                        f.done = true;
                    }
                }
                ch.wake_rx();
            };
            match f.dec.decode(&mut self.wire.rbuf) {
                Ok(Decoded::Data(b)) => push(f, Ok(Some(Frame::data(b)))),
                Ok(Decoded::Trailers(t)) => push(f, Ok(Some(Frame::trailers(t)))),
                Ok(Decoded::End) => {
                    push(f, Ok(None));
                    return Ok(true);
                }
                Ok(Decoded::More) => match self.wire.poll_read_more(cx) {
                    Poll::Ready(Ok(0)) => {
                        push(f, Err(RecvError::Closed));
                        return Err(());
                    }
                    Poll::Ready(Ok(_)) => {}
                    Poll::Ready(Err(e)) => {
                        push(f, Err(RecvError::Io(e)));
                        return Err(());
                    }
                    Poll::Pending => return Ok(progress),
                },
                Err(e) => {
                    push(f, Err(RecvError::Malformed(e)));
                    // The rest of the connection cannot be framed: answer, then close.
                    self.keep = false;
                    return Ok(true);
                }
            }
            progress = true;
        }
    }

    /// Watches the idle read side while the response is prepared and written: a client that
    /// hangs up ends the exchange (as hyper does without half-close); pipelined bytes wait.
    fn poll_hangup(&mut self, cx: &mut Context<'_>) -> Result<bool, ()> {
        if self.feed.as_ref().is_some_and(|f| !f.done) || self.wire.rbuf.len() >= self.max_head {
            return Ok(false);
        }
        match self.wire.poll_read_more(cx) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Err(()),
            Poll::Ready(Ok(_)) => Ok(true),
            Poll::Pending => Ok(false),
        }
    }

    fn start_response(&mut self, resp: Response<B>) {
        let (mut parts, body) = resp.into_parts();
        let status = parts.status;
        if status == StatusCode::SWITCHING_PROTOCOLS && self.upgrade_tx.is_some() {
            self.upgrading = true;
        }
        if *self.drain.borrow() {
            self.keep = false;
        }
        // An answer before the whole body was read: the connection cannot be reused, and the
        // client is told so.
        if self.feed.as_ref().is_some_and(|f| !f.done) {
            self.keep = false;
        }
        if status.is_informational() && !self.upgrading {
            // An interim status is not an answer (`/$/io.buoyant.http.status/100`, or an
            // endpoint's stray 1xx): the client would wait for a final one for ever.
            parts.status = StatusCode::BAD_GATEWAY;
            parts.headers.clear();
            parts.headers.insert(
                http::header::CONTENT_LENGTH,
                http::HeaderValue::from_static("0"),
            );
        }
        let status = parts.status;
        parts.headers.remove(http::header::TRANSFER_ENCODING);
        let bodiless = self.method_head
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let (enc, add) = if bodiless {
            (Encoder::None, None)
        } else if let Some(n) = content_length_of(&parts.headers) {
            (Encoder::Length(n), None)
        } else if let Some(n) = body.size_hint().exact() {
            parts.headers.remove(http::header::CONTENT_LENGTH);
            (Encoder::Length(n), Some(Framing::Length(n)))
        } else if self.version == Version::HTTP_11 {
            parts.headers.remove(http::header::CONTENT_LENGTH);
            (Encoder::Chunked, Some(Framing::Chunked))
        } else {
            parts.headers.remove(http::header::CONTENT_LENGTH);
            self.keep = false;
            (Encoder::Eof, None)
        };
        let conn = if self.upgrading {
            ConnHeader::None
        } else if !self.keep {
            ConnHeader::Close
        } else if self.version == Version::HTTP_10 {
            ConnHeader::KeepAlive
        } else {
            ConnHeader::None
        };
        head::write_response(self.wire.out(), self.version, &parts, add, conn);
        self.enc = enc;
        if bodiless || self.upgrading {
            self.body_done = true;
        } else {
            self.body = Some(body);
        }
    }

    /// Writes the response along: `Ready(Err)` when the connection must close at once. What
    /// the body has ready is gathered first (up to `COALESCE_BYTES`), so the head and a small
    /// body go out in one write.
    fn poll_respond(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
        loop {
            let mut body_pending = false;
            while !self.body_done && self.wire.queued() < COALESCE_BYTES {
                let Some(body) = self.body.as_mut() else {
                    self.body_done = true;
                    break;
                };
                match Pin::new(body).poll_frame(cx) {
                    Poll::Pending => {
                        body_pending = true;
                        break;
                    }
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => {
                            let mut hdr = std::mem::take(self.wire.out());
                            let r = self.enc.data(data, &mut hdr);
                            *self.wire.out() = hdr;
                            match r {
                                Ok(Some(d)) => {
                                    self.wire.push(d);
                                    let tail = self.enc.after_data();
                                    self.wire.out().put_slice(tail);
                                }
                                Ok(None) => {}
                                Err(e) => {
                                    tracing::debug!(error = %e, "response body overran its length");
                                    return Poll::Ready(Err(()));
                                }
                            }
                        }
                        Err(frame) => {
                            let trailers: Option<HeaderMap> = frame.into_trailers().ok();
                            if self.finish_body(trailers.as_ref()).is_err() {
                                return Poll::Ready(Err(()));
                            }
                        }
                    },
                    Poll::Ready(None) => {
                        if self.finish_body(None).is_err() {
                            return Poll::Ready(Err(()));
                        }
                    }
                    Poll::Ready(Some(Err(e))) => {
                        tracing::debug!(error = %e, "response body failed; closing the connection");
                        return Poll::Ready(Err(()));
                    }
                }
            }
            if self.wire.has_output() {
                match self.wire.poll_flush_out(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(_)) => return Poll::Ready(Err(())),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if self.body_done {
                return Poll::Ready(Ok(()));
            }
            if body_pending {
                return Poll::Pending;
            }
        }
    }

    fn finish_body(&mut self, trailers: Option<&HeaderMap>) -> Result<(), ()> {
        self.body = None;
        self.body_done = true;
        let mut out = std::mem::take(self.wire.out());
        let r = self.enc.end(trailers, &mut out);
        *self.wire.out() = out;
        if self.enc == Encoder::Eof {
            self.keep = false;
        }
        r.map_err(|e| tracing::debug!(error = %e, "response body ended short of its length"))
    }

    fn outcome(&mut self) -> Outcome {
        if self.upgrading {
            if let Some(tx) = self.upgrade_tx.take() {
                return Outcome::Upgrade(tx);
            }
        }
        let unread = self.feed.as_ref().is_some_and(|f| !f.complete);
        if self.keep && !unread {
            Outcome::KeepAlive
        } else {
            Outcome::Close
        }
    }
}

impl<B> Future for Exchange<'_, B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let this = self.get_mut();
        loop {
            let mut progress = match this.poll_feed(cx) {
                Ok(p) => p,
                // The client went away mid-body: the handler hears it from the body; the
                // connection cannot continue.
                Err(()) => {
                    this.keep = false;
                    true
                }
            };
            // A client that hangs up ends the exchange, before or during its answer (a long
            // poll or an event stream would otherwise hold the endpoint's connection).
            match this.poll_hangup(cx) {
                Ok(p) => progress |= p,
                Err(()) => return Poll::Ready(Outcome::Close),
            }
            // A `100 Continue` goes out at once, while the answer is still being prepared.
            if this.fut.is_some() && this.wire.has_output() {
                if let Poll::Ready(Err(_)) = this.wire.poll_flush_out(cx) {
                    return Poll::Ready(Outcome::Close);
                }
            }
            if let Some(fut) = this.fut.as_mut() {
                if let Poll::Ready(resp) = fut.as_mut().poll(cx) {
                    this.fut = None;
                    this.start_response(resp);
                    progress = true;
                }
            }
            if this.fut.is_none() {
                let before = this.wire.written();
                let r = this.poll_respond(cx);
                if this.wire.written() != before {
                    this.stalled = false;
                }
                match r {
                    Poll::Ready(Ok(())) => return Poll::Ready(this.outcome()),
                    Poll::Ready(Err(())) => return Poll::Ready(Outcome::Close),
                    Poll::Pending => {
                        if this.wire.has_output() {
                            if !this.stalled {
                                this.stalled = true;
                                this.timer
                                    .as_mut()
                                    .reset(Instant::now() + WRITE_STALL_TIMEOUT);
                            }
                            if this.timer.as_mut().poll(cx).is_ready() {
                                tracing::debug!("client stopped reading; connection closed");
                                return Poll::Ready(Outcome::Close);
                            }
                        }
                    }
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }
}
