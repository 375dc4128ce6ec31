//! The shared state of one watched service in a backend namer (DNS SRV, etcd, ZooKeeper,
//! Consul): what the backend last said, published as the name trees lookups return and as the
//! address set bound names carry. It encodes the rules every backend namer follows:
//!
//! - no endpoints (or no such service) is a NameTree `Neg`, so a dtab falls back;
//! - endpoint churn changes the address set only; the tree changes only between Neg, Bound,
//!   Pending and Failed, so clients are never rebuilt by churn;
//! - a backend error never empties a known set: the last good state stays, marked stale, until
//!   the backend answers again; an error before any answer is `Failed`.
//!
//! It does not talk to any backend; the namer's watch task feeds it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use serde_json::{json, Value};

use crate::addr::{Addr, Endpoint};
use crate::namer::{Bound, Name};
use crate::path::Path;
use crate::tree::NameTree;
use crate::var::{Activity, NamingError, State, Updater};

#[derive(Debug, Clone, PartialEq)]
enum Known {
    Pending,
    Neg,
    Bound,
    Failed(String),
}

/// Counters a backend namer keeps for `/namer_state` and metrics.
#[derive(Debug, Default)]
pub struct NamerStats {
    pub lookups: AtomicU64,
    pub watch_opens: AtomicU64,
    pub watch_closes: AtomicU64,
    pub updates: AtomicU64,
    pub errors: AtomicU64,
}

impl NamerStats {
    pub fn json(&self) -> Value {
        json!({
            "lookups": self.lookups.load(Relaxed),
            "watch_opens": self.watch_opens.load(Relaxed),
            "watch_closes": self.watch_closes.load(Relaxed),
            "updates": self.updates.load(Relaxed),
            "errors": self.errors.load(Relaxed),
        })
    }

    /// `(name, value)` pairs for the metrics registry (`namer/<prefix>/<name>`).
    pub fn pairs(&self) -> Vec<(String, i64)> {
        [
            ("lookups", &self.lookups),
            ("watch/opens", &self.watch_opens),
            ("watch/closes", &self.watch_closes),
            ("updates", &self.updates),
            ("errors", &self.errors),
        ]
        .into_iter()
        .map(|(n, c)| (n.to_string(), c.load(Relaxed) as i64))
        .collect()
    }
}

