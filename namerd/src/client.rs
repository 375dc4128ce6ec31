//! The linker's side of namerd's HTTP API: the `io.l5d.namerd.http` interpreter. A name is
//! bound by namerd: one `GET /api/1/bind/<ns>?path=&dtab=&watch=true` stream per name and one
//! `GET /api/1/addr/<ns>?path=<id>&watch=true` stream per bound id (shared by every tree that
//! reaches it), each turned into the same watched values a local binding gives, so the router
//! cannot tell the difference.
//!
//! When namerd cannot be reached or a stream ends, the last tree and addresses stay as they were
//! (routing goes on) and the interpreter is marked stale; streams reconnect with jittered
//! exponential backoff (`retry`) and, once answered, replace what they had. A name never bound
//! is Pending meanwhile (the router's `bindingTimeoutMs` applies). Answers are bounded: a line
//! over [`MAX_LINE_BYTES`] or a tree over the `api` limits ends the stream as a namerd fault.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use switchboard_namer_core::{
    Activity, Addr, Bound, Dtab, NameTree, NamingError, Path, State, Updater, Var,
};

use crate::api::{addr_from_json, bound_tree_from_json};
use crate::controller::CLIENT_HEADER;
use crate::net::{error_chain, ClientTls, Dialer};

/// Longest line accepted on a watch stream.
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;
/// Linkerd's default `retry`: backoff from 5 s up to 600 s.
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(5);
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(600);
/// TCP keepalive on the watch connections.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Bound on connecting to namerd and on its answering a request's head.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Where namerd is and how to follow it.
#[derive(Clone, Debug)]
pub struct NamerdHttpConfig {
    /// `host:port` (from `dst: /$/inet/<host>/<port>`).
    pub authority: String,
    pub namespace: String,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// What this linker calls itself to namerd (its admin page lists linkers by it).
    pub client_name: String,
    /// TLS to namerd (`tls`); plaintext when absent.
    pub tls: Option<ClientTls>,
}

/// The `dst` of a namerd interpreter: `/$/inet/<host>/<port>` as `host:port`.
pub fn authority_of_dst(dst: &str) -> Result<String, String> {
    let p = Path::read(dst).map_err(|e| format!("`{dst}` is not a path: {e}"))?;
    match (
        p.len(),
        p.elem_str(0),
        p.elem_str(1),
        p.elem_str(2),
        p.elem_str(3),
    ) {
        (4, Some("$"), Some("inet"), Some(host), Some(port)) if port.parse::<u16>().is_ok() => {
            if host.contains(':') {
                Ok(format!("[{host}]:{port}"))
            } else {
                Ok(format!("{host}:{port}"))
            }
        }
        _ => Err(format!(
            "`{dst}`: Switchboard reaches namerd at `/$/inet/<host>/<port>` only"
        )),
    }
}

/// What a query value keeps as it is: unreserved characters and `/` (paths stay readable).
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Percent-encodes a query value (everything but unreserved characters and `/`).
fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_VALUE).to_string()
}

