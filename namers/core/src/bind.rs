//! Binding (Finagle's `Namer.bind`): resolves a path through a lookup function (dtab, then
//! namers) until every leaf is a bound name, live. A binding is computed as a snapshot over the
//! current state of every lookup it reads; when any of those changes, it is recomputed. Address
//! sets are not dependencies of the tree: endpoint churn never changes a bound tree.
//!
//! Semantics (reference section 2.6): depth limit 100; Alt falls back only on Neg, and a Pending
//! or Failed head propagates; Union drops failing branches while another is Ok; union weights are
//! carried to the leaves; the result is simplified and holds no Alt nodes.

use std::sync::Arc;

use crate::namer::{Bound, Name};
use crate::path::Path;
use crate::tree::{NameTree, Weighted};
use crate::var::{Activity, Deps, NamingError, State, Updater, Var};

/// Default maximum recursion depth (Finagle's `namerMaxDepth`).
pub const MAX_DEPTH: usize = 100;

pub type LookupState = State<NameTree<Name>>;
pub type LookupDeps = Deps<LookupState>;

/// One resolution step, evaluated against current state; every watched value read is recorded
/// in `deps` so the caller can recompute when it changes.
pub trait Lookup: Send + Sync {
    fn lookup(&self, path: &Path, deps: &mut LookupDeps) -> LookupState;
}

/// Reads an activity's current state and records it as a dependency.
pub fn read(mut act: Activity<NameTree<Name>>, deps: &mut LookupDeps) -> LookupState {
    let s = act.get();
    deps.push(act);
    s
}

pub fn max_depth_error() -> NamingError {
    NamingError::new(format!(
        "Max recursion level: {MAX_DEPTH} reached in Namer lookup"
    ))
}

/// Binds `path` once, against current state.
pub fn bind_snapshot(
    lookup: &dyn Lookup,
    path: &Path,
    deps: &mut LookupDeps,
) -> State<NameTree<Bound>> {
    match bind_tree(
        lookup,
        &NameTree::Leaf(Name::Path(path.clone())),
        0,
        None,
        deps,
    ) {
        State::Ok(t) => State::Ok(t.simplified()),
        other => other,
    }
}

fn bind_tree(
    lookup: &dyn Lookup,
    tree: &NameTree<Name>,
    depth: usize,
    weight: Option<f64>,
    deps: &mut LookupDeps,
) -> State<NameTree<Bound>> {
    if depth > MAX_DEPTH {
        return State::Failed(max_depth_error());
    }
    match tree {
        NameTree::Leaf(Name::Path(p)) => match lookup.lookup(p, deps) {
            State::Ok(t) => bind_tree(lookup, &t, depth + 1, weight, deps),
            State::Pending => State::Pending,
            State::Failed(e) => State::Failed(e),
        },
        NameTree::Leaf(Name::Bound(b)) => {
            let mut b = b.clone();
            if weight.is_some() {
                b.weight = weight;
            }
            State::Ok(NameTree::Leaf(b))
        }
        NameTree::Neg => State::Ok(NameTree::Neg),
        NameTree::Fail => State::Ok(NameTree::Fail),
        NameTree::Empty => State::Ok(NameTree::Empty),
        NameTree::Union(ws) if ws.is_empty() => State::Ok(NameTree::Neg),
        NameTree::Union(ws) if ws.len() == 1 => {
            bind_tree(lookup, &ws[0].tree, depth, Some(ws[0].weight), deps)
        }
        NameTree::Union(ws) => {
            let mut oks = Vec::new();
            let mut first_failed = None;
            for w in ws {
                match bind_tree(lookup, &w.tree, depth, Some(w.weight), deps) {
                    State::Ok(t) => oks.push(Weighted::new(w.weight, t)),
                    State::Failed(e) => {
                        first_failed.get_or_insert(e);
                    }
                    State::Pending => {}
                }
            }
            if !oks.is_empty() {
                State::Ok(NameTree::Union(oks).simplified())
            } else if let Some(e) = first_failed {
                State::Failed(e)
            } else {
                State::Pending
            }
        }
        NameTree::Alt(ts) => {
            for t in ts {
                match bind_tree(lookup, t, depth, weight, deps) {
                    State::Ok(NameTree::Neg) => continue,
                    other => return other,
                }
            }
            State::Ok(NameTree::Neg)
        }
    }
}

/// Binds `path` live: the returned activity follows every change of the lookups it depends on,
/// until all its observers are gone. Must be called within a tokio runtime unless the binding
/// depends on nothing that can change.
pub fn bind(lookup: Arc<dyn Lookup>, path: Path) -> Activity<NameTree<Bound>> {
    let mut deps = LookupDeps::default();
    let first = bind_snapshot(&*lookup, &path, &mut deps);
    if deps.is_empty() {
        return Var::Const(first);
    }
    let (up, var) = Updater::new(first);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = up.closed() => return,
                more = deps.wait_any() => if !more { return },
            }
            deps.clear();
            let next = bind_snapshot(&*lookup, &path, &mut deps);
            up.set(next);
        }
    });
    var
}

/// Recomputes a snapshot until it and every address set it reaches (`addrs`) have left
/// Pending, or `timeout` passes. Returns the last state and whether it settled in time.
pub async fn settle<T>(
    mut compute: impl FnMut(&mut LookupDeps) -> State<T>,
    addrs: impl Fn(&T) -> Vec<Var<crate::addr::Addr>>,
    timeout: std::time::Duration,
) -> (State<T>, bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut deps = LookupDeps::default();
        let state = compute(&mut deps);
        let mut pending_addrs: crate::var::Deps<crate::addr::Addr> = Default::default();
        if let State::Ok(t) = &state {
            for mut a in addrs(t) {
                if a.get().is_pending() {
                    pending_addrs.push(a);
                }
            }
        }
        if !state.is_pending() && pending_addrs.is_empty() {
            return (state, true);
        }
        if deps.is_empty() && pending_addrs.is_empty() {
            // Nothing read can change any more: the state is final, though Pending.
            return (state, false);
        }
        // Each arm resolves only on a real change; a source that can never change again
        // leaves its arm pending, so this loop never spins.
        let tree_changed = async {
            if !deps.wait_any().await {
                std::future::pending::<()>().await;
            }
        };
        let addr_changed = async {
            if !pending_addrs.wait_any().await {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return (state, false),
            _ = tree_changed => {}
            _ = addr_changed => {}
        }
    }
}
