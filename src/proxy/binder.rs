//! Binding for a router: logical names (plus the request's local dtab) to live route trees
//! whose leaves are shared clients. Two caches, as Linkerd's `DstBindingFactory`: the path
//! cache (one live binding per (path, local dtab)) and the client cache (one client per bound
//! id, so many names share a balancer and its pools). A binding's tree is watched in the
//! background; requests read the current tree without locking the namer. After a first good
//! tree, a later naming failure keeps the last good tree. Idle entries expire after
//! `idleTtlSecs`; a full cache evicts its most idle entry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use switchboard_namer_core::{
    Activity, Bound, DefaultInterpreter, Dtab, DtabVar, NameTree, Path, State,
};
use tokio::sync::watch;

use super::balancer::now_ns;
use super::client::{Client, ClientSettings};
use crate::metrics::{Counter, RequestStats, Scope};

/// Default capacity of each binding cache.
pub const DEFAULT_CACHE_CAPACITY: usize = 1000;
/// Default idle time after which a cache entry expires.
pub const DEFAULT_IDLE_TTL_SECS: u64 = 600;

/// Where a router's names are bound (its `interpreter` kind).
#[derive(Clone)]
pub enum Interpretation {
    /// `default`: the router's dtab (and the request's), then the configured namers.
    Local,
    /// A watched dtab first, then as `Local`: `io.l5d.fs`'s file, or (with the store kept
    /// here) `io.l5d.consul.interpreter`'s namespace.
    WatchedDtab(
        DtabVar,
        Option<Arc<switchboard_namerd::namespaces::Namespaces>>,
    ),
    /// `io.l5d.namerd.http`: namerd binds, with the router's dtab (and the request's) after
    /// the namespace's.
    Namerd(switchboard_namerd::client::NamerdHttp),
    /// `io.l5d.mesh`: namerd binds, over its gRPC mesh API.
    Mesh(switchboard_namerd::mesh::client::MeshInterpreter),
}