#[derive(Default)]
pub(crate) struct Stats {
    /// Streams that are connected and answered.
    connected: AtomicI64,
    /// Streams waiting to reconnect.
    failing: AtomicI64,
    updates: AtomicU64,
    reconnects: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Stats {
    pub(crate) fn is_stale(&self) -> bool {
        self.failing.load(Relaxed) > 0
    }

    pub(crate) fn json(&self, namerd: &str, namespace: &str) -> Value {
        json!({
            "namerd": namerd,
            "namespace": namespace,
            "stale": self.is_stale(),
            "streams": self.connected.load(Relaxed),
            "failingStreams": self.failing.load(Relaxed),
            "updates": self.updates.load(Relaxed),
            "reconnects": self.reconnects.load(Relaxed),
            "lastError": self.last_error.lock().ok().and_then(|e| e.clone()),
        })
    }

    pub(crate) fn gauges(&self) -> Vec<(String, i64)> {
        vec![
            ("stale".into(), self.is_stale() as i64),
            ("streams".into(), self.connected.load(Relaxed)),
            ("updates".into(), self.updates.load(Relaxed) as i64),
            ("reconnects".into(), self.reconnects.load(Relaxed) as i64),
        ]
    }
}

struct Inner {
    cfg: NamerdHttpConfig,
    http: Client<Dialer, Empty<Bytes>>,
    addrs: AddrCache,
    stats: Arc<Stats>,
}

/// The `io.l5d.namerd.http` interpreter.
#[derive(Clone)]
pub struct NamerdHttp {
    inner: Arc<Inner>,
}

/// How a stream ended.
pub(crate) enum Ended {
    /// Namerd wrote an error line (a binding failure, say) and closed the stream.
    Error(String),
    /// The connection failed or closed.
    Lost(String),
}

impl NamerdHttp {
    pub fn new(cfg: NamerdHttpConfig) -> NamerdHttp {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(CONNECT_TIMEOUT));
        // An idle watch carries nothing: TCP keepalive finds a namerd that vanished without a
        // reset (a partition, a dead host) in about KEEPALIVE_IDLE + 3 x KEEPALIVE_INTERVAL.
        conn.set_keepalive(Some(KEEPALIVE_IDLE));
        conn.set_keepalive_interval(Some(KEEPALIVE_INTERVAL));
        conn.set_keepalive_retries(Some(3));
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(Dialer::new(conn, cfg.tls.as_ref(), "namerd"));
        NamerdHttp {
            inner: Arc::new(Inner {
                cfg,
                http,
                addrs: Mutex::new(HashMap::new()),
                stats: Arc::default(),
            }),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.inner.cfg.namespace
    }

    /// Whether some stream has lost namerd and routes on what it last heard.
    pub fn is_stale(&self) -> bool {
        self.inner.stats.is_stale()
    }

    /// `/<router>/interpreter_state/io.l5d.namerd.http/<ns>.json`.
    pub fn state(&self) -> Value {
        self.inner
            .stats
            .json(&self.inner.cfg.authority, &self.inner.cfg.namespace)
    }

    /// Counters and gauges as `(name, value)`.
    pub fn stats(&self) -> Vec<(String, i64)> {
        self.inner.stats.gauges()
    }

    /// namerd's explanation of `path` under the namespace's dtab then `dtab` (its
    /// `/api/1/delegate` JSON, as `/delegator.json` renders it).
    pub async fn delegate(&self, dtab: &Dtab, path: &Path) -> Result<Value, String> {
        let mut uri = format!(
            "/api/1/delegate/{}?path={}",
            self.inner.cfg.namespace,
            enc(&path.show())
        );
        if !dtab.is_empty() {
            uri.push_str(&format!("&dtab={}", enc(&dtab.show())));
        }
        let (status, _, body) = call(
            &format!("http://{}", self.inner.cfg.authority),
            self.inner.cfg.tls.as_ref(),
            hyper::Method::GET,
            &uri,
            None,
            None,
        )
        .await?;
        if status != 200 {
            return Err(format!(
                "namerd answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(1024)]).trim()
            ));
        }
        serde_json::from_slice(&body).map_err(|e| format!("namerd's delegation is not JSON: {e}"))
    }

    /// Binds `path` with `dtab` (the router's dtab ++ the request's) in namerd, live.
    pub fn bind(&self, dtab: &Dtab, path: &Path) -> Activity<NameTree<Bound>> {
        let (up, var) = Updater::new(State::Pending);
        let mut uri = format!(
            "/api/1/bind/{}?watch=true&path={}",
            self.inner.cfg.namespace,
            enc(&path.show())
        );
        if !dtab.is_empty() {
            uri.push_str(&format!("&dtab={}", enc(&dtab.show())));
        }
        let me = self.clone();
        tokio::spawn(async move {
            let parse = |line: &[u8]| {
                let v: Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
                let t = bound_tree_from_json(&v)?;
                Ok(State::Ok(t.map(&mut |l: &crate::api::BoundLeaf| {
                    let mut b = Bound::new(l.id.clone(), l.residual.clone(), me.addr(&l.id));
                    b.weight = l.weight;
                    b
                })))
            };
            let inner = &me.inner;
            follow(
                &inner.stats,
                &inner.cfg.authority,
                (inner.cfg.retry_base, inner.cfg.retry_max),
                &uri,
                &up,
                || true,
                |e| State::Failed(NamingError::new(format!("namerd: {e}"))),
                |mut p| {
                    let (uri, up, parse) = (&uri, &up, &parse);
                    async move {
                        let e = inner.stream(uri, up, parse, &mut p).await;
                        (p, e)
                    }
                },
            )
            .await;
        });
        var
    }

