//! The ZooKeeper namers: `io.l5d.serversets` (Twitter/Finagle serversets) and `io.l5d.zkLeader`
//! (the leader of a leader-election group). Both watch ZooKeeper through one shared session
//! per namer (the `zookeeper-client` crate) and publish through the naming core's
//! [`ServiceCell`], so they follow its rules: no members is a NameTree Neg (a dtab falls back),
//! member churn changes the address set and not the tree, and a ZooKeeper failure keeps the
//! last good state (marked stale in `/namer_state`) instead of emptying it.
//!
//! **`io.l5d.serversets`**: a lookup path is `/<zk path...>[:<endpoint>][#<shard>]`. The
//! longest prefix of the path is tried as a serverset first; while it is Neg (the node does not
//! exist, or no member is selected), its last element moves into the residual and the next
//! shorter prefix is tried, down to the ZooKeeper root `/` (as Linkerd's `ServersetNamer`, whose
//! empty path resolves the root serverset); if every prefix is Neg the tree is Neg. This is
//! re-evaluated whenever a watched serverset changes: a longer serverset that appears later
//! takes over. The bound id is `<prefix>/<the consumed elements as written>` (so
//! `/#/io.l5d.serversets/discovery/web:http#0`), the residual is the rest. The pending or
//! failed state of the longest prefix that is not Neg is the lookup's state (Linkerd's
//! `Activity.flatMap`); only prefixes down to that one are watched.
//!
//! The last element's `name[:endpoint][#shard]` is Finagle's job syntax (`ServersetPath`);
//! another shape (`a:b:c`, `a#x`) fails the lookup, as in Linkerd. Members are the children
//! named `member_*` (Finagle's serverset2 reads only those); each one's data is serverset JSON,
//! `{"serviceEndpoint":{"host":"10.0.0.1","port":8080},"additionalEndpoints":{"http":{..}},
//! "status":"ALIVE","shard":0}`. Only `ALIVE` members count (no status counts as alive);
//! `:endpoint` uses `additionalEndpoints[endpoint]` (members without it are left out);
//! `#shard` keeps the members whose `shard` equals it. A member whose data does not parse is
//! left out with a warning; it never fails the set. Host names are resolved through the system
//! resolver when the member is read (an unresolvable one is left out with a warning).
//!
//! **`io.l5d.zkLeader`**: a lookup path is `/<zk path...>`, with the same longest-prefix
//! fallback. The node's children named `member_*` are leader-election candidates (Twitter's
//! `Group`, which Linkerd uses; sequential nodes such as `member_0000000007`); the one with the
//! lowest sequence number is the leader, and its data,
//! `host:port` (several may be separated by commas or spaces, as Linkerd reads them) or
//! serverset JSON (its `serviceEndpoint`), is the address set. No candidate is Neg; leader data
//! that does not parse fails the name (or keeps the last good set, stale). Linkerd picks the
//! prefix once, when the lookup starts; here it is re-evaluated as for serversets.
//!
//! Watching: each watched node has a task (one per consumed path, so `/a/b` and `/a/b:http`
//! watch the same node twice) that lists the children with a watch and reads each relevant
//! child's data with a watch; a missing node is watched for creation. A connection loss keeps
//! the last good state (stale) until the client has reconnected and re-read; an expired
//! session is replaced by a new one and everything is read again; failed reads are retried
//! with jittered backoff (about 100 ms to 5 s). A task stops once nothing observes its service
//! (checked at every wake-up and every 2 s); the session is opened at the first lookup and
//! closed when the namer is dropped.
//!
//! Not done (simplifications of Finagle/Linkerd): serverset weight vectors (`vector_*` nodes),
//! member metadata and shard ids in endpoint metadata, TLS/SASL to ZooKeeper, and
//! `/bound-names.json` enumeration. Lookups need a tokio runtime; outside one they fail.
//!
//! It only names; it does not route or balance.

mod data;
mod session;
mod watch;

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};
use switchboard_namer_core::service::{NamerStats, ServiceCell, Services};
use switchboard_namer_core::var::{failed, Deps};
use switchboard_namer_core::{Activity, Name, NameTree, Namer, NamingError, Path, State, Updater};
use tokio::sync::watch as tokio_watch;