/// One watched service.
pub struct ServiceCell {
    id: Path,
    addr: Updater<Addr>,
    known: Mutex<Known>,
    trees: Mutex<HashMap<Path, Updater<State<NameTree<Name>>>>>,
    stale: AtomicBool,
    last_error: Mutex<Option<String>>,
    last_update: Mutex<Option<SystemTime>>,
    updates: AtomicU64,
    /// Set from creation until the first `tree`: the watch task may start (and ask whether
    /// anyone observes the cell) before the lookup that created it has taken its tree.
    held: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ServiceCell {
    /// A service whose bound names have id `id` (`/#/io.l5d.etcd/web`). Starts Pending.
    pub fn new(id: Path) -> Arc<ServiceCell> {
        let (addr, _) = Updater::new(Addr::Pending);
        Arc::new(ServiceCell {
            id,
            addr,
            known: Mutex::new(Known::Pending),
            trees: Mutex::new(HashMap::new()),
            stale: AtomicBool::new(false),
            last_error: Mutex::new(None),
            last_update: Mutex::new(None),
            updates: AtomicU64::new(0),
            held: AtomicBool::new(true),
        })
    }

    pub fn id(&self) -> &Path {
        &self.id
    }

    fn tree_for(&self, known: &Known, residual: &Path) -> State<NameTree<Name>> {
        match known {
            Known::Pending => State::Pending,
            Known::Neg => State::Ok(NameTree::Neg),
            Known::Bound => State::Ok(NameTree::Leaf(Name::Bound(Bound::new(
                self.id.clone(),
                residual.clone(),
                self.addr.var(),
            )))),
            Known::Failed(e) => State::Failed(NamingError::new(e.clone())),
        }
    }

    /// The tree a lookup of this service with `residual` left over returns.
    pub fn tree(&self, residual: &Path) -> Activity<NameTree<Name>> {
        let mut trees = lock(&self.trees);
        self.held.store(false, Relaxed);
        if let Some(u) = trees.get(residual) {
            return u.var();
        }
        let known = lock(&self.known).clone();
        let (u, v) = Updater::new(self.tree_for(&known, residual));
        trees.insert(residual.clone(), u);
        v
    }

    fn publish(&self, known: Known) {
        let mut k = lock(&self.known);
        if *k == known {
            return;
        }
        *k = known.clone();
        drop(k);
        let mut trees = lock(&self.trees);
        trees.retain(|_, u| u.observers() > 0);
        for (residual, u) in trees.iter() {
            u.set(self.tree_for(&known, residual));
        }
    }

    fn mark_fresh(&self) {
        self.stale.store(false, Relaxed);
        *lock(&self.last_error) = None;
        *lock(&self.last_update) = Some(SystemTime::now());
        self.updates.fetch_add(1, Relaxed);
    }

    /// The backend's current endpoints; none means Neg.
    pub fn set_endpoints(&self, mut eps: Vec<Endpoint>) {
        self.mark_fresh();
        if eps.is_empty() {
            self.addr.set(Addr::Neg);
            self.publish(Known::Neg);
            return;
        }
        eps.sort_by_key(|e| e.addr);
        eps.dedup_by(|a, b| a.addr == b.addr);
        self.addr.set(Addr::bound(eps));
        self.publish(Known::Bound);
    }

    /// The backend says the service does not exist.
    pub fn set_neg(&self) {
        self.set_endpoints(Vec::new());
    }

    /// The backend could not be asked. Keeps the last good state (marked stale); fails only a
    /// service that never had an answer.
    pub fn set_error(&self, e: impl Into<String>) {
        let e = e.into();
        *lock(&self.last_error) = Some(e.clone());
        let known = lock(&self.known).clone();
        match known {
            Known::Pending | Known::Failed(_) => {
                self.addr.set(Addr::Failed(e.clone()));
                self.publish(Known::Failed(e));
            }
            Known::Neg | Known::Bound => self.stale.store(true, Relaxed),
        }
    }

    /// Whether serving a last good state because the backend is failing.
    pub fn is_stale(&self) -> bool {
        self.stale.load(Relaxed)
    }

    /// Whether anyone still watches this service (a tree or an address set). Trees nobody
    /// observes are dropped first: their values hold the address set themselves, so they must
    /// not count as observers of it.
    pub fn observed(&self) -> bool {
        let mut trees = lock(&self.trees);
        if self.held.load(Relaxed) {
            return true;
        }
        trees.retain(|_, u| u.observers() > 0);
        !trees.is_empty() || self.addr.observers() > 0
    }

    /// The current address set.
    pub fn addr(&self) -> Addr {
        self.addr.current()
    }

    /// `/namer_state` JSON for this service.
    pub fn state_json(&self) -> Value {
        let state = match &*lock(&self.known) {
            Known::Pending => "pending".to_string(),
            Known::Neg => "neg".to_string(),
            Known::Bound => "bound".to_string(),
            Known::Failed(e) => format!("failed: {e}"),
        };
        let last_update = lock(&self.last_update).and_then(|t| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_millis() as u64)
        });
        json!({
            "state": state,
            "addr": self.addr.current().to_json(),
            "stale": self.is_stale(),
            "lastError": *lock(&self.last_error),
            "lastUpdateMs": last_update,
            "updates": self.updates.load(Relaxed),
        })
    }
}

/// A registry of watched services keyed by `K`, each with the task that feeds it.
pub struct Services<K> {
    cells: Mutex<HashMap<K, Arc<ServiceCell>>>,
}

