//! What namerd keeps on top of its store: each namespace's dtab as a watched value for binding
//! (Pending until the store is first read, empty when the namespace does not exist, the last
//! good dtab when the stored one stops parsing); the history of every version this namerd saw
//! (the last [`HISTORY_LEN`] per namespace, with when it saw them); and which linkers were sent
//! which version, for the admin page.
//!
//! History lives in this process: it starts with the versions found at startup and grows with
//! every change the store's watch shows, whoever made it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::{json, Value};
use switchboard_namer_core::{Dtab, DtabVar, NamingError, State, Updater, Var};

use crate::store::{Entry, Store, StoreState};

/// Versions kept per namespace.
pub const HISTORY_LEN: usize = 100;
/// Namespaces whose history is kept (deleted ones count until newer ones need the room).
pub const MAX_HISTORY_NAMESPACES: usize = 20_000;
/// Bytes the history may take in all; past it the oldest versions anywhere go first (each
/// namespace keeps at least its newest), so a history of many large dtabs may hold fewer than
/// [`HISTORY_LEN`] versions per namespace.
pub const MAX_HISTORY_BYTES: usize = 128 * 1024 * 1024;
/// Linkers tracked per namespace on the admin page; the least recently seen go first.
pub const MAX_TRACKED_LINKERS: usize = 1_000;
/// Linker entries tracked in all.
pub const MAX_TRACKED_TOTAL: usize = 20_000;

/// One version as seen.
#[derive(Clone, Debug, PartialEq)]
pub struct Version {
    pub version: u64,
    /// When this namerd saw it (for versions found at startup: when it started).
    pub at: SystemTime,
    pub change: Change,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Dtab(Dtab),
    /// The stored value was not a dtab.
    Invalid(String),
    Deleted,
}

/// A linker as namerd sees it: its name (the `l5d-namerd-client` header, else its address).
#[derive(Clone, Debug)]
struct Seen {
    version: u64,
    at: SystemTime,
    streams: usize,
}

/// Per namespace, the watched dtab bindings read (its task keeps it current while watched).
type DtabCache = HashMap<String, Arc<Updater<State<Dtab>>>>;

pub struct Namespaces {
    pub store: Arc<Store>,
    dtabs: Arc<Mutex<DtabCache>>,
    history: Arc<Mutex<History>>,
    linkers: Mutex<HashMap<String, HashMap<String, Seen>>>,
    _history_task: crate::store::TaskGuard,
}