pub use data::{
    leader_of, parse_host_port, parse_job, parse_leader_data, parse_member, sequence_of,
    valid_node_name, HostPort, Member, MEMBER_PREFIX,
};

use session::Session;
use watch::{ServiceWatch, Target};

/// The serversets namer's `kind` in config.
pub const SERVERSETS_KIND: &str = "io.l5d.serversets";
/// The leader namer's `kind` in config.
pub const ZK_LEADER_KIND: &str = "io.l5d.zkLeader";
/// ZooKeeper's default client port (the default of `zkAddrs[].port`).
pub const DEFAULT_ZK_PORT: u16 = 2181;
/// The session timeout asked of ZooKeeper unless configured (Finagle's serverset2 default).
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Options shared by both namers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkOptions {
    /// The session timeout asked of ZooKeeper (the server bounds it by its
    /// `minSessionTimeout`/`maxSessionTimeout`). A session whose server is gone for about 1.4
    /// times this long expires, and the namer starts a new one.
    pub session_timeout: Duration,
}

impl Default for ZkOptions {
    fn default() -> Self {
        ZkOptions {
            session_timeout: DEFAULT_SESSION_TIMEOUT,
        }
    }
}

/// The ZooKeeper connect string for `zk_addrs` (`h1:p1,h2:p2`, IPv6 hosts bracketed).
pub fn connect_string(zk_addrs: &[(String, u16)]) -> String {
    zk_addrs
        .iter()
        .map(|(h, p)| {
            if h.contains(':') && !h.starts_with('[') {
                format!("[{h}]:{p}")
            } else {
                format!("{h}:{p}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Serversets,
    Leader,
}

type TreeUpdater = Updater<State<NameTree<Name>>>;

/// State shared by a namer and its tasks.
pub(crate) struct Inner {
    kind: &'static str,
    which: Kind,
    prefix: Path,
    zk_addrs: Vec<(String, u16)>,
    pub(crate) session: Arc<Session>,
    pub(crate) services: Services<Path>,
    lookups: Mutex<HashMap<Path, Arc<TreeUpdater>>>,
    pub(crate) stats: NamerStats,
    /// Set to true when the namer is dropped: every task stops.
    pub(crate) shutdown: tokio_watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One prefix of a lookup path, as a service to try.
struct Candidate {
    /// The consumed elements (the cell's key; the bound id is `prefix ++ key`).
    key: Path,
    residual: Path,
    /// `Ok(None)`: cannot exist in ZooKeeper (Neg); `Err`: the lookup fails.
    target: Result<Option<Target>, String>,
}

impl Inner {
    fn new(which: Kind, zk_addrs: Vec<(String, u16)>, prefix: Path, opts: ZkOptions) -> Arc<Inner> {
        let kind = match which {
            Kind::Serversets => SERVERSETS_KIND,
            Kind::Leader => ZK_LEADER_KIND,
        };
        let (shutdown, _) = tokio_watch::channel(false);
        Arc::new(Inner {
            kind,
            which,
            prefix,
            session: Session::new(kind, connect_string(&zk_addrs), opts.session_timeout),
            zk_addrs,
            services: Services::default(),
            lookups: Mutex::new(HashMap::new()),
            stats: NamerStats::default(),
            shutdown,
        })
    }

    /// The prefixes of `path` to try, longest first, down to the root.
    fn candidates(&self, path: &Path) -> Vec<Candidate> {
        let n = path.len();
        // Each element as a ZooKeeper node name, if it can be one.
        let names: Vec<Option<&str>> = (0..n)
            .map(|i| path.elem_str(i).filter(|s| data::valid_node_name(s)))
            .collect();
        (0..=n)
            .rev()
            .map(|k| Candidate {
                key: path.take(k),
                residual: path.drop(k),
                target: self.target(&names[..k]),
            })
            .collect()
    }

    /// What the consumed elements `names` denote.
    fn target(&self, names: &[Option<&str>]) -> Result<Option<Target>, String> {
        let Some(names) = names.iter().copied().collect::<Option<Vec<&str>>>() else {
            return Ok(None);
        };
        match self.which {
            Kind::Leader => Ok(Some(Target::Leader {
                zk_path: data::zk_path(names.as_slice()),
            })),
            Kind::Serversets => {
                let Some((last, init)) = names.split_last() else {
                    return Ok(Some(Target::Serverset {
                        zk_path: "/".to_string(),
                        endpoint: None,
                        shard: None,
                    }));
                };
                let Some((name, endpoint, shard)) = data::parse_job(last) else {
                    return Err(format!("invalid serverset job syntax: {last}"));
                };
                if !data::valid_node_name(&name) {
                    return Ok(None);
                }
                let mut elems: Vec<&str> = init.to_vec();
                elems.push(name.as_str());
                Ok(Some(Target::Serverset {
                    zk_path: data::zk_path(elems.as_slice()),
                    endpoint,
                    shard,
                }))
            }
        }
    }

    /// The cell for `key`, starting its watch when it is new.
    fn cell(self: &Arc<Self>, key: &Path, target: &Target) -> Arc<ServiceCell> {
        self.services.get_or_start(
            key,
            || self.prefix.concat(key),
            |cell| ServiceWatch::spawn(Arc::clone(self), key.clone(), target.clone(), cell),
        )
    }

    /// The tree of `key` with `residual` left over. Retries when the cell was released between
    /// being found and being observed (its task would have stopped).
    fn cell_tree(
        self: &Arc<Self>,
        key: &Path,
        target: &Target,
        residual: &Path,
    ) -> Activity<NameTree<Name>> {
        loop {
            let cell = self.cell(key, target);
            let tree = cell.tree(residual);
            if Arc::ptr_eq(&cell, &self.cell(key, target)) {
                return tree;
            }
        }
    }

    /// The lookup's state now: the first candidate (longest first) that is not Neg decides.
    /// Watches (in `held`) the candidates down to the deciding one and lets go of the others;
    /// returns what to wait on.
    fn evaluate(
        self: &Arc<Self>,
        cands: &[Candidate],
        held: &mut [Option<Activity<NameTree<Name>>>],
    ) -> (State<NameTree<Name>>, Deps<State<NameTree<Name>>>) {
        let mut deps = Deps::default();
        let mut result = State::Ok(NameTree::Neg);
        let mut decided = cands.len();
        for (i, c) in cands.iter().enumerate() {
            let st = match &c.target {
                Ok(None) => State::Ok(NameTree::Neg),
                Err(e) => State::Failed(NamingError::new(e.clone())),
                Ok(Some(t)) => {
                    let var = held[i].get_or_insert_with(|| self.cell_tree(&c.key, t, &c.residual));
                    let st = var.get();
                    deps.push(var.clone());
                    st
                }
            };
            if !matches!(st, State::Ok(NameTree::Neg)) {
                result = st;
                decided = i;
                break;
            }
        }
        for h in held.iter_mut().skip(decided.saturating_add(1)) {
            *h = None;
        }
        (result, deps)
    }

    /// Drops the lookup entry for `path` if nobody observes it (again); returns whether it did.
    fn forget_lookup(&self, path: &Path, up: &Arc<TreeUpdater>) -> bool {
        let mut lookups = lock(&self.lookups);
        if up.observers() > 0 {
            return false;
        }
        if lookups.get(path).is_some_and(|cur| Arc::ptr_eq(cur, up)) {
            lookups.remove(path);
        }
        true
    }

    fn lookup(self: &Arc<Self>, path: &Path) -> Activity<NameTree<Name>> {
        self.stats.lookups.fetch_add(1, Relaxed);
        if tokio::runtime::Handle::try_current().is_err() {
            return failed(NamingError::new(format!(
                "{}: lookups need a tokio runtime",
                self.kind
            )));
        }
        let mut lookups = lock(&self.lookups);
        if let Some(up) = lookups.get(path) {
            return up.var();
        }
        let cands = self.candidates(path);
        let mut held: Vec<Option<Activity<NameTree<Name>>>> =
            (0..cands.len()).map(|_| None).collect();
        let (initial, _) = self.evaluate(&cands, &mut held);
        let (up, var) = Updater::new(initial);
        let up = Arc::new(up);
        lookups.insert(path.clone(), Arc::clone(&up));
        drop(lookups);
        tokio::spawn(run_lookup(Arc::clone(self), path.clone(), cands, held, up));
        var
    }

    fn state(&self) -> Value {
        let mut cells = self.services.snapshot();
        cells.sort_by(|a, b| a.0.cmp(&b.0));
        let services: serde_json::Map<String, Value> = cells
            .iter()
            .map(|(k, c)| (k.show(), c.state_json()))
            .collect();
        let zk_addrs: Vec<Value> = self
            .zk_addrs
            .iter()
            .map(|(h, p)| json!({"host": h, "port": p}))
            .collect();
        json!({
            "kind": self.kind,
            "prefix": self.prefix.show(),
            "zkAddrs": zk_addrs,
            "session": self.session.status(),
            "sessionTimeoutMs": self.session.session_timeout().as_millis() as u64,
            "services": services,
            "stats": self.stats.json(),
        })
    }

    fn stats(&self) -> Vec<(String, i64)> {
        let cells = self.services.snapshot();
        let stale = cells.iter().filter(|(_, c)| c.is_stale()).count();
        let mut out = self.stats.pairs();
        out.push(("stale".to_string(), stale as i64));
        out.push(("services".to_string(), cells.len() as i64));
        out
    }
}

/// Keeps one lookup's tree up to date until nobody observes it.
async fn run_lookup(
    inner: Arc<Inner>,
    path: Path,
    cands: Vec<Candidate>,
    mut held: Vec<Option<Activity<NameTree<Name>>>>,
    up: Arc<TreeUpdater>,
) {
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        let (state, mut deps) = inner.evaluate(&cands, &mut held);
        up.set(state);
        tokio::select! {
            changed = wait_deps(&mut deps) => {
                if !changed {
                    // Every watched cell is gone (released): take them up again.
                    held.iter_mut().for_each(|h| *h = None);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            _ = up.closed() => {
                if inner.forget_lookup(&path, &up) {
                    return;
                }
            }
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}

/// Waits for a change of any watched tree; never returns when nothing can change.
async fn wait_deps(deps: &mut Deps<State<NameTree<Name>>>) -> bool {
    if deps.is_empty() {
        std::future::pending::<()>().await;
    }
    deps.wait_any().await
}

/// The `io.l5d.serversets` namer.
pub struct ServersetsNamer {
    inner: Arc<Inner>,
}

impl ServersetsNamer {
    /// A namer over the ZooKeeper ensemble `zk_addrs`, binding ids under `prefix` (e.g.
    /// `/#/io.l5d.serversets`). Connects at the first lookup.
    pub fn new(zk_addrs: Vec<(String, u16)>, prefix: Path) -> Arc<ServersetsNamer> {
        Self::with_options(zk_addrs, prefix, ZkOptions::default())
    }

    pub fn with_options(
        zk_addrs: Vec<(String, u16)>,
        prefix: Path,
        opts: ZkOptions,
    ) -> Arc<ServersetsNamer> {
        Arc::new(ServersetsNamer {
            inner: Inner::new(Kind::Serversets, zk_addrs, prefix, opts),
        })
    }
}

impl Drop for ServersetsNamer {
    fn drop(&mut self) {
        self.inner.shutdown.send_replace(true);
    }
}

impl Namer for ServersetsNamer {
    fn lookup(&self, path: &Path) -> Activity<NameTree<Name>> {
        self.inner.lookup(path)
    }

    fn state(&self) -> Value {
        self.inner.state()
    }

    fn stats(&self) -> Vec<(String, i64)> {
        self.inner.stats()
    }
}

/// The `io.l5d.zkLeader` namer.
pub struct ZkLeaderNamer {
    inner: Arc<Inner>,
}

impl ZkLeaderNamer {
    /// A namer over the ZooKeeper ensemble `zk_addrs`, binding ids under `prefix` (e.g.
    /// `/#/io.l5d.zkLeader`). Connects at the first lookup.
    pub fn new(zk_addrs: Vec<(String, u16)>, prefix: Path) -> Arc<ZkLeaderNamer> {
        Self::with_options(zk_addrs, prefix, ZkOptions::default())
    }

    pub fn with_options(
        zk_addrs: Vec<(String, u16)>,
        prefix: Path,
        opts: ZkOptions,
    ) -> Arc<ZkLeaderNamer> {
        Arc::new(ZkLeaderNamer {
            inner: Inner::new(Kind::Leader, zk_addrs, prefix, opts),
        })
    }
}

impl Drop for ZkLeaderNamer {
    fn drop(&mut self) {
        self.inner.shutdown.send_replace(true);
    }
}

impl Namer for ZkLeaderNamer {
    fn lookup(&self, path: &Path) -> Activity<NameTree<Name>> {
        self.inner.lookup(path)
    }

    fn state(&self) -> Value {
        self.inner.state()
    }

    fn stats(&self) -> Vec<(String, i64)> {
        self.inner.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        Path::read(s).unwrap()
    }

    fn shown(inner: &Inner, path: &str) -> Vec<(String, String, String)> {
        inner
            .candidates(&p(path))
            .into_iter()
            .map(|c| {
                let t = match c.target {
                    Ok(None) => "neg".to_string(),
                    Err(e) => format!("err {e}"),
                    Ok(Some(Target::Serverset {
                        zk_path,
                        endpoint,
                        shard,
                    })) => format!("{zk_path} {endpoint:?} {shard:?}"),
                    Ok(Some(Target::Leader { zk_path })) => zk_path,
                };
                (c.key.show(), c.residual.show(), t)
            })
            .collect()
    }

    fn t(a: &str, b: &str, c: &str) -> (String, String, String) {
        (a.into(), b.into(), c.into())
    }

    #[test]
    fn serverset_candidates_longest_first_down_to_root() {
        let inner = Inner::new(
            Kind::Serversets,
            vec![("127.0.0.1".into(), 2181)],
            p("/#/io.l5d.serversets"),
            ZkOptions::default(),
        );
        assert_eq!(
            shown(&inner, "/a/b:http#2/c"),
            vec![
                t("/a/b:http#2/c", "/", "/a/b:http#2/c None None"),
                t("/a/b:http#2", "/c", "/a/b Some(\"http\") Some(2)"),
                t("/a", "/b:http#2/c", "/a None None"),
                t("/", "/a/b:http#2/c", "/ None None"),
            ]
        );
        assert_eq!(
            shown(&inner, "/a:b:c/d"),
            vec![
                t("/a:b:c/d", "/", "/a:b:c/d None None"),
                t("/a:b:c", "/d", "err invalid serverset job syntax: a:b:c"),
                t("/", "/a:b:c/d", "/ None None"),
            ]
        );
        // `..` cannot be a node: that prefix and the longer ones are Neg.
        assert_eq!(
            shown(&inner, "/a/../b"),
            vec![
                t("/a/../b", "/", "neg"),
                t("/a/..", "/b", "neg"),
                t("/a", "/../b", "/a None None"),
                t("/", "/a/../b", "/ None None"),
            ]
        );
    }

    #[test]
    fn leader_candidates_take_elements_literally() {
        let inner = Inner::new(
            Kind::Leader,
            vec![("127.0.0.1".into(), 2181)],
            p("/#/io.l5d.zkLeader"),
            ZkOptions::default(),
        );
        assert_eq!(
            shown(&inner, "/g:x/y"),
            vec![
                t("/g:x/y", "/", "/g:x/y"),
                t("/g:x", "/y", "/g:x"),
                t("/", "/g:x/y", "/"),
            ]
        );
    }

    #[test]
    fn connect_strings() {
        assert_eq!(
            connect_string(&[("a".into(), 1), ("::1".into(), 2181), ("[::2]".into(), 3)]),
            "a:1,[::1]:2181,[::2]:3"
        );
    }

    #[test]
    fn lookup_outside_a_runtime_fails() {
        let n = ServersetsNamer::new(vec![("127.0.0.1".into(), 1)], p("/#/io.l5d.serversets"));
        let mut act = n.lookup(&p("/a"));
        assert!(matches!(act.get(), State::Failed(_)));
    }
}