    /// The address set of bound id `id`, shared by every tree that reaches it.
    fn addr(&self, id: &Path) -> Var<Addr> {
        shared_addr(&self.inner.addrs, id, |up| self.follow_addr(id, up))
    }

    fn follow_addr(&self, id: &Path, up: Arc<Updater<Addr>>) {
        let uri = format!(
            "/api/1/addr/{}?watch=true&path={}",
            self.inner.cfg.namespace,
            enc(&id.show())
        );
        let me = self.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let parse = |line: &[u8]| {
                let v: Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
                addr_from_json(&v)
            };
            let inner = &me.inner;
            follow(
                &inner.stats,
                &inner.cfg.authority,
                (inner.cfg.retry_base, inner.cfg.retry_max),
                &uri,
                &up,
                || release_addr(&inner.addrs, &id, &up),
                |e| Addr::Failed(format!("namerd: {e}")),
                |mut p| {
                    let (uri, up, parse) = (&uri, &up, &parse);
                    async move {
                        let e = inner.stream(uri, up, parse, &mut p).await;
                        (p, e)
                    }
                },
            )
            .await;
        });
    }
}

impl Inner {
    async fn stream<T: Clone + PartialEq>(
        &self,
        uri: &str,
        up: &Updater<T>,
        parse: &impl Fn(&[u8]) -> Result<T, String>,
        p: &mut Progress,
    ) -> Ended {
        let full = format!("http://{}{uri}", self.cfg.authority);
        let req = match hyper::Request::get(&full)
            .header(CLIENT_HEADER, self.cfg.client_name.as_str())
            .body(Empty::<Bytes>::new())
        {
            Ok(r) => r,
            Err(e) => return Ended::Error(format!("bad request {full}: {e}")),
        };
        let resp = match tokio::time::timeout(CONNECT_TIMEOUT * 2, self.http.request(req)).await {
            Err(_) => {
                return Ended::Lost(format!(
                    "namerd at {} did not answer in time",
                    self.cfg.authority
                ))
            }
            Ok(Err(e)) => {
                return Ended::Lost(format!(
                    "namerd at {}: {}",
                    self.cfg.authority,
                    error_chain(&e)
                ))
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        let mut body = resp.into_body();
        if !status.is_success() {
            let mut msg = BytesMut::new();
            while let Some(Ok(f)) = body.frame().await {
                if let Some(d) = f.data_ref() {
                    let room = 1024usize.saturating_sub(msg.len());
                    msg.extend_from_slice(&d[..d.len().min(room)]);
                }
                if msg.len() >= 1024 {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&msg).trim().to_string();
            return if status.is_server_error() {
                Ended::Lost(format!("namerd answered {status}: {text}"))
            } else {
                Ended::Error(format!("namerd answered {status}: {text}"))
            };
        }
        let mut buf = BytesMut::new();
        loop {
            let frame = match body.frame().await {
                None => return Ended::Lost("namerd closed the stream".into()),
                Some(Err(e)) => return Ended::Lost(format!("namerd stream failed: {e}")),
                Some(Ok(f)) => f,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line = buf.split_to(i + 1);
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                if line[0] != b'{' && line[0] != b'[' {
                    return Ended::Error(String::from_utf8_lossy(line).into_owned());
                }
                match parse(line) {
                    Ok(v) => {
                        let changed = up.set(v);
                        p.delivered(changed);
                    }
                    Err(e) => {
                        return Ended::Lost(format!(
                            "namerd sent an answer that does not read: {e}"
                        ))
                    }
                }
            }
            if buf.len() > MAX_LINE_BYTES {
                return Ended::Lost(format!("namerd sent a line over {MAX_LINE_BYTES} bytes"));
            }
        }
    }
}

/// The address sets of bound ids a namerd interpreter follows, one stream each.
pub(crate) type AddrCache = Mutex<HashMap<Path, Weak<Updater<Addr>>>>;

/// The shared address set of `id`: the one being followed, or a new one `start` follows (it
/// holds the only strong reference, so the set goes when its follower ends).
pub(crate) fn shared_addr(
    cache: &AddrCache,
    id: &Path,
    start: impl FnOnce(Arc<Updater<Addr>>),
) -> Var<Addr> {
    let mut addrs = cache.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(up) = addrs.get(id).and_then(Weak::upgrade) {
        return up.var();
    }
    addrs.retain(|_, w| w.strong_count() > 0);
    let (up, var) = Updater::new(Addr::Pending);
    let up = Arc::new(up);
    addrs.insert(id.clone(), Arc::downgrade(&up));
    drop(addrs);
    start(up);
    var
}

/// Whether the follower of `id`'s address set may stop: nobody observes it, checked under the
/// cache's lock (a lookup subscribes under it), and then it leaves the cache.
pub(crate) fn release_addr(cache: &AddrCache, id: &Path, up: &Arc<Updater<Addr>>) -> bool {
    let mut addrs = cache.lock().unwrap_or_else(|p| p.into_inner());
    if up.observers() > 0 {
        return false;
    }
    if addrs
        .get(id)
        .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(up)))
    {
        addrs.remove(id);
    }
    true
}

/// Where one followed stream stands, for the interpreter's counters: whether its current
/// attempt has answered (`live`), whether it is failing, and whether it answered since the last
/// failure. Dropping it takes its share out of the counters, however the stream ended.
pub(crate) struct Progress {
    stats: Arc<Stats>,
    seen_good: bool,
    failing: bool,
    live: bool,
}

impl Progress {
    fn new(stats: Arc<Stats>) -> Progress {
        Progress {
            stats,
            seen_good: false,
            failing: false,
            live: false,
        }
    }

