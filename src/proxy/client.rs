//! A client: everything Switchboard keeps for one bound id (`/#/io.l5d.fs/web`): the live
//! endpoint set fed by the id's address watch, the load balancer, failure accrual, one
//! connection pool per endpoint, and the client's metrics. Clients are shared by every logical
//! name that binds to the same id. Endpoint churn updates the set in place: the client, its
//! balancer and the pools of endpoints that stay are never rebuilt.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use http::{Request, Response};
use switchboard_namer_core::rewrite::PathMatcher;
use switchboard_namer_core::{Addr, Path, Var};
use tokio::sync::watch;

use super::balancer::{now_ns, AccrualPolicy, Balancer, Endpoint};
use super::body::{ReqBody, RespBody};
use super::error::RouteError;
use super::session::h2::{H2Session, H2Settings};
use super::session::http1::{Pool, PoolConfig};
use super::session::{PoolStats, Protocol, Session, SessionError};
use crate::config::model::{ClientParams, PerPrefix};
use crate::metrics::{Counter, Gauge, RequestStats, Scope};
use crate::transport::tls::{ClientTlsConfig, TlsError};
use crate::transport::{Connector, TlsStats, ALPN_H2, ALPN_HTTP11};

/// How long a connection to an endpoint may take (Finagle's default connect timeout), so a
/// blackholed endpoint fails a request quickly and is requeued.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How many times a request whose connection failed is sent to another endpoint.
pub const MAX_REQUEUES: usize = 2;

/// A router's client settings, resolved once: the per-prefix params, the TLS built from each
/// `tls` block, the protocol spoken to endpoints and its h2 settings.
pub struct ClientSettings {
    cfg: PerPrefix<ClientParams>,
    /// The built TLS of each entry (`Global`: one), `None` where it has none.
    tls: Vec<Option<ClientTlsConfig>>,
    pub protocol: Protocol,
}

impl ClientSettings {
    /// Reads and checks every TLS file now, so a bad one stops the start.
    pub fn build(
        cfg: PerPrefix<ClientParams>,
        protocol: Protocol,
        scope: &Scope,
    ) -> Result<ClientSettings, TlsError> {
        let alpn: &[&[u8]] = match protocol {
            Protocol::Http1 => &[ALPN_HTTP11],
            Protocol::H2 => &[ALPN_H2],
        };
        let build = |p: &ClientParams| -> Result<Option<ClientTlsConfig>, TlsError> {
            match &p.tls {
                Some(t) if t.enabled != Some(false) => {
                    ClientTlsConfig::build(t, alpn, scope).map(Some)
                }
                _ => Ok(None),
            }
        };
        let tls = match &cfg {
            PerPrefix::Global(p) => vec![build(p)?],
            PerPrefix::Static(list) => list
                .iter()
                .map(|(_, p)| build(p))
                .collect::<Result<_, _>>()?,
        };
        Ok(ClientSettings { cfg, tls, protocol })
    }

    /// Plain HTTP/1.1 with these params (tests, and routers without TLS).
    pub fn plain(cfg: PerPrefix<ClientParams>) -> ClientSettings {
        let n = match &cfg {
            PerPrefix::Global(_) => 1,
            PerPrefix::Static(l) => l.len(),
        };
        ClientSettings {
            cfg,
            tls: vec![None; n],
            protocol: Protocol::Http1,
        }
    }

    pub fn params_for(&self, id: &Path) -> ClientParams {
        params_for(&self.cfg, id)
    }

    /// The TLS of client `id`: from the last matching entry with a `tls` block, its
    /// `commonName` filled from that entry's prefix variables.
    fn tls_for(&self, id: &Path) -> Option<Result<crate::transport::tls::ClientTls, String>> {
        let mut found = None;
        match &self.cfg {
            PerPrefix::Global(_) => {
                if let Some(Some(t)) = self.tls.first() {
                    found = Some((t, std::collections::BTreeMap::new()));
                }
            }
            PerPrefix::Static(list) => {
                for ((prefix, p), t) in list.iter().zip(&self.tls) {
                    let vars = PathMatcher::new(prefix).ok().and_then(|m| m.extract(id));
                    if let Some(vars) = vars {
                        if p.tls.is_some() {
                            // `enabled: false` in a later entry turns TLS off again.
                            found = t.as_ref().map(|t| (t, vars));
                        }
                    }
                }
            }
        }
        let (t, vars) = found?;
        Some(
            t.for_vars(&|name| vars.get(name).cloned())
                .map_err(|e| e.to_string()),
        )
    }
}

