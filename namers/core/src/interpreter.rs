//! The default interpreter (Linkerd's `ConfiguredNamersInterpreter`): a path is looked up in the
//! dtab first; only when no dentry matches does it go to the configured namers by prefix (the
//! last declared first, falling through on Neg), and then to the system namers (`/$/...`).
//! It binds and delegates; it does not cache clients or route.

use std::sync::Arc;

use crate::bind::{self, read, Lookup, LookupDeps, LookupState};
use crate::dtab::Dtab;
use crate::namer::{path_tree, Bound, Namer};
use crate::path::Path;
use crate::system::SystemNamer;
use crate::transform::Transformer;
use crate::tree::NameTree;
use crate::var::{Activity, State};

/// A configured namer and the prefix it answers (`/#/<prefix>`).
#[derive(Clone)]
pub struct ConfiguredNamer {
    pub prefix: Path,
    pub namer: Arc<dyn Namer>,
}

/// Dtab, then configured namers, then system namers; then the interpreter's transformers.
pub struct DefaultInterpreter {
    /// In precedence order: the last declared first.
    namers: Vec<ConfiguredNamer>,
    system: SystemNamer,
    /// `interpreter.transformers`, applied in order to every bound tree (and delegation).
    transformers: Vec<Arc<Transformer>>,
}

impl DefaultInterpreter {
    /// `namers` in declaration order, as in the config's `namers:` list.
    pub fn new(mut namers: Vec<ConfiguredNamer>) -> Arc<DefaultInterpreter> {
        namers.reverse();
        Arc::new(DefaultInterpreter {
            namers,
            system: SystemNamer::new(),
            transformers: Vec::new(),
        })
    }

    /// The same namers with `transformers` applied to what it binds (a router's
    /// `interpreter.transformers`).
    pub fn with_transformers(&self, transformers: Vec<Transformer>) -> Arc<DefaultInterpreter> {
        Arc::new(DefaultInterpreter {
            namers: self.namers.clone(),
            system: SystemNamer::new(),
            transformers: transformers.into_iter().map(Arc::new).collect(),
        })
    }

    /// The interpreter's transformers, in order.
    pub fn transformers(&self) -> &[Arc<Transformer>] {
        &self.transformers
    }

    pub fn namers(&self) -> impl Iterator<Item = &ConfiguredNamer> {
        self.namers.iter().rev()
    }

    /// Step 2 and 3 of a lookup: configured namers, then the system namers.
    pub fn lookup_namers(&self, path: &Path, deps: &mut LookupDeps) -> LookupState {
        for cn in &self.namers {
            if path.starts_with(&cn.prefix) {
                match read(cn.namer.lookup(&path.drop(cn.prefix.len())), deps) {
                    State::Ok(NameTree::Neg) => continue,
                    other => return other,
                }
            }
        }
        self.system.lookup(path)
    }

    /// One lookup step: the dtab shadows the namers, even for `/#/...` paths.
    pub fn lookup(&self, dtab: &Dtab, path: &Path, deps: &mut LookupDeps) -> LookupState {
        match dtab.lookup(path) {
            NameTree::Neg => self.lookup_namers(path, deps),
            t => State::Ok(path_tree(&t)),
        }
    }

    /// Binds `path` live with `dtab`.
    pub fn bind(self: &Arc<Self>, dtab: &Dtab, path: &Path) -> Activity<NameTree<Bound>> {
        let bound = bind::bind(
            Arc::new(DtabLookup {
                interp: Arc::clone(self),
                dtab: dtab.clone(),
            }),
            path.clone(),
        );
        self.transformers.iter().fold(bound, |b, t| t.apply(b))
    }
}

/// The interpreter with a fixed dtab, as a `Lookup`.
pub struct DtabLookup {
    pub interp: Arc<DefaultInterpreter>,
    pub dtab: Dtab,
}

impl Lookup for DtabLookup {
    fn lookup(&self, path: &Path, deps: &mut LookupDeps) -> LookupState {
        self.interp.lookup(&self.dtab, path, deps)
    }
}

impl DefaultInterpreter {
    /// Binds once the tree and its address sets have left Pending, or `timeout` passes.
    pub async fn bind_settled(
        self: &Arc<Self>,
        dtab: &Dtab,
        path: &Path,
        timeout: std::time::Duration,
    ) -> (State<NameTree<Bound>>, bool) {
        let lookup = DtabLookup {
            interp: Arc::clone(self),
            dtab: dtab.clone(),
        };
        let (state, settled) = bind::settle(
            |deps| bind::bind_snapshot(&lookup, path, deps),
            |t| {
                let mut v = Vec::new();
                t.for_each_leaf(&mut |b: &Bound| v.push(b.addr.clone()));
                v
            },
            timeout,
        )
        .await;
        let mut state = state;
        for t in &self.transformers {
            state = Box::pin(t.apply_settled(state, timeout)).await;
        }
        (state, settled)
    }

    /// Explains `path` once the tree and its address sets have left Pending, or `timeout`
    /// passes.
    pub async fn delegate_settled(
        self: &Arc<Self>,
        dtab: &Dtab,
        path: &Path,
        timeout: std::time::Duration,
    ) -> (State<crate::delegate::DelegateTree<Bound>>, bool) {
        bind::settle(
            |deps| self.delegate_snapshot(dtab, path, deps),
            |t| {
                let mut v = Vec::new();
                t.for_each_leaf(&mut |b: &Bound| v.push(b.addr.clone()));
                v
            },
            timeout,
        )
        .await
    }
}