    /// An answer arrived (`changed`: it was not what the value already was).
    pub(crate) fn delivered(&mut self, changed: bool) {
        if changed {
            self.stats.updates.fetch_add(1, Relaxed);
        }
        self.seen_good = true;
        if !self.live {
            self.live = true;
            self.stats.connected.fetch_add(1, Relaxed);
        }
        if self.failing {
            self.failing = false;
            self.stats.failing.fetch_sub(1, Relaxed);
        }
    }

    /// The attempt ended; `lost`: namerd was lost (not an answer of its own).
    fn ended(&mut self, lost: bool) {
        if self.live {
            self.live = false;
            self.stats.connected.fetch_sub(1, Relaxed);
        }
        if lost && !self.failing {
            self.failing = true;
            self.stats.failing.fetch_add(1, Relaxed);
        } else if !lost && self.failing {
            // namerd answered (with an error about this name): it is reachable again.
            self.failing = false;
            self.stats.failing.fetch_sub(1, Relaxed);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.live {
            self.stats.connected.fetch_sub(1, Relaxed);
        }
        if self.failing {
            self.stats.failing.fetch_sub(1, Relaxed);
        }
    }
}

/// Follows a stream into `up` until nobody observes `up`: `attempt` runs one connection's
/// worth of it; when it ends, the last value stays (stale), and it is tried again after a
/// jittered exponential backoff from `retry.0` to `retry.1` (from `retry.0` again after an
/// attempt that answered). An error namerd itself reported becomes `failed(message)` while
/// nothing good was seen, and does not make the interpreter stale.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn follow<T, F, Fut>(
    stats: &Arc<Stats>,
    authority: &str,
    retry: (Duration, Duration),
    what: &str,
    up: &Updater<T>,
    may_stop: impl Fn() -> bool,
    failed: impl Fn(&str) -> T,
    mut attempt: F,
) where
    T: Clone + PartialEq,
    F: FnMut(Progress) -> Fut,
    Fut: std::future::Future<Output = (Progress, Ended)>,
{
    let mut backoff = switchboard_namer_core::backoff::Backoff::new(retry.0, retry.1);
    let mut p = Progress::new(Arc::clone(stats));
    let mut answered_once = false;
    loop {
        let (next, ended) = tokio::select! {
            _ = up.closed() => {
                if may_stop() {
                    return;
                }
                // Someone took the value again meanwhile: follow it afresh.
                p = Progress::new(Arc::clone(stats));
                continue;
            }
            r = attempt(p) => r,
        };
        p = next;
        let (msg, lost) = match ended {
            Ended::Error(e) => {
                if !answered_once && !p.seen_good {
                    up.set(failed(&e));
                }
                (e, false)
            }
            Ended::Lost(e) => (e, true),
        };
        p.ended(lost);
        tracing::warn!(namerd = %authority, what, error = %msg, "namerd stream ended; routing on the last answer and retrying");
        if let Ok(mut l) = stats.last_error.lock() {
            *l = Some(msg);
        }
        if p.seen_good {
            // A stream that had answered starts its backoff again.
            backoff.reset();
            p.seen_good = false;
            answered_once = true;
        }
        let sleep = tokio::time::sleep(backoff.next_delay());
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = up.closed() => {
                    if may_stop() {
                        return;
                    }
                }
                _ = &mut sleep => break,
            }
        }
        stats.reconnects.fetch_add(1, Relaxed);
    }
}