/// The client parameters that apply to `id`: every matching `io.l5d.static` entry in order,
/// later ones overriding earlier ones per parameter.
pub fn params_for(cfg: &PerPrefix<ClientParams>, id: &Path) -> ClientParams {
    match cfg {
        PerPrefix::Global(p) => p.clone(),
        PerPrefix::Static(list) => {
            let mut out = ClientParams::default();
            for (prefix, p) in list {
                let matches = PathMatcher::new(prefix)
                    .ok()
                    .and_then(|m| m.extract(id))
                    .is_some();
                if matches {
                    overlay(&mut out, p);
                }
            }
            out
        }
    }
}

fn overlay(out: &mut ClientParams, p: &ClientParams) {
    macro_rules! take {
        ($($f:ident),*) => { $( if p.$f.is_some() { out.$f = p.$f.clone(); } )* };
    }
    take!(
        load_balancer,
        failure_accrual,
        fail_fast,
        requeue_budget,
        request_attempt_timeout_ms,
        host_connection_pool,
        client_session,
        socket_options,
        tls,
        forward_client_cert,
        window_update_ratio,
        header_table_bytes,
        initial_stream_window_bytes,
        max_frame_bytes,
        max_header_list_bytes
    );
}

/// The address state a client last saw.
#[derive(Debug, Clone, PartialEq)]
pub enum AddrState {
    Pending,
    Neg,
    Bound,
    Failed(String),
}

pub struct Client {
    pub id: Path,
    /// The id as metrics name it: shown without the leading `/`.
    pub label: String,
    /// `l5d-dst-client`.
    pub header: http::HeaderValue,
    endpoints: RwLock<Arc<Vec<Arc<Endpoint>>>>,
    state: watch::Sender<AddrState>,
    balancer: Balancer,
    accrual: AccrualPolicy,
    attempt_timeout: Option<Duration>,
    pool_cfg: PoolConfig,
    pool_stats: PoolStats,
    protocol: Protocol,
    h2: H2Settings,
    connector: Connector,
    pub stats: RequestStats,
    scope: Scope,
    lb_size: Gauge,
    lb_available: Gauge,
    lb_adds: Counter,
    lb_removes: Counter,
    requeues: Counter,
    last_used: AtomicU64,
    task: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
        for e in self.endpoints().iter() {
            e.session.retire();
        }
        self.scope.remove();
    }
}

impl Client {
    /// A client for `id` following `addr`. Must be called inside a tokio runtime.
    pub fn new(id: Path, addr: Var<Addr>, settings: &ClientSettings, scope: Scope) -> Arc<Client> {
        let params = &settings.params_for(&id);
        let connector = Connector {
            connect_timeout: Some(DEFAULT_CONNECT_TIMEOUT),
            tls: settings.tls_for(&id).map(|t| {
                if let Err(e) = &t {
                    tracing::error!(client = %id.show(), error = %e, "client TLS unusable; its connections will fail");
                }
                (t, TlsStats::new(&scope))
            }),
        };
        let label = id.show().trim_start_matches('/').to_string();
        let lb = scope.scope("loadbalancer");
        let pool = params.host_connection_pool.clone().unwrap_or_default();
        let balancer = Balancer::new(params.load_balancer.as_ref().map(|p| &p.value));
        lb.scope("algorithm").gauge(balancer.algorithm()).set(1);
        let c = Arc::new(Client {
            header: http::HeaderValue::from_str(&id.show())
                .unwrap_or_else(|_| http::HeaderValue::from_static("")),
            label,
            endpoints: RwLock::new(Arc::new(Vec::new())),
            state: watch::channel(AddrState::Pending).0,
            balancer,
            accrual: AccrualPolicy::from_config(params.failure_accrual.as_ref().map(|p| &p.value)),
            attempt_timeout: params.request_attempt_timeout_ms.map(Duration::from_millis),
            pool_cfg: PoolConfig {
                max_size: pool.max_size,
                max_waiters: pool.max_waiters,
                idle_time: Some(Duration::from_millis(
                    pool.idle_time_ms
                        .unwrap_or(super::session::http1::DEFAULT_IDLE_TIME_MS),
                )),
            },
            pool_stats: PoolStats {
                connects: scope.counter("connects"),
                connections: scope.gauge("connections"),
            },
            protocol: settings.protocol,
            h2: H2Settings {
                initial_stream_window: params.initial_stream_window_bytes,
                initial_connection_window: None,
                max_frame_size: params.max_frame_bytes,
                max_header_list_size: params.max_header_list_bytes,
                header_table_size: params.header_table_bytes,
            },
            connector,
            stats: RequestStats::new(scope.clone()),
            lb_size: lb.gauge("size"),
            lb_available: lb.gauge("available"),
            lb_adds: lb.counter("adds"),
            lb_removes: lb.counter("removes"),
            requeues: scope.scope("retries").counter("requeues"),
            scope,
            last_used: AtomicU64::new(now_ns()),
            task: std::sync::Mutex::new(None),
            id,
        });
        let weak = Arc::downgrade(&c);
        let handle = tokio::spawn(watch_addr(weak, addr)).abort_handle();
        *c.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        c
    }