/// A namerd interpreter as the admin pages show it: its kind, its state, its gauges.
pub type RemoteState = (&'static str, serde_json::Value, Vec<(String, i64)>);

impl Interpretation {
    /// A namerd interpreter's kind, state and gauges, for the admin pages.
    pub fn remote(&self) -> Option<RemoteState> {
        match self {
            Interpretation::Namerd(n) => Some(("io.l5d.namerd.http", n.state(), n.stats())),
            Interpretation::Mesh(m) => Some(("io.l5d.mesh", m.state(), m.stats())),
            _ => None,
        }
    }
}

/// A bound tree whose leaves are clients.
pub type RouteTree = NameTree<RouteLeaf>;

#[derive(Clone)]
pub struct RouteLeaf {
    pub client: Arc<Client>,
    pub residual: Path,
    /// `l5d-dst-residual`, when the residual is not empty.
    pub residual_header: Option<http::HeaderValue>,
}

impl PartialEq for RouteLeaf {
    fn eq(&self, o: &RouteLeaf) -> bool {
        Arc::ptr_eq(&self.client, &o.client) && self.residual == o.residual
    }
}
impl Eq for RouteLeaf {}
impl PartialOrd for RouteLeaf {
    fn partial_cmp(&self, o: &RouteLeaf) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for RouteLeaf {
    fn cmp(&self, o: &RouteLeaf) -> std::cmp::Ordering {
        (&self.client.id, &self.residual).cmp(&(&o.client.id, &o.residual))
    }
}

/// What a binding currently resolves to.
#[derive(Clone)]
pub enum Resolved {
    Pending,
    Ok(Arc<RouteTree>),
    Failed(String),
    /// Binding reached a work limit (`BindLimits`): the request's dtab is at fault.
    Limit(String),
}

/// One live binding of a logical name.
pub struct PathEntry {
    pub path: Path,
    state: watch::Receiver<Resolved>,
    /// Per-logical-name request stats (`rt/<router>/service/<svc>`).
    pub stats: Arc<RequestStats>,
    /// `l5d-dst-service`.
    pub header: http::HeaderValue,
    /// The service policy, built on first use.
    pub(crate) policy: std::sync::OnceLock<Arc<super::policy::ServicePolicy>>,
    live: LiveNames,
    last_used: AtomicU64,
    task: tokio::task::AbortHandle,
    /// The follow task's sender: cleared on drop, so the tree's clients are released at once
    /// rather than when the aborted task is next dropped by the runtime.
    tx: Arc<watch::Sender<Resolved>>,
}

impl Drop for PathEntry {
    fn drop(&mut self) {
        self.task.abort();
        self.tx.send_replace(Resolved::Pending);
        // The last binding of this name (after its in-flight requests) takes the name's
        // metrics with it, so names made up by clients (any Host header is one) cannot grow
        // the registry without bound.
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = live.get_mut(&self.path) {
            *n -= 1;
            if *n == 0 {
                live.remove(&self.path);
                self.stats.scope().remove();
            }
        }
    }
}

/// Live bindings per logical name (one per local dtab in use).
type LiveNames = Arc<Mutex<HashMap<Path, usize>>>;

impl PathEntry {
    /// Waits until the binding leaves Pending, up to `timeout`.
    pub async fn resolved(&self, timeout: Duration) -> Resolved {
        self.last_used.store(now_ns(), Relaxed);
        if let r @ (Resolved::Ok(_) | Resolved::Failed(_) | Resolved::Limit(_)) =
            &*self.state.borrow()
        {
            return r.clone();
        }
        let mut rx = self.state.clone();
        let _ = tokio::time::timeout(timeout, async {
            let _ = rx.wait_for(|r| !matches!(r, Resolved::Pending)).await;
        })
        .await;
        let r = self.state.borrow().clone();
        r
    }
}

/// Cache statistics (`rt/<router>/bindcache/<cache>/...`).
struct CacheStats {
    misses: Counter,
    evicts: Counter,
    expires: Counter,
}

impl CacheStats {
    fn new(s: &Scope) -> CacheStats {
        CacheStats {
            misses: s.counter("misses"),
            evicts: s.counter("evicts"),
            expires: s.counter("expires"),
        }
    }
}

pub struct Binder {
    interp: Arc<DefaultInterpreter>,
    mode: Interpretation,
    base: Dtab,
    client_cfg: ClientSettings,
    scope: Scope,
    paths: Mutex<HashMap<(Path, String), Arc<PathEntry>>>,
    live: LiveNames,
    clients: Mutex<HashMap<Path, Arc<Client>>>,
    path_capacity: usize,
    client_capacity: usize,
    idle_ttl: Duration,
    path_stats: CacheStats,
    client_stats: CacheStats,
}

impl Binder {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        interp: Arc<DefaultInterpreter>,
        mode: Interpretation,
        base: Dtab,
        client_cfg: ClientSettings,
        scope: Scope,
        path_capacity: usize,
        client_capacity: usize,
        idle_ttl: Duration,
    ) -> Arc<Binder> {
        let bc = scope.scope("bindcache");
        let b = Arc::new(Binder {
            interp,
            mode,
            base,
            client_cfg,
            paths: Mutex::new(HashMap::new()),
            live: Arc::new(Mutex::new(HashMap::new())),
            clients: Mutex::new(HashMap::new()),
            path_capacity: path_capacity.max(1),
            client_capacity: client_capacity.max(1),
            idle_ttl,
            path_stats: CacheStats::new(&bc.scope("path")),
            client_stats: CacheStats::new(&bc.scope("client")),
            scope,
        });
        tokio::spawn(expire_loop(Arc::downgrade(&b)));
        b
    }

    pub fn interpretation(&self) -> &Interpretation {
        &self.mode
    }

    pub fn base_dtab(&self) -> &Dtab {
        &self.base
    }

    /// The dtab a local explanation (`/delegator.json`, no-brokers messages) starts from: the
    /// watched file's now, then the router's.
    pub fn explain_dtab(&self) -> Dtab {
        match &self.mode {
            Interpretation::WatchedDtab(v, _) => match v.sample() {
                State::Ok(d) => d.concat(&self.base),
                _ => self.base.clone(),
            },
            _ => self.base.clone(),
        }
    }

    fn bind(&self, dtab: &Dtab, path: &Path) -> Activity<NameTree<Bound>> {
        let remote = match &self.mode {
            Interpretation::Local => return self.interp.bind(dtab, path),
            Interpretation::WatchedDtab(v, _) => return self.interp.bind_watched(v, dtab, path),
            Interpretation::Namerd(n) => n.bind(dtab, path),
            Interpretation::Mesh(m) => m.bind(dtab, path),
        };
        // namerd bound it; the router's own transformers still apply.
        self.interp
            .transformers()
            .iter()
            .fold(remote, |b, t| t.apply(b))
    }

    pub fn interpreter(&self) -> &Arc<DefaultInterpreter> {
        &self.interp
    }

    /// The live binding of `path` under the request's local dtab.
    pub fn entry(self: &Arc<Self>, path: &Path, local: &Dtab) -> Arc<PathEntry> {
        let key = (path.clone(), local.show());
        if let Some(e) = self
            .paths
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Arc::clone(e);
        }
        // Bind outside the cache lock: a bind's work (bounded by `BindLimits`) must never
        // hold up the requests of other names.
        let (tx, rx) = watch::channel(Resolved::Pending);
        let tx = Arc::new(tx);
        let dtab = self.base.concat(local);
        let activity = self.bind(&dtab, path);
        let task =
            tokio::spawn(follow(Arc::downgrade(self), activity, Arc::clone(&tx))).abort_handle();
        let svc_label = crate::metrics::label(path.show().trim_start_matches('/'));
        *self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(path.clone())
            .or_insert(0) += 1;
        let e = Arc::new(PathEntry {
            path: path.clone(),
            state: rx,
            stats: Arc::new(RequestStats::new(
                self.scope.scope("service").scope(&svc_label),
            )),
            last_used: AtomicU64::new(now_ns()),
            header: http::HeaderValue::from_str(&path.show())
                .unwrap_or_else(|_| http::HeaderValue::from_static("")),
            policy: std::sync::OnceLock::new(),
            live: Arc::clone(&self.live),
            task,
            tx,
        });
        let mut paths = self.paths.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = paths.get(&key) {
            // Another request bound the same name meanwhile: use its entry (ours is dropped,
            // after the lock, with its task).
            let existing = Arc::clone(existing);
            drop(paths);
            return existing;
        }
        self.path_stats.misses.incr();
        if paths.len() >= self.path_capacity {
            // Full: evict the most idle entry rather than serve an uncached one.
            if let Some(k) = paths
                .iter()
                .min_by_key(|(_, e)| e.last_used.load(Relaxed))
                .map(|(k, _)| k.clone())
            {
                paths.remove(&k);
                self.path_stats.evicts.incr();
            }
        }
        paths.insert(key, Arc::clone(&e));
        e
    }

    /// The shared client for a bound id, created on first use.
    fn client(&self, b: &Bound) -> Arc<Client> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&b.id) {
            return Arc::clone(c);
        }
        self.client_stats.misses.incr();
        if clients.len() >= self.client_capacity {
            let victim = clients
                .iter()
                .filter(|(_, c)| Arc::strong_count(c) == 1)
                .max_by_key(|(_, c)| c.idle_ns())
                .map(|(k, _)| k.clone());
            if let Some(k) = victim {
                clients.remove(&k);
                self.client_stats.evicts.incr();
            }
        }
        let label = crate::metrics::label(b.id.show().trim_start_matches('/'));
        let c = Client::new(
            b.id.clone(),
            b.addr.clone(),
            &self.client_cfg,
            self.scope.scope("client").scope(&label),
        );
        clients.insert(b.id.clone(), Arc::clone(&c));
        c
    }

    fn route_tree(&self, t: &NameTree<Bound>) -> RouteTree {
        t.map(&mut |b: &Bound| RouteLeaf {
            client: self.client(b),
            residual: b.residual.clone(),
            residual_header: (!b.residual.is_empty())
                .then(|| http::HeaderValue::from_str(&b.residual.show()).ok())
                .flatten(),
        })
    }

    /// Every client, for the admin server.
    pub fn clients(&self) -> Vec<Arc<Client>> {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Drops bindings and clients idle for longer than `idleTtlSecs`.
    fn expire(&self) {
        let ttl = self.idle_ttl.as_nanos() as u64;
        let now = now_ns();
        {
            let mut paths = self.paths.lock().unwrap_or_else(|p| p.into_inner());
            let before = paths.len();
            let expired: Vec<(Path, String)> = paths
                .iter()
                .filter(|(_, e)| now.saturating_sub(e.last_used.load(Relaxed)) > ttl)
                .map(|(k, _)| k.clone())
                .collect();
            for k in expired {
                paths.remove(&k);
            }
            self.path_stats.expires.add((before - paths.len()) as u64);
        }
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let before = clients.len();
        clients.retain(|_, c| Arc::strong_count(c) > 1 || c.idle_ns() <= ttl);
        self.client_stats
            .expires
            .add((before - clients.len()) as u64);
        // Over capacity (clients in use when their names were bound cannot be evicted then):
        // drop the most idle unused ones now.
        while clients.len() > self.client_capacity {
            let victim = clients
                .iter()
                .filter(|(_, c)| Arc::strong_count(c) == 1)
                .max_by_key(|(_, c)| c.idle_ns())
                .map(|(k, _)| k.clone());
            match victim {
                Some(k) => {
                    clients.remove(&k);
                    self.client_stats.evicts.incr();
                }
                None => break,
            }
        }
        for c in clients.values() {
            for e in c.endpoints().iter() {
                e.session.expire_idle();
            }
        }
    }
}

