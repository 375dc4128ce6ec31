//! `io.l5d.httpController`: namerd's REST API under `/api/1` (reference section 1.24), served
//! over HTTP/1.1, plus what Linkerd's lacked: `GET /api/1/history/<ns>` and
//! `POST /api/1/rollback/<ns>?version=V`. Dtabs are read and written as `application/dtab` text
//! or JSON; versions travel as `ETag` / `If-Match`. `?watch=true` answers stream one JSON value
//! per line on every change. Binding uses the namespace's dtab followed by the request's
//! `dtab=`, then namerd's own namers.
//!
//! Bounds: request bodies of [`MAX_DTAB_BYTES`], [`MAX_WATCHES`] open watch streams, a header
//! read timeout, and [`SETTLE_TIMEOUT`] on one-shot binds. Namerd's admin pages are here too
//! ([`admin`]).

// Helpers return the answer to send as their error; it is built once per request.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{json, Value};
use switchboard_namer_core::delegate::{bound_tree_json, delegate_json};
use switchboard_namer_core::{Addr, Bound, DefaultInterpreter, Dtab, NameTree, Path, State, Var};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};

use crate::api::{dtab_from_json, dtab_json, DTAB_MEDIA_TYPE};
use crate::namespaces::{version_json, Change, Namespaces};
use crate::net::Acceptor;
use crate::store::{check_namespace, StoreError, MAX_DTAB_BYTES};

/// Open watch streams at once; more are answered 503.
pub const MAX_WATCHES: usize = 10_000;
/// Open watch streams from one client address (a host's linker watches every name it routes).
pub const MAX_WATCHES_PER_PEER: usize = 2_000;
/// A watcher that reads nothing for this long is dropped: its stream ends (and a connection
/// whose writes make no progress for `net::WRITE_STALL_TIMEOUT` is closed).
pub const WATCH_SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on reading a request body.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a one-shot bind, addr or delegate waits for Pending to resolve.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client has to send a request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Linkers name themselves in this header (else they are known by their address).
pub const CLIENT_HEADER: &str = "l5d-namerd-client";
/// Longest `path=` or `dtab=` query value accepted.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;

type Body = BoxBody<Bytes, Infallible>;

/// Request counters for the admin page.
#[derive(Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub writes: AtomicU64,
    pub conflicts: AtomicU64,
    pub watches_open: AtomicU64,
    pub watches_refused: AtomicU64,
}

pub struct Controller {
    pub namespaces: Arc<Namespaces>,
    pub interp: Arc<DefaultInterpreter>,
    pub stats: Stats,
    watches: Arc<Semaphore>,
    per_peer: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

impl Controller {
    pub fn new(namespaces: Arc<Namespaces>, interp: Arc<DefaultInterpreter>) -> Arc<Controller> {
        Arc::new(Controller {
            namespaces,
            interp,
            stats: Stats::default(),
            watches: Arc::new(Semaphore::new(MAX_WATCHES)),
            per_peer: Default::default(),
        })
    }
}

impl Controller {
    /// A place among the [`MAX_WATCHES`] open watch streams (counted while held), or `None`
    /// (counted as refused) when all are taken.
    pub fn watch_permit(self: &Arc<Self>, peer: std::net::IpAddr) -> Option<WatchPermit> {
        {
            let mut per = self.per_peer.lock().unwrap_or_else(|p| p.into_inner());
            let n = per.entry(peer).or_insert(0);
            if *n >= MAX_WATCHES_PER_PEER {
                self.stats.watches_refused.fetch_add(1, Relaxed);
                return None;
            }
            *n += 1;
        }
        match Arc::clone(&self.watches).try_acquire_owned() {
            Ok(p) => {
                self.stats.watches_open.fetch_add(1, Relaxed);
                Some(WatchPermit(p, Arc::clone(self), peer))
            }
            Err(_) => {
                self.release_peer(peer);
                self.stats.watches_refused.fetch_add(1, Relaxed);
                None
            }
        }
    }

    fn release_peer(&self, peer: std::net::IpAddr) {
        let mut per = self.per_peer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per.get_mut(&peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per.remove(&peer);
            }
        }
    }
}