/// One request to namerd's API at `base` (`http://host:port`, or `https://` with `tls`): the
/// status, the `ETag` and the body (at most [`MAX_LINE_BYTES`]). For the command line.
pub async fn call(
    base: &str,
    tls: Option<&ClientTls>,
    method: hyper::Method,
    path_and_query: &str,
    if_match: Option<&str>,
    body: Option<(&str, String)>,
) -> Result<(u16, Option<String>, Bytes), String> {
    let mut conn = HttpConnector::new();
    conn.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let http: Client<Dialer, http_body_util::Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(Dialer::new(conn, tls, "namerd"));
    // The dialer decides on TLS; the request names the server as plain HTTP does (with
    // https's port when the URL gives none). Errors name the URL as given.
    let shown = format!("{}{path_and_query}", base.trim_end_matches('/'));
    let base = match base.strip_prefix("https://") {
        Some(rest) if tls.is_some() => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let has_port = authority
                .rsplit_once(':')
                .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            if has_port {
                format!("http://{rest}")
            } else {
                format!("http://{authority}:443{path}")
            }
        }
        Some(_) => return Err(format!("{base}: https needs TLS settings")),
        None => base.to_string(),
    };
    let uri = format!("{}{path_and_query}", base.trim_end_matches('/'));
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(&uri)
        .header(hyper::header::ACCEPT, crate::api::DTAB_MEDIA_TYPE);
    if let Some(v) = if_match {
        req = req.header(hyper::header::IF_MATCH, v);
    }
    let payload = match body {
        Some((ct, b)) => {
            req = req.header(hyper::header::CONTENT_TYPE, ct);
            Bytes::from(b)
        }
        None => Bytes::new(),
    };
    let req = req
        .body(http_body_util::Full::new(payload))
        .map_err(|e| format!("bad request {shown}: {e}"))?;
    let resp = tokio::time::timeout(CONNECT_TIMEOUT * 4, http.request(req))
        .await
        .map_err(|_| format!("{shown}: no answer in time"))?
        .map_err(|e| format!("{shown}: {}", error_chain(&e)))?;
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get(hyper::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = tokio::time::timeout(
        CONNECT_TIMEOUT * 4,
        http_body_util::Limited::new(resp.into_body(), MAX_LINE_BYTES).collect(),
    )
    .await
    .map_err(|_| format!("{shown}: the answer timed out"))?
    .map_err(|e| format!("{shown}: reading the answer: {e}"))?
    .to_bytes();
    Ok((status, etag, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dst_forms() {
        assert_eq!(
            authority_of_dst("/$/inet/localhost/4180").unwrap(),
            "localhost:4180"
        );
        assert_eq!(
            authority_of_dst("/$/inet/127.1/4180").unwrap(),
            "127.1:4180"
        );
        assert_eq!(authority_of_dst("/$/inet/::1/4180").unwrap(), "[::1]:4180");
        assert!(authority_of_dst("/#/io.l5d.consul/dc1/namerd").is_err());
        assert!(authority_of_dst("/$/inet/h/x").is_err());
        assert!(authority_of_dst("nope").is_err());
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(enc("/svc/a b"), "/svc/a%20b");
        assert_eq!(
            enc("/a=>/b;/c=>/d & 2*/e"),
            "/a%3D%3E/b%3B/c%3D%3E/d%20%26%202%2A/e"
        );
    }
}