/// Follows a binding's activity, publishing route trees; keeps the last good tree on failure.
async fn follow(
    binder: Weak<Binder>,
    mut activity: switchboard_namer_core::Activity<NameTree<Bound>>,
    tx: Arc<watch::Sender<Resolved>>,
) {
    let mut had_ok = false;
    loop {
        // The entry is gone (it cleared the tree on drop): publish nothing more.
        if tx.is_closed() {
            return;
        }
        let state = activity.get();
        let Some(b) = binder.upgrade() else { return };
        match state {
            State::Pending => {
                if !had_ok {
                    tx.send_replace(Resolved::Pending);
                }
            }
            State::Ok(t) => {
                had_ok = true;
                tx.send_replace(Resolved::Ok(Arc::new(b.route_tree(&t))));
            }
            State::Failed(e) => {
                if had_ok {
                    tracing::warn!(error = %e, "naming failed; keeping the last good tree");
                } else if e.is_limit() {
                    tx.send_replace(Resolved::Limit(e.to_string()));
                } else {
                    tx.send_replace(Resolved::Failed(e.to_string()));
                }
            }
        }
        drop(b);
        if !activity.changed().await {
            return;
        }
    }
}

async fn expire_loop(binder: Weak<Binder>) {
    let period = match binder.upgrade() {
        Some(b) => (b.idle_ttl / 2).clamp(Duration::from_millis(100), Duration::from_secs(60)),
        None => return,
    };
    loop {
        tokio::time::sleep(period).await;
        match binder.upgrade() {
            Some(b) => b.expire(),
            None => return,
        }
    }
}

/// Chooses the leaf a request goes to: a weighted random branch of each union, the first
/// alternative that is not Neg.
pub fn choose(t: &RouteTree) -> Option<&RouteLeaf> {
    match t {
        NameTree::Leaf(l) => Some(l),
        NameTree::Neg | NameTree::Fail | NameTree::Empty => None,
        NameTree::Alt(ts) => ts
            .iter()
            .find(|t| !matches!(t, NameTree::Neg))
            .and_then(choose),
        NameTree::Union(ws) => {
            let total: f64 = ws.iter().map(|w| w.weight.max(0.0)).sum();
            if total <= 0.0 {
                return ws.first().and_then(|w| choose(&w.tree));
            }
            let mut x = fastrand::f64() * total;
            for w in ws {
                let wt = w.weight.max(0.0);
                if x < wt {
                    return choose(&w.tree);
                }
                x -= wt;
            }
            ws.last().and_then(|w| choose(&w.tree))
        }
    }
}