impl<K> Default for Services<K> {
    fn default() -> Self {
        Services {
            cells: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone> Services<K> {
    /// The cell for `key`; `start` is called (with the new cell) when it is first needed.
    pub fn get_or_start(
        &self,
        key: &K,
        id: impl FnOnce() -> Path,
        start: impl FnOnce(Arc<ServiceCell>),
    ) -> Arc<ServiceCell> {
        let mut cells = lock(&self.cells);
        if let Some(c) = cells.get(key) {
            return Arc::clone(c);
        }
        let c = ServiceCell::new(id());
        cells.insert(key.clone(), Arc::clone(&c));
        start(Arc::clone(&c));
        c
    }

    /// Forgets `key` if nobody observes it any more; returns whether it did (the watch task
    /// should then stop).
    pub fn release_if_unobserved(&self, key: &K) -> bool {
        let mut cells = lock(&self.cells);
        match cells.get(key) {
            Some(c) if !c.observed() => {
                cells.remove(key);
                true
            }
            Some(_) => false,
            None => true,
        }
    }

    pub fn snapshot(&self) -> Vec<(K, Arc<ServiceCell>)> {
        lock(&self.cells)
            .iter()
            .map(|(k, c)| (k.clone(), Arc::clone(c)))
            .collect()
    }

    pub fn len(&self) -> usize {
        lock(&self.cells).len()
    }

    /// A namer's metrics: its counters, plus how many services it watches and how many of
    /// them are stale.
    pub fn stats_with(&self, stats: &NamerStats) -> Vec<(String, i64)> {
        let cells = self.snapshot();
        let stale = cells.iter().filter(|(_, c)| c.is_stale()).count();
        let mut v = stats.pairs();
        v.push(("stale".into(), stale as i64));
        v.push(("watched".into(), cells.len() as i64));
        v
    }

    /// `/namer_state` JSON of every service, named by `name`.
    pub fn states(&self, name: impl Fn(&K) -> String) -> serde_json::Map<String, Value> {
        self.snapshot()
            .into_iter()
            .map(|(k, c)| (name(&k), c.state_json()))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn ep(port: u16) -> Endpoint {
        Endpoint::new(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    fn churn_changes_addresses_not_trees() {
        let c = ServiceCell::new(Path::read("/#/x/web").unwrap());
        let mut t = c.tree(&Path::read("/a").unwrap());
        assert_eq!(t.get(), State::Pending);
        c.set_endpoints(vec![ep(1)]);
        let State::Ok(NameTree::Leaf(Name::Bound(b))) = t.get() else {
            panic!()
        };
        assert_eq!(
            (b.id.show(), b.residual.show()),
            ("/#/x/web".into(), "/a".into())
        );
        c.set_endpoints(vec![ep(1), ep(2)]);
        assert!(!t.is_final());
        // The tree did not change: no new value to see.
        assert!(futures_util::FutureExt::now_or_never(t.changed()).is_none());
        assert!(
            matches!(b.addr.sample(), Addr::Bound { ref endpoints, .. } if endpoints.len() == 2)
        );
        c.set_endpoints(vec![]);
        assert_eq!(t.get(), State::Ok(NameTree::Neg));
    }

    #[test]
    fn a_bound_cell_is_released_when_nobody_observes_it() {
        let c = ServiceCell::new(Path::read("/#/x/web").unwrap());
        // Held until its creator takes a tree.
        assert!(c.observed());
        let t = c.tree(&Path::empty());
        c.set_endpoints(vec![ep(1)]);
        assert!(c.observed());
        let State::Ok(NameTree::Leaf(Name::Bound(b))) = t.sample() else {
            panic!()
        };
        drop(t);
        // A client still holds the address set.
        assert!(c.observed());
        drop(b);
        assert!(!c.observed());
    }

    #[test]
    fn errors_keep_the_last_good_state() {
        let c = ServiceCell::new(Path::read("/#/x/web").unwrap());
        let t = c.tree(&Path::empty());
        c.set_error("down");
        assert_eq!(t.sample(), State::Failed(NamingError::new("down")));
        c.set_endpoints(vec![ep(1)]);
        c.set_error("down again");
        assert!(c.is_stale());
        assert!(matches!(c.addr(), Addr::Bound { .. }));
        assert!(matches!(t.sample(), State::Ok(NameTree::Leaf(_))));
        assert_eq!(c.state_json()["lastError"], "down again");
        c.set_endpoints(vec![ep(2)]);
        assert!(!c.is_stale());
    }
}