/// One open watch stream.
pub struct WatchPermit(
    #[allow(dead_code)] tokio::sync::OwnedSemaphorePermit,
    Arc<Controller>,
    std::net::IpAddr,
);

impl Drop for WatchPermit {
    fn drop(&mut self) {
        self.1.stats.watches_open.fetch_sub(1, Relaxed);
        self.1.release_peer(self.2);
    }
}

/// Connections one listener serves at once; past it, accepting waits for one to close.
pub const MAX_CONNECTIONS: usize = 20_000;

/// Serves `service` on `listener`, each connection taken through `acceptor` (plain or TLS),
/// until the task is dropped.
pub async fn serve<F, Fut>(listener: TcpListener, acceptor: Acceptor, service: F)
where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    crate::net::accept_loop(listener, acceptor, MAX_CONNECTIONS, move |io, peer| {
        let service = service.clone();
        async move {
            let svc = hyper::service::service_fn(move |req| {
                let f = service(req, peer);
                async move { Ok::<_, Infallible>(f.await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                // A watcher that stopped reading is dropped with its connection (the acceptor's
                // write-stall bound).
                .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
                .await;
        }
    })
    .await
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut m = msg.into();
    if !m.ends_with('\n') {
        m.push('\n');
    }
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(m))
        .unwrap_or_else(|_| Response::new(full("")))
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(full(""));
    *r.status_mut() = status;
    r
}

fn json_resp(v: &Value) -> Response<Body> {
    let mut body = v.to_string();
    body.push('\n');
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .unwrap_or_else(|_| Response::new(full("")))
}

fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// `If-Match`: a version (quoted or not), `*` (any), or absent.
fn if_match(req: &Request<Incoming>) -> Result<Option<u64>, Response<Body>> {
    let Some(v) = req.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("").trim();
    if s == "*" {
        return Ok(None);
    }
    let s = s.strip_prefix("W/").unwrap_or(s).trim_matches('"');
    s.parse::<u64>().map(Some).map_err(|_| {
        text(
            StatusCode::PRECONDITION_FAILED,
            format!("If-Match {s:?} is not a version this namerd issued"),
        )
    })
}

/// Query parameters, percent-decoded; repeated keys keep the last value.
fn query(req: &Request<Incoming>) -> Result<std::collections::HashMap<String, String>, String> {
    let mut out = std::collections::HashMap::new();
    let Some(q) = req.uri().query() else {
        return Ok(out);
    };
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |s: &str| percent_decode(&s.replace('+', " "));
        let v = dec(v)
            .ok_or_else(|| format!("query parameter {k:?} is not valid percent-encoded UTF-8"))?;
        if v.len() > MAX_QUERY_BYTES {
            return Err(format!(
                "query parameter {k:?} is over {MAX_QUERY_BYTES} bytes"
            ));
        }
        out.insert(dec(k).unwrap_or_default(), v);
    }
    Ok(out)
}

/// Percent-decoding that refuses a `%` not followed by two hex digits, and what is not UTF-8
/// once decoded.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let escapes_ok = b
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == b'%')
        .all(|(i, _)| {
            b.get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
        });
    if !escapes_ok {
        return None;
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// The name a linker gave itself, if any: one-shot requests without one (people, scripts) are
/// not listed as linkers.
fn named_client(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get(CLIENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 256)
        .map(str::to_string)
}

fn client_name(req: &Request<Incoming>, peer: SocketAddr) -> String {
    req.headers()
        .get(CLIENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 256)
        .map(str::to_string)
        .unwrap_or_else(|| peer.to_string())
}

/// The REST API.
pub async fn handle(
    c: Arc<Controller>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    c.stats.requests.fetch_add(1, Relaxed);
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix("/api/1/") else {
        return text(StatusCode::NOT_FOUND, format!("no such API: {path}"));
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let q = match query(&req) {
        Ok(q) => q,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let watch = q.get("watch").is_some_and(|v| v == "true" || v.is_empty());
    let ns_ok = |ns: &str| check_namespace(ns).map_err(|e| text(StatusCode::BAD_REQUEST, e));
    match (req.method().clone(), parts.as_slice()) {
        (Method::GET, ["dtabs"]) => list(&c, &req, peer, watch).await,
        (m, ["dtabs", ns]) => {
            if let Err(r) = ns_ok(ns) {
                return r;
            }
            let ns = ns.to_string();
            match m {
                Method::GET | Method::HEAD => get_dtab(&c, req, peer, &ns, watch).await,
                Method::POST => write(&c, req, &ns, Write::Create).await,
                Method::PUT => write(&c, req, &ns, Write::Update).await,
                Method::DELETE => write(&c, req, &ns, Write::Delete).await,
                _ => text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("{m} is not allowed on a dtab"),
                ),
            }
        }
        (Method::GET, ["history", ns]) => {
            if let Err(r) = ns_ok(ns) {
                return r;
            }
            json_resp(&Value::Array(
                c.namespaces.history(ns).iter().map(version_json).collect(),
            ))
        }
        (Method::POST, ["rollback", ns]) => {
            if let Err(r) = ns_ok(ns) {
                return r;
            }
            rollback(&c, req, ns, &q).await
        }
        (Method::GET, [kind @ ("bind" | "addr" | "resolve" | "delegate"), ns]) => {
            if let Err(r) = ns_ok(ns) {
                return r;
            }
            name_api(&c, &req, peer, kind, Some(ns), &q, watch).await
        }
        (Method::GET, ["delegate"]) => name_api(&c, &req, peer, "delegate", None, &q, watch).await,
        (Method::GET, ["bound-names"]) => bound_names(&c, watch).await,
        _ => text(
            StatusCode::NOT_FOUND,
            format!("no such API: {} {path}", req.method()),
        ),
    }
}

/// Streams `next` (called again after every change of `var`) as one JSON line per value,
/// skipping repeats. The stream ends when the client goes or `next` returns an error, written
/// as a text line. What `next` holds (a [`crate::namespaces::Watching`]) goes with it.
fn stream<T, F>(
    c: &Arc<Controller>,
    peer: SocketAddr,
    mut var: Var<T>,
    mut next: F,
) -> Response<Body>
where
    T: Clone + Send + Sync + 'static,
    F: FnMut(&T) -> Option<Result<Value, String>> + Send + 'static,
{
    let Some(permit) = c.watch_permit(peer.ip()) else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("over {MAX_WATCHES} watches are open"),
        );
    };
    let (tx, mut rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let _permit = permit;
        let mut last: Option<Value> = None;
        loop {
            let v = var.get();
            match next(&v) {
                None => {}
                Some(Ok(j)) if last.as_ref() == Some(&j) => {}
                Some(Ok(j)) => {
                    let mut line = j.to_string();
                    line.push('\n');
                    last = Some(j);
                    let sent = tokio::time::timeout(WATCH_SEND_TIMEOUT, tx.send(Bytes::from(line)));
                    if !matches!(sent.await, Ok(Ok(()))) {
                        break;
                    }
                }
                Some(Err(e)) => {
                    let _ = tokio::time::timeout(
                        WATCH_SEND_TIMEOUT,
                        tx.send(Bytes::from(format!("{e}\n"))),
                    )
                    .await;
                    break;
                }
            }
            tokio::select! {
                more = var.changed() => if !more { break },
                _ = tx.closed() => break,
            }
        }
    });
    let body = StreamBody::new(futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(|b| Ok::<_, Infallible>(Frame::data(b))))
    }));
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(BodyExt::boxed(body))
        .unwrap_or_else(|_| Response::new(full("")))
}

