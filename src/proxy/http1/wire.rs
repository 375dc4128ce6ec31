//! One HTTP/1 connection's bytes: the `Io` stream, a read buffer that heads and bodies are
//! sliced out of, and an ordered queue of outgoing byte slices written with one vectored
//! write. Buffers are allocated when there is something to read or write and dropped while the
//! connection is idle, so an idle keep-alive connection holds no buffer. It parses nothing.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::transport::Io;

/// Bytes asked of the kernel per read.
pub const READ_CHUNK: usize = 8 * 1024;
/// Output gathered before a write: a head and the body frames ready with it leave in one
/// vectored write (one system call, one segment for a small answer).
pub const COALESCE_BYTES: usize = 64 * 1024;
/// Slices handed to one vectored write.
const MAX_IOVECS: usize = 16;

pub struct Wire {
    pub io: Io,
    /// Bytes read and not yet taken.
    pub rbuf: BytesMut,
    /// Heads and small chunks being written; sealed into the queue in order.
    hbuf: BytesMut,
    queue: VecDeque<Bytes>,
    /// Bytes in `queue`.
    queued: usize,
    written: usize,
}

impl Wire {
    pub fn new(io: Io) -> Wire {
        Wire {
            io,
            rbuf: BytesMut::new(),
            hbuf: BytesMut::new(),
            queue: VecDeque::new(),
            queued: 0,
            written: 0,
        }
    }

    /// Reads more into the read buffer; `Ok(0)` is the end of the stream. The kernel writes
    /// into a stack buffer and only the bytes that came are copied to the heap: a request of
    /// 200 bytes costs a 200-byte allocation (a fast one), not a fresh 8 KB buffer per message.
    pub fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut tmp = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut rb = ReadBuf::uninit(&mut tmp);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb))?;
        let got = rb.filled();
        self.rbuf.extend_from_slice(got);
        Poll::Ready(Ok(got.len()))
    }

    /// Reads at most one byte, into no buffer: an idle connection's check for a close (0) or
    /// bytes nobody asked for.
    pub fn poll_probe(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut b = [0u8; 1];
        let mut rb = ReadBuf::new(&mut b);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb))?;
        Poll::Ready(Ok(rb.filled().len()))
    }

    /// Resolves once the stream has something to read (plaintext: without a buffer).
    pub fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io.poll_read_ready(cx)
    }

    /// Where a head (or chunk framing) is written, before `poll_flush_out` sends it.
    pub fn out(&mut self) -> &mut BytesMut {
        &mut self.hbuf
    }

    fn seal(&mut self) {
        if !self.hbuf.is_empty() {
            let b = self.hbuf.split().freeze();
            self.queued += b.len();
            self.queue.push_back(b);
        }
    }

    /// Queues `b` after what was written so far.
    pub fn push(&mut self, b: Bytes) {
        self.seal();
        if !b.is_empty() {
            self.queued += b.len();
            self.queue.push_back(b);
        }
    }

    /// Bytes waiting to be written.
    pub fn queued(&self) -> usize {
        self.queued + self.hbuf.len()
    }

    /// Whether bytes wait to be written.
    pub fn has_output(&self) -> bool {
        !self.hbuf.is_empty() || !self.queue.is_empty()
    }

    /// Writes everything queued, then flushes.
    pub fn poll_flush_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.seal();
        while !self.queue.is_empty() {
            let mut slices = [io::IoSlice::new(&[]); MAX_IOVECS];
            let mut k = 0;
            for (s, b) in slices.iter_mut().zip(self.queue.iter()) {
                *s = io::IoSlice::new(b);
                k += 1;
            }
            let n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..k]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written = self.written.wrapping_add(n);
            self.queued -= n.min(self.queued);
            let mut left = n;
            while left > 0 {
                let Some(front) = self.queue.front_mut() else {
                    break;
                };
                if front.len() <= left {
                    left -= front.len();
                    self.queue.pop_front();
                } else {
                    front.advance(left);
                    left = 0;
                }
            }
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Bytes written so far (wrapping): a write that made progress changed it.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Lets go of empty buffers (an idle connection keeps none).
    pub fn release_buffers(&mut self) {
        if self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
        }
        if self.hbuf.is_empty() {
            self.hbuf = BytesMut::new();
        }
        if self.queue.is_empty() && self.queue.capacity() > 0 {
            self.queue = VecDeque::new();
        }
    }

    /// The stream and the bytes read past the last message (an upgraded connection's start).
    pub fn into_parts(self) -> (Io, Bytes) {
        (self.io, self.rbuf.freeze())
    }
}

/// An upgraded connection: the bytes already read, then the stream.
pub struct Upgraded {
    io: Io,
    pre: Bytes,
}

impl Upgraded {
    pub fn new(io: Io, pre: Bytes) -> Upgraded {
        Upgraded { io, pre }
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.pre.is_empty() {
            let n = this.pre.len().min(buf.remaining());
            buf.put_slice(&this.pre[..n]);
            this.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, b)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
