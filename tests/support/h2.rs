//! An HTTP/2 backend and client for tests (`#[path]`-included by the tests that use them): the
//! backend is gRPC-shaped (messages back, `grpc-status` in trailers); see `h2_backend`.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub type Body =
    http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub fn full(b: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(b.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn trailers(status: &str) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", status.parse().unwrap());
    t
}

/// A body from a channel of frames.
pub fn channel_body() -> (mpsc::Sender<Result<Frame<Bytes>, Infallible>>, Body) {
    let (tx, rx) = mpsc::channel(4);
    let s = tokio_stream_from(rx);
    (
        tx,
        StreamBody::new(s).map_err(|never| match never {}).boxed(),
    )
}

/// A body from a channel of frames or errors (an error resets the stream).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub fn channel_body_fallible() -> (mpsc::Sender<Result<Frame<Bytes>, BoxError>>, Body) {
    let (tx, rx) = mpsc::channel(4);
    (tx, StreamBody::new(tokio_stream_from(rx)).boxed())
}

pub fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The backend: an HTTP/2 (prior knowledge) server.
/// - `/echo.Echo/Unary`: the whole request body back, headers it saw, trailers `grpc-status: 0`.
/// - `/echo.Echo/Stream`: each request frame echoed as it arrives, then `grpc-status: 0`.
/// - `/echo.Echo/Count`: the number of request body bytes, after reading them all.
/// - `/echo.Echo/Big?n=N`: N bytes streamed in 64 KB frames.
/// - `/echo.Echo/Fail`: trailers-only `grpc-status: 14`.
/// - `/echo.Echo/Flaky`: the first call's trailers say `grpc-status: 14`, later ones echo.
/// - `/echo.Echo/Die`: one frame, then the connection is dropped.
pub async fn h2_backend() -> SocketAddr {
    h2_backend_with_state().await.0
}

/// What the backend saw that a test may ask about.
#[derive(Clone, Default)]
pub struct Seen {
    /// The last request body error (`/echo.Echo/Stream`), as its h2 reason if it had one.
    pub body_error: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    /// When set, every call is answered 200 with one message and `grpc-status: 14` in its
    /// trailers, after `fail_delay_ms`.
    pub fail_all: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub fail_delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

pub async fn h2_backend_with_state() -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let calls = calls.clone();
            let seen = seen2.clone();
            tokio::spawn(async move {
                let (kill_tx, mut kill_rx) = mpsc::channel::<()>(1);
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let kill = kill_tx.clone();
                    let calls = calls.clone();
                    let seen = seen.clone();
                    async move { Ok::<_, Infallible>(answer(req, kill, calls, seen).await) }
                });
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc);
                tokio::select! {
                    _ = conn => {}
                    _ = kill_rx.recv() => {}
                }
            });
        }
    });
    (addr, seen)
}