async fn list(
    c: &Arc<Controller>,
    _req: &Request<Incoming>,
    peer: SocketAddr,
    watch: bool,
) -> Response<Body> {
    let names = |s: &crate::store::StoreState| -> Option<Result<Value, String>> {
        let m = s.namespaces.as_ref()?;
        Some(Ok(m.keys().cloned().collect::<Vec<_>>().into()))
    };
    let state = c.namespaces.state();
    if watch {
        return stream(c, peer, state, names);
    }
    match settled(state, |s| s.namespaces.is_some()).await {
        Some(s) => match names(&s) {
            Some(Ok(v)) => json_resp(&v),
            _ => unavailable(&s),
        },
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the dtab store has not been read yet",
        ),
    }
}

fn unavailable(s: &crate::store::StoreState) -> Response<Body> {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "the dtab store has not been read yet: {}",
            s.error.as_deref().unwrap_or("connecting")
        ),
    )
}

/// The value of `var` once `done` holds, or `None` after [`SETTLE_TIMEOUT`].
pub(crate) async fn settled<T: Clone + Send + Sync>(
    mut var: Var<T>,
    done: impl Fn(&T) -> bool,
) -> Option<T> {
    let wait = async {
        loop {
            let v = var.get();
            if done(&v) {
                return Some(v);
            }
            if !var.changed().await {
                return done(&v).then_some(v);
            }
        }
    };
    tokio::time::timeout(SETTLE_TIMEOUT, wait)
        .await
        .ok()
        .flatten()
}

