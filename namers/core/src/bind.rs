//! Binding (Finagle's `Namer.bind`): resolves a path through a lookup function (dtab, then
//! namers) until every leaf is a bound name, live. A binding is computed as a snapshot over the
//! current state of every lookup it reads; when any of those changes, it is recomputed. Address
//! sets are not dependencies of the tree: endpoint churn never changes a bound tree.
//!
//! Semantics (reference section 2.6): depth limit 100; Alt falls back only on Neg, and a Pending
//! or Failed head propagates; Union drops failing branches while another is Ok; union weights are
//! carried to the leaves; the result is simplified and holds no Alt nodes.
//!
//! Work is bounded (`BindLimits`): besides Finagle's 100 lookups, the recursion depth (lookups
//! plus tree nesting), the name-tree nodes visited and the bound leaves produced by one snapshot
//! are capped, so a dtab that a request carries can neither overflow the stack nor make a bind
//! take exponential time or memory. A limit reached fails the whole bind with a `limit` error.

use std::sync::Arc;

use crate::namer::{Bound, Name};
use crate::path::Path;
use crate::tree::{NameTree, Weighted};
use crate::var::{Activity, Deps, NamingError, State, Updater, Var};

/// Default maximum recursion depth (Finagle's `namerMaxDepth`).
pub const MAX_DEPTH: usize = 100;
/// Default bound on the recursion depth of one bind: lookups plus the nesting of the trees they
/// return. Each level is one stack frame; 400 frames stay far below a 2 MiB thread stack.
pub const DEFAULT_MAX_NESTING: usize = 400;
/// Default bound on the name-tree nodes one bind visits (a chain of `/x<i> => /x<i+1> & /x<i+1>`
/// doubles the nodes per dentry; this cuts it off after a few milliseconds of work).
pub const DEFAULT_MAX_NODES: usize = 10_000;
/// Default bound on the bound leaves one bind produces: each becomes a client with its own
/// balancer and pools.
pub const DEFAULT_MAX_LEAVES: usize = 100;
/// Default bound on the path elements one bind looks up, summed over its lookups: a dtab whose
/// every hop lengthens the path (`/ => /a/b`) makes each node cost more than the last.
pub const DEFAULT_MAX_PATH_ELEMS: usize = 50_000;

/// Bounds on the work of one bind or delegation snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindLimits {
    /// Recursion depth: lookups plus tree nesting.
    pub max_nesting: usize,
    /// Name-tree nodes visited.
    pub max_nodes: usize,
    /// Bound leaves produced.
    pub max_leaves: usize,
    /// Path elements looked up, summed.
    pub max_path_elems: usize,
}

impl Default for BindLimits {
    fn default() -> Self {
        BindLimits {
            max_nesting: DEFAULT_MAX_NESTING,
            max_nodes: DEFAULT_MAX_NODES,
            max_leaves: DEFAULT_MAX_LEAVES,
            max_path_elems: DEFAULT_MAX_PATH_ELEMS,
        }
    }
}

/// The work one snapshot has done against its `BindLimits`.
pub struct Budget {
    limits: BindLimits,
    nodes: usize,
    leaves: usize,
    elems: usize,
}

impl Budget {
    pub fn new(limits: BindLimits) -> Budget {
        Budget {
            limits,
            nodes: 0,
            leaves: 0,
            elems: 0,
        }
    }

    /// Counts a lookup of a path of `len` elements.
    pub fn lookup(&mut self, len: usize) -> Result<(), NamingError> {
        self.elems += len;
        if self.elems > self.limits.max_path_elems {
            return Err(NamingError::limit(format!(
                "binding limit: more than {} path elements looked up",
                self.limits.max_path_elems
            )));
        }
        Ok(())
    }

