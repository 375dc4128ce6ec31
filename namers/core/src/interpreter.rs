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
#[cfg(test)]
use crate::var::Updater;
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

/// A dtab that may change (a watched file, a namerd namespace): Pending until it is first read.
pub type DtabVar = Activity<Dtab>;

/// The interpreter with a watched dtab followed by a fixed one (`io.l5d.fs`'s file dtab ++ the
/// router's and the request's; namerd's namespace dtab ++ the one a linker sends). A binding
/// through it is recomputed when the watched dtab changes, and is Pending until it is read.
pub struct WatchedDtabLookup {
    pub interp: Arc<DefaultInterpreter>,
    pub base: DtabVar,
    pub local: Dtab,
}

impl Lookup for WatchedDtabLookup {
    fn lookup(&self, path: &Path, deps: &mut LookupDeps) -> LookupState {
        let mut v = self.base.clone();
        let s = v.get();
        if !v.is_final() {
            deps.push_signal(v);
        }
        match s {
            State::Pending => State::Pending,
            State::Failed(e) => State::Failed(e),
            State::Ok(d) if self.local.is_empty() => self.interp.lookup(&d, path, deps),
            State::Ok(d) => self.interp.lookup(&d.concat(&self.local), path, deps),
        }
    }
}

impl DefaultInterpreter {
    /// Binds `path` live with the watched dtab `base` followed by `local`.
    pub fn bind_watched(
        self: &Arc<Self>,
        base: &DtabVar,
        local: &Dtab,
        path: &Path,
    ) -> Activity<NameTree<Bound>> {
        let bound = bind::bind(
            Arc::new(WatchedDtabLookup {
                interp: Arc::clone(self),
                base: base.clone(),
                local: local.clone(),
            }),
            path.clone(),
        );
        self.transformers.iter().fold(bound, |b, t| t.apply(b))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_watched_dtab_rebinds_its_names_and_is_pending_until_read() {
        let interp = DefaultInterpreter::new(Vec::new());
        let (up, base) = Updater::new(State::Pending);
        let local = Dtab::read("/svc/b=>/$/inet/127.0.0.1/2").unwrap();
        let path = Path::read("/svc/a").unwrap();
        let mut bound = interp.bind_watched(&base, &local, &path);
        assert!(bound.get().is_pending());
        let leaf = |s: State<NameTree<Bound>>| match s {
            State::Ok(NameTree::Leaf(b)) => b.id.show(),
            other => panic!("expected a leaf, got {other:?}"),
        };
        up.set(State::Ok(
            Dtab::read("/svc/a=>/$/inet/127.0.0.1/1").unwrap(),
        ));
        assert!(bound.changed().await);
        assert_eq!(leaf(bound.get()), "/$/inet/127.0.0.1/1");
        // The fixed dtab comes after the watched one, so it wins.
        up.set(State::Ok(Dtab::read("/svc/a=>/svc/b").unwrap()));
        assert!(bound.changed().await);
        assert_eq!(leaf(bound.get()), "/$/inet/127.0.0.1/2");
        up.set(State::Ok(Dtab::empty()));
        assert!(bound.changed().await);
        assert!(matches!(bound.get(), State::Ok(NameTree::Neg)));
    }
}