fn wants_dtab_text(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(DTAB_MEDIA_TYPE))
}

async fn get_dtab(
    c: &Arc<Controller>,
    req: Request<Incoming>,
    peer: SocketAddr,
    ns: &str,
    watch: bool,
) -> Response<Body> {
    let as_text = wants_dtab_text(&req);
    let client = client_name(&req, peer);
    let state = c.namespaces.state();
    if watch {
        let ns2 = ns.to_string();
        let watching = c.namespaces.watching(ns, &client);
        return stream(c, peer, state, move |s: &crate::store::StoreState| {
            let m = s.namespaces.as_ref()?;
            Some(match m.get(&ns2) {
                None => Err(format!("namespace {ns2} not found")),
                Some(e) => {
                    watching.sent(e.version);
                    match &e.dtab {
                        Ok(d) => Ok(dtab_json(d)),
                        Err(err) => Err(format!("namespace {ns2}: {err}")),
                    }
                }
            })
        });
    }
    let Some(s) = settled(state, |s| s.namespaces.is_some()).await else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the dtab store has not been read yet",
        );
    };
    let Some(m) = &s.namespaces else {
        return unavailable(&s);
    };
    let Some(e) = m.get(ns) else {
        return text(StatusCode::NOT_FOUND, format!("namespace {ns} not found"));
    };
    if named_client(&req).is_some() {
        c.namespaces.seen(ns, &client, e.version);
    }
    let d = match &e.dtab {
        Ok(d) => d,
        Err(err) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("namespace {ns}: {err}"),
            )
        }
    };
    let mut r = if req.method() == Method::HEAD {
        empty(StatusCode::OK)
    } else if as_text {
        let mut r = Response::new(full(format!("{}\n", d.show())));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(DTAB_MEDIA_TYPE),
        );
        r
    } else {
        json_resp(&dtab_json(d))
    };
    r.headers_mut().insert(header::ETAG, etag(e.version));
    r
}

enum Write {
    Create,
    Update,
    Delete,
}

/// Reads a dtab body by its content type.
async fn read_dtab(req: Request<Incoming>) -> Result<Dtab, Response<Body>> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| {
            s.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let Some(ct) = ct else {
        return Err(text(
            StatusCode::BAD_REQUEST,
            format!("a dtab needs a Content-Type: {DTAB_MEDIA_TYPE} or application/json"),
        ));
    };
    let read = tokio::time::timeout(
        BODY_READ_TIMEOUT,
        Limited::new(req.into_body(), MAX_DTAB_BYTES).collect(),
    );
    let body = match read.await {
        Err(_) => {
            return Err(text(
                StatusCode::REQUEST_TIMEOUT,
                format!("the dtab was not sent within {BODY_READ_TIMEOUT:?}"),
            ))
        }
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => {
            let over = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            return Err(if over {
                text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("a dtab is at most {MAX_DTAB_BYTES} bytes"),
                )
            } else {
                text(StatusCode::BAD_REQUEST, format!("reading the dtab: {e}"))
            });
        }
    };
    let bad = |e: String| text(StatusCode::BAD_REQUEST, e);
    match ct.as_str() {
        DTAB_MEDIA_TYPE => {
            let s = std::str::from_utf8(&body).map_err(|_| bad("the dtab is not UTF-8".into()))?;
            Dtab::read(s).map_err(|e| bad(format!("invalid dtab: {e}")))
        }
        "application/json" => {
            let v: Value = serde_json::from_slice(&body)
                .map_err(|e| bad(format!("invalid JSON dtab: {e}")))?;
            dtab_from_json(&v).map_err(|e| bad(format!("invalid JSON dtab: {e}")))
        }
        other => Err(text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("a dtab is {DTAB_MEDIA_TYPE} or application/json, not {other}"),
        )),
    }
}

