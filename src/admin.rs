//! The admin server (default 127.0.0.1:9990): `/admin/ping`, `/admin/metrics.json` (flat,
//! `?tree=1`, `?q=`), the Prometheus exposition of `io.l5d.prometheus`, `/config.json`,
//! `/delegator.json` (GET and POST, the CLI's rendering), `/bound-names.json`,
//! `/namer_state/<prefix>.json`, `/client_state.json`, `POST /admin/shutdown`, and an index at
//! `/admin`. It reads the running state; the only thing it changes is shutdown.
//!
//! Hardening (none of it in Linkerd but `admin.security`): `admin.security` is enforced as
//! Linkerd's `SecurityFilter` does (UI, control and diagnostics classes, path white- and
//! blacklists); a state-changing POST is refused when its `Origin` is not the admin's own or its
//! content type is one a cross-origin HTML form can send; on a connection made to a loopback
//! address (whatever the admin is bound to), a `Host` that is not a loopback name (DNS
//! rebinding) is refused; request bodies are capped; heads must arrive
//! within the header read timeout.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use switchboard_namer_core::delegate::delegate_json;
use switchboard_namer_core::{DefaultInterpreter, Dtab, Path, State};
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::proxy::binder::Binder;
use crate::proxy::body::RespBody;
use crate::proxy::client::AddrState;
use crate::proxy::server::Shutdown;

/// How long `/delegator.json` waits for a tree to settle (Linkerd's 2 s).
pub const DELEGATOR_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request body the admin server reads (a delegator POST); more is 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Bound on reading a request head, and on an idle admin connection.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a malformed body an error message quotes.
const MAX_ECHO_BYTES: usize = 256;

/// `admin.security`, compiled (Linkerd's `SecurityFilter`).
#[derive(Clone, Debug)]
pub struct Security {
    pub ui: bool,
    pub control: bool,
    pub diagnostics: bool,
    pub whitelist: Vec<regex::Regex>,
    pub blacklist: Vec<regex::Regex>,
}

impl Default for Security {
    fn default() -> Self {
        Security {
            ui: true,
            control: true,
            diagnostics: true,
            whitelist: Vec::new(),
            blacklist: Vec::new(),
        }
    }
}

impl Security {
    /// From the config (its regexes were checked by validation; a bad one is skipped).
    pub fn from_config(c: Option<&crate::config::model::AdminSecurity>) -> Security {
        let Some(c) = c else {
            return Security::default();
        };
        // Linkerd matches the whole path.
        let compile = |l: &Option<Vec<String>>| {
            l.iter()
                .flatten()
                .filter_map(|r| regex::Regex::new(&format!("^(?:{r})$")).ok())
                .collect()
        };
        Security {
            ui: c.ui_enabled.unwrap_or(true),
            control: c.control_enabled.unwrap_or(true),
            diagnostics: c.diagnostics_enabled.unwrap_or(true),
            whitelist: compile(&c.path_whitelist),
            blacklist: compile(&c.path_blacklist),
        }
    }

    /// Whether `path` is served.
    pub fn allows(&self, path: &str) -> bool {
        if self.blacklist.iter().any(|r| r.is_match(path)) {
            return false;
        }
        let enabled = match class(path) {
            Class::Ui => self.ui,
            Class::Control => self.control,
            Class::Diagnostics => self.diagnostics,
        };
        enabled || self.whitelist.iter().any(|r| r.is_match(path))
    }
}

#[derive(Debug, PartialEq)]
enum Class {
    Ui,
    Control,
    Diagnostics,
}

/// Linkerd's endpoint classes.
fn class(path: &str) -> Class {
    const UI: [&str; 9] = [
        "/",
        "/config.json",
        "/metrics.json",
        "/admin/metrics.json",
        "/admin/metrics",
        "/delegator",
        "/delegator.json",
        "/logging",
        "/help",
    ];
    if UI.contains(&path) || path.starts_with("/files/") || path.starts_with("/admin/files/") {
        Class::Ui
    } else if path == "/admin/shutdown" || path == "/logging.json" {
        Class::Control
    } else {
        Class::Diagnostics
    }
}