    pub fn touch(&self) {
        self.last_used.store(now_ns(), Relaxed);
    }

    /// Nanoseconds since the client last served a request.
    pub fn idle_ns(&self) -> u64 {
        now_ns().saturating_sub(self.last_used.load(Relaxed))
    }

    pub fn endpoints(&self) -> Arc<Vec<Arc<Endpoint>>> {
        Arc::clone(&self.endpoints.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn addr_state(&self) -> AddrState {
        self.state.borrow().clone()
    }

    /// Waits while the address set is Pending, up to `timeout`; false if still Pending.
    pub async fn ready(&self, timeout: Duration) -> bool {
        let mut rx = self.state.subscribe();
        tokio::time::timeout(timeout, async {
            let _ = rx.wait_for(|s| *s != AddrState::Pending).await;
        })
        .await
        .is_ok()
    }

    fn session(&self, addr: SocketAddr) -> Session {
        match self.protocol {
            Protocol::Http1 => Session::Http1(Pool::new(
                addr,
                self.pool_cfg.clone(),
                self.connector.clone(),
                self.pool_stats.clone(),
            )),
            Protocol::H2 => Session::H2(H2Session::new(
                addr,
                self.connector.clone(),
                self.h2.clone(),
                self.pool_stats.clone(),
            )),
        }
    }

    /// Applies a new address set, keeping the endpoints (and pools) that stay.
    fn update(&self, addr: Addr) {
        let state = match &addr {
            Addr::Pending => AddrState::Pending,
            Addr::Neg => AddrState::Neg,
            Addr::Bound { .. } => AddrState::Bound,
            Addr::Failed(e) => AddrState::Failed(e.clone()),
        };
        let next: Option<Vec<Arc<Endpoint>>> = match addr {
            Addr::Bound { endpoints, .. } => {
                let current = self.endpoints();
                let by_addr: HashMap<SocketAddr, &Arc<Endpoint>> =
                    current.iter().map(|e| (e.addr, e)).collect();
                let mut seen = std::collections::HashSet::new();
                let mut out = Vec::with_capacity(endpoints.len());
                for ep in endpoints {
                    if !seen.insert(ep.addr) {
                        continue;
                    }
                    let authority = ep
                        .meta
                        .get("authority")
                        .and_then(|v| v.as_str())
                        .and_then(|a| http::HeaderValue::from_str(a).ok());
                    match by_addr.get(&ep.addr) {
                        Some(e) if e.authority == authority => {
                            e.set_weight(ep.weight);
                            out.push(Arc::clone(e));
                        }
                        _ => {
                            self.lb_adds.incr();
                            let mut e = Endpoint::new(ep.addr, ep.weight, self.session(ep.addr));
                            e.authority = authority;
                            out.push(Arc::new(e));
                        }
                    }
                }
                Some(out)
            }
            Addr::Neg => Some(Vec::new()),
            // Pending or Failed: keep serving what we have.
            Addr::Pending | Addr::Failed(_) => None,
        };
        if let Some(next) = next {
            let old = {
                let mut g = self.endpoints.write().unwrap_or_else(|p| p.into_inner());
                std::mem::replace(&mut *g, Arc::new(next))
            };
            let now = self.endpoints();
            for e in old.iter() {
                if !now.iter().any(|n| Arc::ptr_eq(n, e)) {
                    self.lb_removes.incr();
                    e.session.retire();
                }
            }
            self.lb_size.set(now.len() as i64);
            let t = now_ns();
            self.lb_available
                .set(now.iter().filter(|e| e.available(t)).count() as i64);
        }
        self.state.send_replace(state);
    }

    /// Recomputes the gauges that change with time rather than with events
    /// (`loadbalancer/available`: failure accrual's backoffs end on their own). The admin server
    /// calls it before rendering metrics.
    pub fn refresh_gauges(&self) {
        let t = now_ns();
        self.lb_available
            .set(self.endpoints().iter().filter(|e| e.available(t)).count() as i64);
    }

    /// The balancer's pick, avoiding endpoints in `tried` (a few more picks, then any other
    /// endpoint in rotation); one of them only when nothing else is left.
    fn pick_untried(
        &self,
        eps: &[Arc<Endpoint>],
        tried: &[Option<SocketAddr>],
    ) -> Option<Arc<Endpoint>> {
        let was_tried = |e: &Endpoint| tried.contains(&Some(e.addr));
        let first = self.balancer.pick(eps)?;
        if !was_tried(first) {
            return Some(Arc::clone(first));
        }
        for _ in 0..4 {
            if let Some(e) = self.balancer.pick(eps).filter(|e| !was_tried(e)) {
                return Some(Arc::clone(e));
            }
        }
        let now = now_ns();
        eps.iter()
            .find(|e| !was_tried(e) && e.available(now) && e.weight() > 0.0)
            .or(Some(first))
            .map(Arc::clone)
    }

    /// Reports an answer's outcome to failure accrual.
    pub fn observe(&self, ep: &Endpoint, ok: bool) {
        if ep.observe_outcome(ok, &self.accrual) {
            tracing::info!(client = %self.label, endpoint = %ep.addr, "endpoint marked dead by failure accrual");
        }
    }

    /// Sends a request to one endpoint, choosing another when a connection cannot be made.
    /// Returns the response (its body streaming) or why there was none.
    /// With `defer_success`, an answer that is not a 5XX is not reported to failure accrual
    /// here: the caller reports its outcome (`observe`) once it knows it.
    pub async fn send(
        &self,
        mut req: Request<ReqBody>,
        defer_success: bool,
    ) -> Result<Answer, RouteError> {
        self.touch();
        let eps = self.endpoints();
        let mut last_err = None;
        // Set once an attempt rewrote Host, so a requeue can start from the client's own again.
        let mut original_host: Option<Option<http::HeaderValue>> = None;
        // Endpoints this request could not reach: a requeue goes elsewhere when it can.
        let mut tried: [Option<SocketAddr>; MAX_REQUEUES] = [None; MAX_REQUEUES];
        for attempt in 0..=MAX_REQUEUES {
            let Some(ep) = self.pick_untried(&eps, &tried) else {
                return Err(RouteError::NoBrokers(String::new()));
            };
            if attempt > 0 {
                self.requeues.incr();
            }
            if attempt < MAX_REQUEUES {
                tried[attempt] = Some(ep.addr);
            }
            let load = LoadGuard::new(&ep);
            let start = Instant::now();
            let co = match ep.session.checkout().await {
                Ok(c) => c,
                // A full pool says nothing about the endpoint's health.
                Err(e @ SessionError::TooManyWaiters { .. }) => {
                    last_err = Some(RouteError::PoolExhausted(e.to_string()));
                    continue;
                }
                Err(e) => {
                    ep.observe_outcome(false, &self.accrual);
                    last_err = Some(RouteError::Connect(e.to_string()));
                    continue;
                }
            };
            match (&ep.authority, &original_host) {
                // HTTP/2 carries the authority in `:authority` (the URI), not in Host.
                (Some(a), _) if self.protocol == Protocol::H2 => {
                    let prev = req
                        .uri()
                        .authority()
                        .and_then(|x| http::HeaderValue::from_str(x.as_str()).ok());
                    original_host.get_or_insert(prev);
                    set_authority(req.uri_mut(), a);
                }
                (None, Some(Some(h))) if self.protocol == Protocol::H2 => {
                    set_authority(req.uri_mut(), h);
                }
                (Some(a), _) => {
                    let prev = req.headers_mut().insert(http::header::HOST, a.clone());
                    original_host.get_or_insert(prev);
                }
                (None, Some(Some(h))) => {
                    req.headers_mut().insert(http::header::HOST, h.clone());
                }
                (None, Some(None)) => {
                    req.headers_mut().remove(http::header::HOST);
                }
                (None, None) => {}
            }
            let fut = co.send(req);
            let res = match self.attempt_timeout {
                Some(t) => match tokio::time::timeout(t, fut).await {
                    Ok(r) => r,
                    Err(_) => {
                        ep.observe_outcome(false, &self.accrual);
                        return Err(RouteError::AttemptTimeout(format!(
                            "exceeded {}ms request attempt timeout to {}",
                            t.as_millis(),
                            ep.addr
                        )));
                    }
                },
                None => fut.await,
            };
            drop(load);
            match res {
                Ok((resp, checkin)) => {
                    if let Some(decay) = self.balancer.ewma_decay_ns() {
                        ep.observe_latency(start.elapsed().as_nanos() as u64, decay);
                    }
                    let ok = !resp.status().is_server_error();
                    // A gRPC answer's outcome may be in its trailers: the router reports it.
                    if !(defer_success && ok) {
                        self.observe(&ep, ok);
                    }
                    let (parts, body) = resp.into_parts();
                    let body = RespBody::Proxied {
                        body,
                        checkin,
                        on_end: None,
                    };
                    return Ok((Response::from_parts(parts, body), ep));
                }
                Err(mut e) => {
                    if e.client_body {
                        // The client's body broke off or was malformed (or the request was
                        // ours to refuse): never the endpoint's fault, never requeued.
                        return Err(RouteError::BadUpload(e.error.to_string()));
                    }
                    ep.observe_outcome(false, &self.accrual);
                    let msg = format!("{} (endpoint {})", e.error, ep.addr);
                    match e.message.take() {
                        // Not sent: safe to try another endpoint.
                        Some(r) => {
                            req = r;
                            last_err = Some(RouteError::Connect(msg));
                        }
                        None => return Err(RouteError::Upstream(msg)),
                    }
                }
            }
        }
        Err(last_err.unwrap_or_else(|| RouteError::Upstream("no endpoint answered".into())))
    }
}

/// An endpoint's answer: the response and the endpoint.
pub type Answer = (Response<RespBody>, Arc<Endpoint>);

/// Replaces a URI's authority (an HTTP/2 request's `:authority`); a value that is not an
/// authority leaves the URI as it is.
fn set_authority(uri: &mut http::Uri, a: &http::HeaderValue) {
    let Ok(auth) = http::uri::Authority::try_from(a.as_bytes()) else {
        return;
    };
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(auth);
    if parts.scheme.is_none() {
        parts.scheme = Some(http::uri::Scheme::HTTP);
    }
    if let Ok(u) = http::Uri::from_parts(parts) {
        *uri = u;
    }
}

/// Counts a request against an endpoint's load while it is outstanding.
struct LoadGuard(Arc<Endpoint>);

impl LoadGuard {
    fn new(e: &Arc<Endpoint>) -> LoadGuard {
        e.load.fetch_add(1, Relaxed);
        LoadGuard(Arc::clone(e))
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.load.fetch_sub(1, Relaxed);
    }
}

async fn watch_addr(client: Weak<Client>, mut addr: Var<Addr>) {
    loop {
        let a = addr.get();
        match client.upgrade() {
            Some(c) => c.update(a),
            None => return,
        }
        if !addr.changed().await {
            return;
        }
    }
}