fn store_error(c: &Controller, e: StoreError) -> Response<Body> {
    let status = match &e {
        StoreError::Exists(_) => StatusCode::CONFLICT,
        StoreError::NotFound(_) => StatusCode::NOT_FOUND,
        StoreError::VersionMismatch { .. } => StatusCode::PRECONDITION_FAILED,
        StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        StoreError::Full(_) => StatusCode::INSUFFICIENT_STORAGE,
    };
    if matches!(
        status,
        StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED
    ) {
        c.stats.conflicts.fetch_add(1, Relaxed);
    }
    text(status, e.to_string())
}

async fn write(c: &Arc<Controller>, req: Request<Incoming>, ns: &str, w: Write) -> Response<Body> {
    let expected = match if_match(&req) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let store = &c.namespaces.store;
    let res = match w {
        Write::Delete => store.delete(ns, expected).await.map(|()| None),
        Write::Create | Write::Update => {
            let dtab = match read_dtab(req).await {
                Ok(d) => d,
                Err(r) => return r,
            };
            let r = match w {
                Write::Create => store.create(ns, &dtab).await,
                _ => store.update(ns, &dtab, expected).await,
            };
            r.map(|v| Some((v, dtab)))
        }
    };
    match res {
        Ok(Some((v, dtab))) => {
            c.stats.writes.fetch_add(1, Relaxed);
            let mut r = empty(StatusCode::NO_CONTENT);
            // Version 0: written, but someone wrote after; the client reads it again.
            if v != 0 {
                c.namespaces.wrote(ns, v, Change::Dtab(dtab));
                r.headers_mut().insert(header::ETAG, etag(v));
            }
            r
        }
        Ok(None) => {
            c.stats.writes.fetch_add(1, Relaxed);
            empty(StatusCode::NO_CONTENT)
        }
        Err(e) => store_error(c, e),
    }
}

async fn rollback(
    c: &Arc<Controller>,
    req: Request<Incoming>,
    ns: &str,
    q: &std::collections::HashMap<String, String>,
) -> Response<Body> {
    let expected = match if_match(&req) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(to) = q.get("version").and_then(|v| v.parse::<u64>().ok()) else {
        return text(
            StatusCode::BAD_REQUEST,
            "rollback needs ?version=<a version from the history>",
        );
    };
    let hist = c.namespaces.history(ns);
    let Some(d) = hist.iter().rev().find_map(|v| match &v.change {
        Change::Dtab(d) if v.version == to => Some(d.clone()),
        _ => None,
    }) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("namespace {ns} has no dtab at version {to} in this namerd's history"),
        );
    };
    let store = &c.namespaces.store;
    let exists = store
        .state()
        .sample()
        .namespaces
        .is_some_and(|m| m.contains_key(ns));
    let res = if exists {
        store.update(ns, &d, expected).await
    } else {
        store.create(ns, &d).await
    };
    match res {
        Ok(v) => {
            c.stats.writes.fetch_add(1, Relaxed);
            let mut r = empty(StatusCode::NO_CONTENT);
            // Version 0: written, but someone wrote after; the client reads it again.
            if v != 0 {
                c.namespaces.wrote(ns, v, Change::Dtab(d));
                r.headers_mut().insert(header::ETAG, etag(v));
            }
            r
        }
        Err(e) => store_error(c, e),
    }
}

/// `path=` as a path, or 400 "Invalid path: <p> / <reason>".
fn path_param(q: &std::collections::HashMap<String, String>) -> Result<Path, Response<Body>> {
    let p = q.get("path").map(String::as_str).unwrap_or("");
    Path::read(p).map_err(|e| text(StatusCode::BAD_REQUEST, format!("Invalid path: {p} / {e}")))
}

fn dtab_param(q: &std::collections::HashMap<String, String>) -> Result<Dtab, Response<Body>> {
    match q.get("dtab") {
        None => Ok(Dtab::empty()),
        Some(d) => Dtab::read(d)
            .map_err(|e| text(StatusCode::BAD_REQUEST, format!("Invalid dtab: {d} / {e}"))),
    }
}