/// Why a request to the admin server is refused before it is served, if it is.
fn forged(req: &Request<Incoming>, loopback_only: bool) -> Option<&'static str> {
    let h = req.headers();
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    if loopback_only {
        if let Some(host) = host {
            if !is_loopback_host(host) {
                return Some("unexpected Host on a loopback connection");
            }
        }
    }
    if req.method() == Method::POST {
        if let Some(origin) = h.get(header::ORIGIN) {
            let same = match (origin.to_str().ok(), host) {
                (Some(o), Some(host)) => {
                    let o = o
                        .strip_prefix("http://")
                        .or_else(|| o.strip_prefix("https://"));
                    o == Some(host)
                }
                _ => false,
            };
            if !same {
                return Some("cross-origin POST refused");
            }
        }
        let ct = h
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        // What an HTML form (a CORS "simple" request) can send without a preflight.
        if matches!(
            ct.as_str(),
            "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
        ) {
            return Some("POST with a form content type refused (send none, or application/json)");
        }
    }
    None
}

/// `localhost`, a name under `.localhost`, or a loopback IP literal, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    let name = name.to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// What the admin server knows of a router.
pub struct AdminRouter {
    pub label: String,
    pub dtab: Dtab,
    pub binder: Arc<Binder>,
}

/// What the admin server reads (and, for shutdown, triggers).
pub struct AdminParts {
    pub metrics: Metrics,
    pub interp: Arc<DefaultInterpreter>,
    pub routers: Vec<AdminRouter>,
    /// The config as JSON, for `/config.json`.
    pub config: Value,
    /// `(path, prefix)` of each Prometheus exposition.
    pub prometheus: Vec<(String, String)>,
    pub recent: Option<crate::proxy::recent::RecentRequests>,
    pub shutdown: Shutdown,
    pub security: Security,
}

struct State0 {
    metrics: Metrics,
    interp: Arc<DefaultInterpreter>,
    routers: Vec<AdminRouter>,
    config: Value,
    prometheus: Vec<(String, String)>,
    recent: Option<crate::proxy::recent::RecentRequests>,
    shutdown: Shutdown,
    security: Security,
}

pub struct Admin {
    listener: TcpListener,
    state: Arc<State0>,
    acceptor: crate::transport::Acceptor,
}

const ENDPOINTS: [&str; 11] = [
    "/requests.json",
    "/admin/ping",
    "/admin/metrics.json",
    "/config.json",
    "/delegator.json",
    "/bound-names.json",
    "/client_state.json",
    "/namer_state/<prefix>.json",
    "/admin/shutdown",
    "/admin",
    "/admin/index.txt",
];