fn secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Namespaces {
    /// Starts following `store` (needs a tokio runtime).
    pub fn new(store: Arc<Store>) -> Arc<Namespaces> {
        let history = Arc::new(Mutex::new(History::default()));
        let task = tokio::spawn(record(store.state(), Arc::clone(&history))).abort_handle();
        Arc::new(Namespaces {
            store,
            dtabs: Arc::new(Mutex::new(HashMap::new())),
            history,
            linkers: Mutex::new(HashMap::new()),
            _history_task: crate::store::TaskGuard(task),
        })
    }

    pub fn state(&self) -> Var<StoreState> {
        self.store.state()
    }

    /// The dtab of `ns`, watched.
    pub fn dtab(&self, ns: &str) -> DtabVar {
        let mut dtabs = self.dtabs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(up) = dtabs.get(ns) {
            return up.var();
        }
        let mut state = self.store.state();
        let first = project(&state.get(), ns, None);
        let (up, var) = Updater::new(first);
        let up = Arc::new(up);
        dtabs.insert(ns.to_string(), Arc::clone(&up));
        drop(dtabs);
        let ns = ns.to_string();
        let cache = Arc::clone(&self.dtabs);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = up.closed() => {
                        // Leave the cache only if nobody took a new watcher meanwhile (a
                        // lookup takes one under this lock).
                        let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
                        if up.observers() == 0 {
                            c.remove(&ns);
                            return;
                        }
                        continue;
                    }
                    more = state.changed() => if !more { break },
                }
                let last = match up.current() {
                    State::Ok(d) => Some(d),
                    _ => None,
                };
                up.set(project(&state.get(), &ns, last));
            }
            cache.lock().unwrap_or_else(|p| p.into_inner()).remove(&ns);
        });
        var
    }

    /// The version `ns` is at now, if it exists.
    pub fn version(&self, ns: &str) -> Option<u64> {
        self.store
            .state()
            .sample()
            .namespaces
            .and_then(|m| m.get(ns).map(|e| e.version))
    }

    /// The versions of `ns` this namerd saw, oldest first.
    pub fn history(&self, ns: &str) -> Vec<Version> {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(ns)
    }

    /// Records a write this namerd made (the watch may show only the last of several).
    pub fn wrote(&self, ns: &str, version: u64, change: Change) {
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        push_version(
            &mut h,
            ns,
            Version {
                version,
                at: SystemTime::now(),
                change,
            },
        );
    }

    /// A linker `client` was sent what `ns` is at `version` (only namespaces that exist are
    /// tracked, [`MAX_TRACKED_LINKERS`] per namespace and [`MAX_TRACKED_TOTAL`] in all).
    pub fn seen(&self, ns: &str, client: &str, version: u64) {
        let exists = self.version(ns).is_some();
        let mut l = self.linkers.lock().unwrap_or_else(|p| p.into_inner());
        let known = l.get(ns).is_some_and(|m| m.contains_key(client));
        if !exists && !known {
            return;
        }
        // Counted only when a new linker would be added (an update is the common case).
        if !known && l.values().map(|m| m.len()).sum::<usize>() >= MAX_TRACKED_TOTAL {
            // Full: the least recently seen linker that no longer watches goes.
            let oldest = l
                .iter()
                .flat_map(|(n, m)| m.iter().map(move |(c, s)| (n, c, s)))
                .filter(|(_, _, s)| s.streams == 0)
                .min_by_key(|(_, _, s)| s.at)
                .map(|(n, c, _)| (n.clone(), c.clone()));
            match oldest {
                Some((n, c)) => {
                    if let Some(m) = l.get_mut(&n) {
                        m.remove(&c);
                        if m.is_empty() {
                            l.remove(&n);
                        }
                    }
                }
                None => return,
            }
        }
        let m = l.entry(ns.to_string()).or_default();
        let now = SystemTime::now();
        if let Some(s) = m.get_mut(client) {
            s.version = version;
            s.at = now;
            return;
        }
        if m.len() >= MAX_TRACKED_LINKERS {
            if let Some(k) = m
                .iter()
                .filter(|(_, s)| s.streams == 0)
                .min_by_key(|(_, s)| s.at)
                .map(|(k, _)| k.clone())
            {
                m.remove(&k);
            } else {
                return;
            }
        }
        m.insert(
            client.to_string(),
            Seen {
                version,
                at: now,
                streams: 0,
            },
        );
    }

    /// A watch stream of `client` on `ns` opened (`+1`) or closed (`-1`).
    pub fn stream(&self, ns: &str, client: &str, open: bool) {
        if open {
            self.seen(ns, client, 0);
        }
        let mut l = self.linkers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = l.get_mut(ns).and_then(|m| m.get_mut(client)) {
            if open {
                s.streams += 1;
            } else {
                s.streams = s.streams.saturating_sub(1);
            }
        }
    }

    /// A linker's watch stream on `ns`: counted as open until the guard is dropped.
    pub fn watching(self: &Arc<Self>, ns: &str, client: &str) -> Watching {
        self.stream(ns, client, true);
        Watching {
            n: Arc::clone(self),
            ns: ns.to_string(),
            client: client.to_string(),
        }
    }

    /// Per namespace: its version now and each linker's last version, for the admin page.
    pub fn linkers_json(&self) -> Value {
        let state = self.store.state().sample();
        let l = self.linkers.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = serde_json::Map::new();
        let current = |ns: &str| {
            state
                .namespaces
                .as_ref()
                .and_then(|m| m.get(ns))
                .map(|e| e.version)
        };
        let mut names: Vec<&String> = l.keys().collect();
        if let Some(m) = &state.namespaces {
            names.extend(m.keys().filter(|k| !l.contains_key(*k)));
        }
        names.sort();
        for ns in names {
            let cur = current(ns);
            let linkers: serde_json::Map<String, Value> = l
                .get(ns)
                .map(|m| {
                    let mut v: Vec<_> = m.iter().collect();
                    v.sort_by(|a, b| a.0.cmp(b.0));
                    v.into_iter()
                        .map(|(k, s)| {
                            (
                                k.clone(),
                                json!({
                                    "version": s.version.to_string(),
                                    "current": Some(s.version) == cur,
                                    "seenAt": secs(s.at),
                                    "watching": s.streams > 0,
                                }),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.insert(
                ns.clone(),
                json!({"version": cur.map(|v| v.to_string()), "linkers": linkers}),
            );
        }
        Value::Object(out)
    }
}

/// One open watch stream of a linker (see [`Namespaces::watching`]).
pub struct Watching {
    n: Arc<Namespaces>,
    ns: String,
    client: String,
}

impl Watching {
    /// The linker was sent what the namespace is at `version`.
    pub fn sent(&self, version: u64) {
        self.n.seen(&self.ns, &self.client, version);
    }

    /// The linker was sent an answer computed from the namespace as it is now.
    pub fn sent_current(&self) {
        if let Some(v) = self.n.version(&self.ns) {
            self.sent(v);
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.n.stream(&self.ns, &self.client, false);
    }
}

/// What `ns` is for binding, given the store's state and the last good dtab.
fn project(s: &StoreState, ns: &str, last: Option<Dtab>) -> State<Dtab> {
    let Some(m) = &s.namespaces else {
        return State::Pending;
    };
    match m.get(ns) {
        None => State::Ok(Dtab::empty()),
        Some(Entry { dtab: Ok(d), .. }) => State::Ok(d.clone()),
        Some(Entry { dtab: Err(e), .. }) => match last {
            Some(d) => State::Ok(d),
            None => State::Failed(NamingError::new(format!("namespace {ns}: {e}"))),
        },
    }
}

/// Follows the store and appends every version it shows to the history.
async fn record(mut state: Var<StoreState>, history: Arc<Mutex<History>>) {
    let mut last: Option<Arc<BTreeMap<String, Entry>>> = None;
    loop {
        let s = state.get();
        if let Some(m) = &s.namespaces {
            let now = SystemTime::now();
            let mut h = history.lock().unwrap_or_else(|p| p.into_inner());
            let push = push_version;
            for (ns, e) in m.iter() {
                let before = last.as_ref().and_then(|l| l.get(ns));
                if before.map(|b| b.version) != Some(e.version) {
                    let change = match &e.dtab {
                        Ok(d) => Change::Dtab(d.clone()),
                        Err(err) => Change::Invalid(err.clone()),
                    };
                    push(
                        &mut h,
                        ns,
                        Version {
                            version: e.version,
                            at: now,
                            change,
                        },
                    );
                }
            }
            if let Some(l) = &last {
                for (ns, e) in l.iter() {
                    if !m.contains_key(ns) {
                        push(
                            &mut h,
                            ns,
                            Version {
                                version: e.version,
                                at: now,
                                change: Change::Deleted,
                            },
                        );
                    }
                }
            }
            last = Some(Arc::clone(m));
        }
        if !state.changed().await {
            return;
        }
    }
}

/// Adds `v` to the history of `ns` in version order, once.
fn push_version(h: &mut History, ns: &str, v: Version) {
    h.push(ns, v);
}

/// The versions seen, per namespace, within [`HISTORY_LEN`] per namespace,
/// [`MAX_HISTORY_NAMESPACES`] namespaces and [`MAX_HISTORY_BYTES`] in all.
pub(crate) struct History {
    map: HashMap<String, VecDeque<Version>>,
    bytes: usize,
    budget: usize,
}

impl Default for History {
    fn default() -> Self {
        History {
            map: HashMap::new(),
            bytes: 0,
            budget: MAX_HISTORY_BYTES,
        }
    }
}

/// What one version costs in the history's byte budget (its dtab text and some overhead).
fn cost(v: &Version) -> usize {
    64 + match &v.change {
        Change::Dtab(d) => d.show().len(),
        Change::Invalid(e) => e.len(),
        Change::Deleted => 0,
    }
}

impl History {
    fn get(&self, ns: &str) -> Vec<Version> {
        self.map
            .get(ns)
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn push(&mut self, ns: &str, v: Version) {
        if !self.map.contains_key(ns) && self.map.len() >= MAX_HISTORY_NAMESPACES {
            // Full: the history of the namespace deleted longest ago makes room.
            let gone = self
                .map
                .iter()
                .filter(|(_, q)| q.back().is_some_and(|b| b.change == Change::Deleted))
                .min_by_key(|(_, q)| q.back().map(|b| b.at))
                .map(|(k, _)| k.clone());
            match gone {
                Some(k) => {
                    if let Some(q) = self.map.remove(&k) {
                        self.bytes -= q.iter().map(cost).sum::<usize>();
                    }
                }
                None => return,
            }
        }
        let q = self.map.entry(ns.to_string()).or_default();
        if q.iter()
            .any(|b| b.version == v.version && b.change == v.change)
        {
            return;
        }
        // After every version not newer (a delete shares the version of the value it removed).
        let at = q
            .iter()
            .rposition(|b| b.version <= v.version)
            .map_or(0, |i| i + 1);
        self.bytes += cost(&v);
        q.insert(at, v);
        while q.len() > HISTORY_LEN {
            if let Some(old) = q.pop_front() {
                self.bytes -= cost(&old);
            }
        }
        // Over the byte budget: the oldest versions anywhere go first; every namespace keeps
        // its newest.
        while self.bytes > self.budget {
            let oldest = self
                .map
                .iter()
                .filter(|(_, q)| q.len() > 1)
                .min_by_key(|(_, q)| q.front().map(|f| f.at))
                .map(|(k, _)| k.clone());
            let Some(k) = oldest else { break };
            if let Some(old) = self.map.get_mut(&k).and_then(|q| q.pop_front()) {
                self.bytes -= cost(&old);
            }
        }
    }
}

/// A version as the history API shows it.
pub fn version_json(v: &Version) -> Value {
    let (kind, dtab) = match &v.change {
        Change::Dtab(d) => ("dtab", Some(d.show())),
        Change::Invalid(e) => ("invalid", Some(e.clone())),
        Change::Deleted => ("deleted", None),
    };
    json!({"version": v.version.to_string(), "at": secs(v.at), "change": kind, "dtab": dtab})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn tracked_linkers_are_bounded_per_namespace_and_in_all() {
        // Enough namespaces to fill the total, and one more.
        let per = MAX_TRACKED_TOTAL / MAX_TRACKED_LINKERS;
        let dtabs: BTreeMap<String, Dtab> = (0..=per)
            .map(|i| (format!("n{i}"), Dtab::read("/a=>/b").unwrap()))
            .collect();
        let store = Arc::new(Store::Memory(MemoryStore::new(dtabs)));
        let ns = Namespaces::new(Arc::clone(&store));
        let count = |ns: &Arc<Namespaces>, n: &str| {
            ns.linkers_json()[n]["linkers"]
                .as_object()
                .map_or(0, |m| m.len())
        };
        // Per namespace: the next linker pushes out one that is not watching, never a watcher.
        let _w = ns.watching("n0", "c0");
        for i in 0..MAX_TRACKED_LINKERS {
            ns.seen("n0", &format!("c{i}"), 1);
        }
        assert_eq!(count(&ns, "n0"), MAX_TRACKED_LINKERS);
        ns.seen("n0", "newcomer", 1);
        let j = ns.linkers_json();
        assert_eq!(count(&ns, "n0"), MAX_TRACKED_LINKERS);
        assert!(
            j["n0"]["linkers"].get("c0").is_some(),
            "a watcher was pushed out"
        );
        assert!(j["n0"]["linkers"].get("newcomer").is_some());
        // A namespace full of watchers takes no one more.
        let held: Vec<Watching> = (0..MAX_TRACKED_LINKERS)
            .map(|i| ns.watching("n1", &format!("w{i}")))
            .collect();
        ns.seen("n1", "late", 1);
        assert_eq!(count(&ns, "n1"), MAX_TRACKED_LINKERS);
        assert!(ns.linkers_json()["n1"]["linkers"].get("late").is_none());
        drop(held);
        // In all: past MAX_TRACKED_TOTAL the oldest that is not watching goes.
        for n in 2..per {
            for i in 0..MAX_TRACKED_LINKERS {
                ns.seen(&format!("n{n}"), &format!("c{i}"), 1);
            }
        }
        let total = |ns: &Arc<Namespaces>| {
            (0..=per)
                .map(|n| count(ns, &format!("n{n}")))
                .sum::<usize>()
        };
        assert_eq!(total(&ns), MAX_TRACKED_TOTAL);
        ns.seen(&format!("n{per}"), "one-more", 1);
        assert_eq!(total(&ns), MAX_TRACKED_TOTAL);
        assert_eq!(count(&ns, &format!("n{per}")), 1);
        assert!(ns.linkers_json()["n0"]["linkers"].get("c0").is_some());
    }

    #[tokio::test]
    async fn history_keeps_every_version_and_deletes() {
        let store = Arc::new(Store::Memory(MemoryStore::new(BTreeMap::new())));
        let ns = Namespaces::new(Arc::clone(&store));
        let mut d = ns.dtab("web");
        // The memory store is read at once: a missing namespace is an empty dtab.
        assert_eq!(d.get(), State::Ok(Dtab::empty()));
        let a = Dtab::read("/svc=>/a").unwrap();
        let v1 = store.create("web", &a).await.unwrap();
        for i in 0..(HISTORY_LEN + 5) {
            let b = Dtab::read(&format!("/svc=>/b{i}")).unwrap();
            store.update("web", &b, None).await.unwrap();
            tokio::task::yield_now().await;
        }
        store.delete("web", None).await.unwrap();
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        let h = ns.history("web");
        assert_eq!(h.len(), HISTORY_LEN);
        assert_eq!(h.last().unwrap().change, Change::Deleted);
        assert!(h.iter().all(|v| v.version > v1), "the oldest fell out");
        assert!(h.windows(2).all(|w| w[0].version <= w[1].version));
        assert_eq!(d.sample(), State::Ok(Dtab::empty()));
    }

    #[test]
    fn the_history_keeps_to_its_byte_budget_and_every_namespace_keeps_its_newest() {
        let mut h = History {
            budget: 20_000,
            ..History::default()
        };
        let big =
            |i: usize| Change::Dtab(Dtab::read(&format!("/svc=>/{}{i}", "x".repeat(900))).unwrap());
        let t0 = SystemTime::UNIX_EPOCH;
        for i in 0..60 {
            let ns = format!("ns{}", i % 3);
            h.push(
                &ns,
                Version {
                    version: i as u64 + 1,
                    at: t0 + std::time::Duration::from_secs(i as u64),
                    change: big(i),
                },
            );
            assert!(h.bytes <= h.budget, "{} over {}", h.bytes, h.budget);
        }
        for ns in ["ns0", "ns1", "ns2"] {
            let v = h.get(ns);
            assert!(!v.is_empty() && v.len() < 20, "{ns}: {}", v.len());
            // The newest stay.
            assert!(v.last().unwrap().version >= 58, "{ns}");
        }
        let recount: usize = h.map.values().flatten().map(cost).sum();
        assert_eq!(recount, h.bytes);
    }

    #[tokio::test]
    async fn a_namespace_watched_again_after_nobody_watched_it_is_current() {
        let store = Arc::new(Store::Memory(MemoryStore::new(BTreeMap::new())));
        let ns = Namespaces::new(Arc::clone(&store));
        let d = ns.dtab("web");
        drop(d);
        // Its follower notices that nobody watches and leaves the cache.
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        let a = Dtab::read("/svc=>/a").unwrap();
        store.create("web", &a).await.unwrap();
        let mut d = ns.dtab("web");
        assert_eq!(d.get(), State::Ok(a));
        let b = Dtab::read("/svc=>/b").unwrap();
        store.update("web", &b, None).await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while d.get() != State::Ok(b.clone()) {
                d.changed().await;
            }
        })
        .await
        .expect("the second watcher follows the namespace");
    }

    #[test]
    fn a_namespace_that_stops_parsing_keeps_its_last_dtab() {
        let a = Dtab::read("/svc=>/a").unwrap();
        let mut m = BTreeMap::new();
        m.insert(
            "web".to_string(),
            Entry {
                version: 2,
                bytes: 3,
                dtab: Err("bad".into()),
            },
        );
        let s = StoreState {
            namespaces: Some(Arc::new(m)),
            error: None,
        };
        assert_eq!(project(&s, "web", Some(a.clone())), State::Ok(a));
        assert!(matches!(project(&s, "web", None), State::Failed(_)));
        assert_eq!(project(&s, "other", None), State::Ok(Dtab::empty()));
        assert_eq!(project(&StoreState::default(), "web", None), State::Pending);
    }
}