/// The address set of a bound tree: every leaf's endpoints together.
fn tree_addr(t: &NameTree<Bound>) -> Addr {
    let mut endpoints = Vec::new();
    let mut pending = false;
    t.for_each_leaf(&mut |b: &Bound| match b.addr.sample() {
        Addr::Bound { endpoints: e, .. } => endpoints.extend(e),
        Addr::Pending => pending = true,
        _ => {}
    });
    if !endpoints.is_empty() {
        Addr::bound(endpoints)
    } else if pending {
        Addr::Pending
    } else {
        Addr::Neg
    }
}

fn state_json(s: &State<NameTree<Bound>>, kind: &str) -> Option<Result<Value, String>> {
    match s {
        State::Pending => None,
        State::Failed(e) => Some(Err(e.message().to_string())),
        State::Ok(t) => Some(Ok(match kind {
            "bind" => bound_tree_json(t),
            _ => tree_addr(t).to_json(),
        })),
    }
}

async fn name_api(
    c: &Arc<Controller>,
    req: &Request<Incoming>,
    peer: SocketAddr,
    kind: &str,
    ns: Option<&str>,
    q: &std::collections::HashMap<String, String>,
    watch: bool,
) -> Response<Body> {
    let path = match path_param(q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let local = match dtab_param(q) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let base = match ns {
        Some(ns) => c.namespaces.dtab(ns),
        None => Var::constant(State::Ok(Dtab::empty())),
    };
    if kind == "delegate" {
        let Some(State::Ok(d)) = settled(base, |s| !s.is_pending()).await else {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the namespace's dtab is not loaded",
            );
        };
        let (state, _) = c
            .interp
            .delegate_settled(&d.concat(&local), &path, SETTLE_TIMEOUT)
            .await;
        return match state {
            State::Ok(t) => json_resp(&delegate_json(&t)),
            State::Pending => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "delegation is still pending",
            ),
            State::Failed(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.message().to_string()),
        };
    }
    let tree = c.interp.bind_watched(&base, &local, &path);
    // `addr` names a bound id: the leaf it binds to is the one asked for.
    let kind = kind.to_string();
    if let (Some(ns), false, Some(client)) = (ns, watch, named_client(req)) {
        c.namespaces
            .seen(ns, &client, c.namespaces.version(ns).unwrap_or(0));
    }
    if watch {
        // A change of any leaf's address set is a change of an `addr`/`resolve` answer.
        let (up, var) = switchboard_namer_core::Updater::new(tree.sample());
        let mut t = tree;
        tokio::spawn(async move {
            loop {
                let s = t.get();
                let mut deps: switchboard_namer_core::var::Deps<Addr> = Default::default();
                if let State::Ok(tr) = &s {
                    // Marked seen first: a clone starts from whatever its source had seen.
                    tr.for_each_leaf(&mut |b: &Bound| {
                        let mut a = b.addr.clone();
                        a.get();
                        deps.push(a);
                    });
                }
                up.modify(|cur| {
                    *cur = s;
                    true
                });
                // A value that can never change again is waited on forever (not spun on).
                let tree_changed = async {
                    if !t.changed().await {
                        std::future::pending::<()>().await
                    }
                };
                let addr_changed = async {
                    if !deps.wait_any().await {
                        std::future::pending::<()>().await
                    }
                };
                tokio::select! {
                    _ = up.closed() => return,
                    _ = tree_changed => {}
                    _ = addr_changed => {}
                }
            }
        });
        let Some(ns) = ns else {
            return stream(c, peer, var, move |s| state_json(s, &kind));
        };
        // The linker is shown as having seen the namespace's version each answer came from.
        let watching = c.namespaces.watching(ns, &client_name(req, peer));
        return stream(c, peer, var, move |s| {
            let out = state_json(s, &kind);
            if let Some(Ok(_)) = &out {
                watching.sent_current();
            }
            out
        });
    }
    drop(tree);
    // One answer: the namespace's dtab as it is now, then a bind that waits for the tree and
    // its address sets to leave Pending (address changes wake it, not only tree changes).
    let Some(State::Ok(d)) = settled(base, |s| !s.is_pending()).await else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the namespace's dtab is not loaded",
        );
    };
    let (s, _) = c
        .interp
        .bind_settled(&d.concat(&local), &path, SETTLE_TIMEOUT)
        .await;
    if s.is_pending() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{path} is still pending"),
        );
    }
    match state_json(&s, &kind) {
        Some(Ok(v)) => json_resp(&v),
        Some(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, e),
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{path} is still pending"),
        ),
    }
}