impl Admin {
    /// Binds the admin server; with `tls`, it serves HTTPS only (ALPN `http/1.1`).
    pub async fn bind(
        addr: SocketAddr,
        parts: AdminParts,
        tls: Option<Arc<crate::transport::tls::ServerTls>>,
    ) -> std::io::Result<Admin> {
        let scope = parts.metrics.scope("admin");
        Ok(Admin {
            acceptor: crate::transport::Acceptor {
                tls: tls.map(|t| (t, crate::transport::TlsStats::new(&scope))),
            },
            listener: TcpListener::bind(addr).await?,
            state: Arc::new(State0 {
                security: parts.security,
                metrics: parts.metrics,
                interp: parts.interp,
                routers: parts.routers,
                config: parts.config,
                prometheus: parts.prometheus,
                recent: parts.recent,
                shutdown: parts.shutdown,
            }),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub async fn serve(self, shutdown: Shutdown) {
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                a = self.listener.accept() => {
                    let Ok((stream, _)) = a else { continue };
                    // Reached on a loopback address: only loopback Host names are expected
                    // (a rebound DNS name arrives here too, with a foreign Host).
                    let loopback = stream.local_addr().is_ok_and(|a| a.ip().is_loopback());
                    let st = Arc::clone(&self.state);
                    let acceptor = self.acceptor.clone();
                    tokio::spawn(async move {
                        let Ok(stream) = acceptor.accept(stream).await else { return };
                        let svc = service_fn(move |req| {
                            let st = Arc::clone(&st);
                            async move { Ok::<_, Infallible>(handle(&st, req, loopback).await) }
                        });
                        let _ = http1::Builder::new()
                            .timer(hyper_util::rt::TokioTimer::new())
                            .header_read_timeout(HEADER_READ_TIMEOUT)
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            }
        }
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<RespBody> {
    let mut r = Response::new(RespBody::text(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json_resp(v: &Value, pretty: bool) -> Response<RespBody> {
    let body = if pretty {
        serde_json::to_string_pretty(v).unwrap_or_default()
    } else {
        v.to_string()
    };
    let mut r = Response::new(RespBody::text(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| {
            q.split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (urldecode(k), urldecode(v))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `+` as a space, then percent-decoding (invalid sequences kept as they are, invalid UTF-8
/// replaced), as browsers send query values.
fn urldecode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Copies each namer's counters into the registry (`namer/<prefix>/<name>`), so metrics pages
/// show current values.
fn sync_namer_stats(st: &State0) {
    for n in st.interp.namers() {
        let label = n.prefix.show().trim_start_matches('/').to_string();
        let scope = st.metrics.scope("namer").scope(&label);
        for (name, v) in n.namer.stats() {
            scope.gauge(&name).set(v);
        }
    }
    // A namerd interpreter: `rt/<router>/interpreter/<kind>/{stale,streams,..}`.
    for r in &st.routers {
        if let Some((kind, _, gauges)) = r.binder.interpretation().remote() {
            let scope = st
                .metrics
                .scope("rt")
                .scope(&r.label)
                .scope("interpreter")
                .scope(kind);
            for (name, v) in gauges {
                scope.gauge(&name).set(v);
            }
        }
    }
}

async fn handle(st: &State0, req: Request<Incoming>, loopback: bool) -> Response<RespBody> {
    let path = req.uri().path().to_string();
    if let Some(why) = forged(&req, loopback) {
        return text(StatusCode::FORBIDDEN, format!("{why}\n"));
    }
    if !st.security.allows(&path) {
        return text(StatusCode::NOT_FOUND, format!("not found: {path}\n"));
    }
    if path.starts_with("/admin/metrics") || st.prometheus.iter().any(|(p, _)| *p == path) {
        sync_namer_stats(st);
        for r in &st.routers {
            for c in r.binder.clients() {
                c.refresh_gauges();
            }
        }
    }
    let q = query(&req);
    let param = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let pretty = param("pretty").is_some_and(|v| v != "0" && v != "false");
    if let Some((_, prefix)) = st.prometheus.iter().find(|(p, _)| *p == path) {
        let mut r = text(StatusCode::OK, st.metrics.prometheus(prefix));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        return r;
    }
    match (req.method().clone(), path.as_str()) {
        (_, "/admin/ping") => text(StatusCode::OK, "pong"),
        (_, "/admin" | "/admin/" | "/admin/index.txt") => {
            let mut list: Vec<String> = ENDPOINTS.iter().map(|s| s.to_string()).collect();
            list.extend(st.prometheus.iter().map(|(p, _)| p.clone()));
            text(StatusCode::OK, list.join("\n") + "\n")
        }
        (_, "/admin/metrics.json") => {
            let tree = param("tree").is_some_and(|v| v != "0" && v != "false");
            match param("q") {
                Some(q) => {
                    let full = st.metrics.tree_json();
                    let mut cur = Some(&full);
                    for seg in q.split('/').filter(|s| !s.is_empty()) {
                        cur = cur.and_then(|n| n.get(seg));
                    }
                    match cur {
                        Some(v) => json_resp(v, pretty),
                        None => text(StatusCode::NOT_FOUND, format!("no metrics under {q}")),
                    }
                }
                None if tree => json_resp(&st.metrics.tree_json(), pretty),
                None => json_resp(&st.metrics.flat_json(), pretty),
            }
        }
        (_, "/config.json") => json_resp(&st.config, pretty),
        (Method::GET, "/delegator.json") => {
            delegate(st, param("namespace"), param("path"), param("dtab")).await
        }
        (Method::POST, "/delegator.json") => {
            let is_json = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            if !is_json {
                return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, "");
            }
            let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return text(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("request body over {MAX_BODY_BYTES} bytes\n"),
                    )
                }
                Err(_) => Bytes::new(),
            };
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let get = |k: &str| v.get(k).and_then(|x| x.as_str()).map(String::from);
            match (get("path"), get("dtab")) {
                (Some(p), Some(d)) => delegate(st, get("namespace"), Some(p), Some(d)).await,
                _ => text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "Malformed delegation request: {}",
                        String::from_utf8_lossy(&body[..body.len().min(MAX_ECHO_BYTES)])
                    ),
                ),
            }
        }
        (_, "/delegator.json") => text(StatusCode::METHOD_NOT_ALLOWED, ""),
        (_, "/bound-names.json") => {
            let mut names: Vec<String> = st
                .interp
                .namers()
                .flat_map(|n| n.namer.enumerate())
                .map(|p| p.show())
                .collect();
            names.sort();
            names.dedup();
            json_resp(&json!(names), pretty)
        }
        (_, "/client_state.json") => json_resp(&client_state(st), pretty),
        (_, "/requests.json" | "/requests") => match &st.recent {
            Some(r) => json_resp(&r.json(), pretty || path == "/requests"),
            None => text(
                StatusCode::NOT_FOUND,
                "recent requests are not recorded: configure the io.l5d.recentRequests telemeter\n",
            ),
        },
        (Method::POST, "/admin/shutdown") => {
            st.shutdown.trigger();
            text(StatusCode::OK, "shutting down\n")
        }
        (_, "/admin/shutdown") => text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n"),
        (_, p) if p.contains("/interpreter_state/") && p.ends_with(".json") => {
            // `/<router>/interpreter_state/<kind>/<namespace>.json`.
            let mut parts = p.trim_start_matches('/').split('/');
            let label = parts.next().unwrap_or("");
            let kind = parts.nth(1).unwrap_or("");
            let found = st
                .routers
                .iter()
                .filter(|r| r.label == label)
                .find_map(|r| r.binder.interpretation().remote())
                .filter(|(k, _, _)| *k == kind);
            match found {
                Some((_, state, _)) => json_resp(&state, pretty),
                None => text(
                    StatusCode::NOT_FOUND,
                    format!(
                        "router {label} does not bind through namerd with {kind}
"
                    ),
                ),
            }
        }
        (_, p) if p.starts_with("/namer_state/") && p.ends_with(".json") => {
            let prefix = &p["/namer_state/".len()..p.len() - ".json".len()];
            let want = format!("/#/{prefix}");
            match st.interp.namers().find(|n| n.prefix.show() == want) {
                Some(n) => json_resp(&n.namer.state(), pretty),
                None => text(StatusCode::NOT_FOUND, format!("no namer {want}\n")),
            }
        }
        _ => text(StatusCode::NOT_FOUND, format!("not found: {path}\n")),
    }
}

async fn delegate(
    st: &State0,
    namespace: Option<String>,
    path: Option<String>,
    dtab: Option<String>,
) -> Response<RespBody> {
    if let Some(ns) = &namespace {
        if !ns.is_empty() && !st.routers.iter().any(|r| &r.label == ns) {
            return text(StatusCode::NOT_FOUND, format!("unknown namespace {ns}\n"));
        }
    }
    let Some(path) = path else {
        return text(StatusCode::BAD_REQUEST, "Invalid path: path is required");
    };
    let path = match Path::read(&path) {
        Ok(p) => p,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("Invalid path: {e}")),
    };
    let dtab = match Dtab::read(dtab.as_deref().unwrap_or("")) {
        Ok(d) => d,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("Invalid dtab: {e}")),
    };
    // The namespace's router explains with its own interpreter (its transformers included).
    let router = namespace
        .as_ref()
        .and_then(|ns| st.routers.iter().find(|r| &r.label == ns))
        .or_else(|| st.routers.first());
    // A router that binds through namerd: namerd explains (its namespace dtab and namers).
    match router.map(|r| r.binder.interpretation()) {
        Some(crate::proxy::binder::Interpretation::Namerd(n)) => {
            return match tokio::time::timeout(DELEGATOR_TIMEOUT, n.delegate(&dtab, &path)).await {
                Ok(Ok(v)) => json_resp(&v, false),
                Ok(Err(e)) => text(StatusCode::BAD_GATEWAY, format!("{e}\n")),
                Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "Request timed out."),
            };
        }
        Some(crate::proxy::binder::Interpretation::Mesh(m)) => {
            return match tokio::time::timeout(DELEGATOR_TIMEOUT, m.delegate(&dtab, &path)).await {
                Ok(Ok(v)) => json_resp(&v, false),
                Ok(Err(e)) => text(StatusCode::BAD_GATEWAY, format!("{e}\n")),
                Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "Request timed out."),
            };
        }
        _ => {}
    }
    let interp = router
        .map(|r| Arc::clone(r.binder.interpreter()))
        .unwrap_or_else(|| Arc::clone(&st.interp));
    match interp
        .delegate_settled(&dtab, &path, DELEGATOR_TIMEOUT)
        .await
    {
        (State::Ok(t), true) => json_resp(&delegate_json(&t), false),
        (State::Ok(_), false) | (State::Pending, _) => {
            text(StatusCode::SERVICE_UNAVAILABLE, "Request timed out.")
        }
        (State::Failed(e), _) if e.is_limit() => text(StatusCode::BAD_REQUEST, e.to_string()),
        (State::Failed(e), _) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn client_state(st: &State0) -> Value {
    let mut out = serde_json::Map::new();
    for r in &st.routers {
        let mut clients = serde_json::Map::new();
        let mut list = r.binder.clients();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        for c in list {
            let eps: Vec<Value> = c
                .endpoints()
                .iter()
                .map(|e| {
                    json!({
                        "addr": e.addr.to_string(),
                        "weight": e.weight(),
                        "load": e.load.load(std::sync::atomic::Ordering::Relaxed),
                        "available": e.available(crate::proxy::balancer::now_ns()),
                        "connections": e.session.open(),
                    })
                })
                .collect();
            let state = match c.addr_state() {
                AddrState::Pending => "pending".to_string(),
                AddrState::Neg => "neg".to_string(),
                AddrState::Bound => "bound".to_string(),
                AddrState::Failed(e) => format!("failed: {e}"),
            };
            clients.insert(c.id.show(), json!({"state": state, "endpoints": eps}));
        }
        out.insert(
            r.label.clone(),
            json!({"dtab": r.dtab.show(), "clients": clients}),
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_rows() {
        let sec = |ui, control, diag, white: &[&str], black: &[&str]| Security {
            ui,
            control,
            diagnostics: diag,
            whitelist: white
                .iter()
                .map(|r| regex::Regex::new(&format!("^(?:{r})$")).unwrap())
                .collect(),
            blacklist: black
                .iter()
                .map(|r| regex::Regex::new(&format!("^(?:{r})$")).unwrap())
                .collect(),
        };
        let all = sec(true, true, true, &[], &[]);
        for p in ["/", "/admin/shutdown", "/admin/ping", "/delegator.json"] {
            assert!(all.allows(p), "{p}");
        }
        let no_control = sec(true, false, true, &[], &[]);
        assert!(!no_control.allows("/admin/shutdown"));
        assert!(no_control.allows("/admin/metrics.json"));
        let no_ui = sec(false, true, true, &[], &[]);
        assert!(!no_ui.allows("/delegator.json"));
        assert!(!no_ui.allows("/admin/files/x.js"));
        assert!(no_ui.allows("/client_state.json"));
        let only_ping = sec(false, false, false, &["/admin/ping"], &[]);
        assert!(only_ping.allows("/admin/ping"));
        assert!(!only_ping.allows("/admin/ping2"), "whole-path match");
        assert!(!only_ping.allows("/admin/metrics.json"));
        let black = sec(true, true, true, &["/config.json"], &["/config.*"]);
        assert!(!black.allows("/config.json"), "the blacklist wins");
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:9990",
            "127.0.0.1:9990",
            "[::1]:9990",
            "127.3.4.5",
            "a.localhost",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example:9990",
            "10.0.0.1:9990",
            "localhost.evil.example",
            "[::2]:1",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