    /// Counts a node entered at recursion depth `frame`.
    pub fn enter(&mut self, frame: usize) -> Result<(), NamingError> {
        if frame > self.limits.max_nesting {
            return Err(NamingError::limit(format!(
                "binding limit: name trees nested deeper than {} levels",
                self.limits.max_nesting
            )));
        }
        self.nodes += 1;
        if self.nodes > self.limits.max_nodes {
            return Err(NamingError::limit(format!(
                "binding limit: more than {} name-tree nodes visited",
                self.limits.max_nodes
            )));
        }
        Ok(())
    }

    /// Counts a bound leaf.
    pub fn leaf(&mut self) -> Result<(), NamingError> {
        self.leaves += 1;
        if self.leaves > self.limits.max_leaves {
            return Err(NamingError::limit(format!(
                "binding limit: more than {} bound names",
                self.limits.max_leaves
            )));
        }
        Ok(())
    }

    /// Nodes visited so far.
    pub fn nodes(&self) -> usize {
        self.nodes
    }
}

pub type LookupState = State<NameTree<Name>>;
pub type LookupDeps = Deps<LookupState>;

/// One resolution step, evaluated against current state; every watched value read is recorded
/// in `deps` so the caller can recompute when it changes.
pub trait Lookup: Send + Sync {
    fn lookup(&self, path: &Path, deps: &mut LookupDeps) -> LookupState;

    /// The bounds on one bind through this lookup.
    fn limits(&self) -> BindLimits {
        BindLimits::default()
    }
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
    let mut budget = Budget::new(lookup.limits());
    let mut b = Binding {
        lookup,
        deps,
        budget: &mut budget,
    };
    match b.tree(&NameTree::Leaf(Name::Path(path.clone())), 0, 0, None) {
        State::Ok(t) => State::Ok(t.simplified()),
        other => other,
    }
}

struct Binding<'a> {
    lookup: &'a dyn Lookup,
    deps: &'a mut LookupDeps,
    budget: &'a mut Budget,
}

impl Binding<'_> {
    /// `depth` counts lookups (Finagle's limit), `frame` every level of recursion.
    fn tree(
        &mut self,
        tree: &NameTree<Name>,
        depth: usize,
        frame: usize,
        weight: Option<f64>,
    ) -> State<NameTree<Bound>> {
        crate::stack::grow(|| self.tree_inner(tree, depth, frame, weight))
    }

    fn tree_inner(
        &mut self,
        tree: &NameTree<Name>,
        depth: usize,
        frame: usize,
        weight: Option<f64>,
    ) -> State<NameTree<Bound>> {
        if depth > MAX_DEPTH {
            return State::Failed(max_depth_error());
        }
        if let Err(e) = self.budget.enter(frame) {
            return State::Failed(e);
        }
        let next = frame + 1;
        match tree {
            NameTree::Leaf(Name::Path(p)) => match self
                .budget
                .lookup(p.len())
                .map(|()| self.lookup.lookup(p, self.deps))
                .unwrap_or_else(State::Failed)
            {
                State::Ok(t) => self.tree(&t, depth + 1, next, weight),
                State::Pending => State::Pending,
                State::Failed(e) => State::Failed(e),
            },
            NameTree::Leaf(Name::Bound(b)) => {
                if let Err(e) = self.budget.leaf() {
                    return State::Failed(e);
                }
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
                self.tree(&ws[0].tree, depth, next, Some(ws[0].weight))
            }
            NameTree::Union(ws) => {
                let mut oks = Vec::new();
                let mut first_failed = None;
                for w in ws {
                    match self.tree(&w.tree, depth, next, Some(w.weight)) {
                        State::Ok(t) => oks.push(Weighted::new(w.weight, t)),
                        // A limit fails the whole bind, not just this branch.
                        State::Failed(e) if e.is_limit() => return State::Failed(e),
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
                    match self.tree(t, depth, next, weight) {
                        State::Ok(NameTree::Neg) => continue,
                        other => return other,
                    }
                }
                State::Ok(NameTree::Neg)
            }
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