async fn bound_names(c: &Arc<Controller>, _watch: bool) -> Response<Body> {
    let mut names: Vec<String> = Vec::new();
    for n in c.interp.namers() {
        for p in n.namer.enumerate() {
            names.push(n.prefix.concat(&p).show());
        }
    }
    names.sort();
    names.dedup();
    json_resp(&json!(names))
}

/// Namerd's admin pages: `/admin/ping`, `/storage.json` (the store and its state),
/// `/namespaces.json` (per namespace its version and each linker's), `/metrics.json`.
/// namerd's counters and gauges: `(name, value, kind)`.
fn metrics(c: &Controller) -> Vec<(&'static str, u64, &'static str)> {
    let s = c.namespaces.state().sample();
    let st = &c.stats;
    vec![
        ("namerd/requests", st.requests.load(Relaxed), "counter"),
        ("namerd/writes", st.writes.load(Relaxed), "counter"),
        ("namerd/conflicts", st.conflicts.load(Relaxed), "counter"),
        ("namerd/watches", st.watches_open.load(Relaxed), "gauge"),
        (
            "namerd/watches_refused",
            st.watches_refused.load(Relaxed),
            "counter",
        ),
        ("namerd/store/stale", s.error.is_some() as u64, "gauge"),
        (
            "namerd/store/namespaces",
            s.namespaces.as_ref().map(|m| m.len() as u64).unwrap_or(0),
            "gauge",
        ),
    ]
}

/// Metrics kept outside this crate (the binary's TLS certificate-reload counters), shown on the
/// admin's metrics pages beside namerd's own.
pub trait ExtraMetrics: Send + Sync {
    /// Name to value, as `/metrics.json` shows them.
    fn json(&self) -> serde_json::Map<String, Value>;
    /// Prometheus' text format, names starting with `prefix`.
    fn prometheus(&self, prefix: &str) -> String;
}

/// `prometheus`: `(path, prefix)` of each `io.l5d.prometheus` telemeter.
pub async fn admin(
    c: Arc<Controller>,
    req: Request<Incoming>,
    prometheus: Arc<Vec<(String, String)>>,
    extra: Arc<dyn ExtraMetrics>,
) -> Response<Body> {
    match req.uri().path() {
        "/admin/ping" | "/ping" => text(StatusCode::OK, "pong"),
        "/namespaces.json" => json_resp(&c.namespaces.linkers_json()),
        "/storage.json" => {
            let s = c.namespaces.state().sample();
            json_resp(&json!({
                "store": c.namespaces.store.describe(),
                "loaded": s.namespaces.is_some(),
                "stale": s.error.is_some(),
                "error": s.error,
                "namespaces": s.namespaces.as_ref().map(|m| m.len()).unwrap_or(0),
            }))
        }
        "/metrics.json" | "/admin/metrics.json" => {
            let mut m: serde_json::Map<String, Value> = metrics(&c)
                .into_iter()
                .map(|(k, v, _)| (k.to_string(), json!(v)))
                .collect();
            m.extend(extra.json());
            json_resp(&Value::Object(m))
        }
        p => match prometheus.iter().find(|(path, _)| path == p) {
            // `io.l5d.prometheus`: the same counters in Prometheus' text format.
            Some((_, prefix)) => {
                let mut out = String::new();
                for (name, v, kind) in metrics(&c) {
                    let n = format!("{prefix}{}", name.replace('/', "_"));
                    out.push_str(&format!("# TYPE {n} {kind}\n{n} {v}\n"));
                }
                out.push_str(&extra.prometheus(prefix));
                Response::builder()
                    .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
                    .body(full(out))
                    .unwrap_or_else(|_| Response::new(full("")))
            }
            None => text(StatusCode::NOT_FOUND, format!("no admin page {p}")),
        },
    }
}