pub async fn answer(
    req: Request<Incoming>,
    kill: mpsc::Sender<()>,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    state: Seen,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    if state.fail_all.load(std::sync::atomic::Ordering::SeqCst) {
        let delay = state
            .fail_delay_ms
            .load(std::sync::atomic::Ordering::SeqCst);
        let (tx, body) = channel_body();
        tokio::spawn(async move {
            let _ = tx
                .send(Ok(Frame::data(Bytes::from_static(b"partial"))))
                .await;
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let _ = tx.send(Ok(Frame::trailers(trailers("14")))).await;
        });
        return Response::builder()
            .header("content-type", "application/grpc")
            .header("x-backend", "failing")
            .body(body)
            .unwrap();
    }
    let seen = format!(
        "authority={} te={} dst={}",
        req.uri().authority().map(|a| a.as_str()).unwrap_or("-"),
        req.headers()
            .get("te")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-"),
        req.headers()
            .get("l5d-dst-service")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-"),
    );
    let grpc = |body: Body| {
        Response::builder()
            .header("content-type", "application/grpc")
            .header("x-seen", seen.clone())
            .body(body)
            .unwrap()
    };
    match path.as_str() {
        "/echo.Echo/Unary" => {
            let data = req.into_body().collect().await.unwrap().to_bytes();
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                let _ = tx.send(Ok(Frame::data(data))).await;
                let _ = tx.send(Ok(Frame::trailers(trailers("0")))).await;
            });
            grpc(body)
        }
        "/echo.Echo/Flaky" => {
            // The first call fails with UNAVAILABLE in its trailers; later ones echo.
            let data = req.into_body().collect().await.unwrap().to_bytes();
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                let status = if n == 0 { "14" } else { "0" };
                let _ = tx.send(Ok(Frame::data(data))).await;
                let _ = tx.send(Ok(Frame::trailers(trailers(status)))).await;
            });
            let mut r = grpc(body);
            r.headers_mut()
                .insert("x-attempt", n.to_string().parse().unwrap());
            r
        }
        "/echo.Echo/Stream" => {
            let (tx, body) = channel_body();
            let mut inb = req.into_body();
            tokio::spawn(async move {
                loop {
                    match inb.frame().await {
                        Some(Ok(f)) => {
                            if let Ok(d) = f.into_data() {
                                if tx.send(Ok(Frame::data(d))).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Some(Err(e)) => {
                            *state.body_error.lock().unwrap() = Some(reason_of(&e));
                            return;
                        }
                        None => break,
                    }
                }
                let _ = tx.send(Ok(Frame::trailers(trailers("0")))).await;
            });
            grpc(body)
        }
        "/echo.Echo/Count" => {
            let mut n = 0usize;
            let mut inb = req.into_body();
            while let Some(Ok(f)) = inb.frame().await {
                if let Ok(d) = f.into_data() {
                    n += d.len();
                }
            }
            grpc(full(n.to_string()))
        }
        "/echo.Echo/Big" => {
            let n: usize = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("n="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                let mut left = n;
                while left > 0 {
                    let k = left.min(chunk.len());
                    if tx.send(Ok(Frame::data(chunk.slice(..k)))).await.is_err() {
                        return;
                    }
                    left -= k;
                }
                let _ = tx.send(Ok(Frame::trailers(trailers("0")))).await;
            });
            grpc(body)
        }
        "/echo.Echo/Fail" => Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", "14")
            .header("grpc-message", "backend unavailable")
            .body(full(Bytes::new()))
            .unwrap(),
        "/echo.Echo/Die" => {
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"first")))).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = kill.send(()).await;
                // Keep the body open: the connection dies under it.
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop(tx);
            });
            grpc(body)
        }
        "/echo.Echo/Reset" => {
            // One message, then the stream is reset with REFUSED_STREAM.
            let (tx, rx) =
                mpsc::channel::<Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>>(2);
            tokio::spawn(async move {
                let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"one")))).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = tx
                    .send(Err(Box::new(h2::Error::from(h2::Reason::REFUSED_STREAM))))
                    .await;
            });
            let body = StreamBody::new(tokio_stream_from(rx)).boxed();
            grpc(body)
        }
        "/echo.Echo/Slow" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            grpc(full(Bytes::new()))
        }
        _ => Response::builder()
            .status(404)
            .body(full(Bytes::new()))
            .unwrap(),
    }
}

/// An h2 (prior knowledge) client connection.
pub async fn h2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Body> {
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

pub fn grpc_req(authority: &str, path: &str, body: Body) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri(format!("http://{authority}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .unwrap()
}

/// Reads a response body whole: its data and its trailers.
pub async fn read_all(r: Response<Incoming>) -> (Bytes, Option<HeaderMap>) {
    let c = r.into_body().collect().await.unwrap();
    let t = c.trailers().cloned();
    (c.to_bytes(), t)
}

/// The h2 reset reason somewhere in an error's sources, or its text.
pub fn reason_of(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<h2::Error>() {
            if let Some(r) = h.reason() {
                return format!("{r:?}");
            }
        }
        cur = err.source();
    }
    e.to_string()
}
