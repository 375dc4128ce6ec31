//! Name-tree transformers (Linkerd's `NameTreeTransformer`, section 1.11), applied to the bound
//! trees a namer or the interpreter produces: `io.l5d.port` rewrites every address's port,
//! `io.l5d.localhost` and `io.l5d.specificHost` keep only the addresses of given IPs (none left
//! is Neg). Each prefixes the bound id with `/%/<prefix>` (`/%/io.l5d.port/4141/#/io.l5d.fs/web`),
//! so client configs and TLS `commonName` captures see that form. The address set stays
//! watched: a transformed `Bound` follows its source's updates (one small task per transformed
//! name, ending when nobody observes it), so endpoint churn never rebuilds a client.
//! Transformers do not bind anything themselves.

use std::net::IpAddr;
use std::sync::Arc;

use crate::addr::Addr;
use crate::dtab::Dtab;
use crate::interpreter::DefaultInterpreter;
use crate::namer::{Bound, Name, Namer};
use crate::path::Path;
use crate::tree::NameTree;
use crate::var::{Activity, State, Updater, Var};

/// What a transformer does to each bound name.
#[derive(Clone)]
pub enum Kind {
    /// `io.l5d.port`: every address gets this port.
    Port(u16),
    /// `io.l5d.localhost` / `io.l5d.specificHost`: only addresses with one of these IPs.
    Only(Vec<IpAddr>),
    /// `io.l5d.replace`: every leaf replaced by `path` bound through `interp` (empty dtab).
    Replace(Path, Arc<DefaultInterpreter>),
    /// `io.l5d.const`: the whole tree replaced by `path` bound through `interp`.
    Const(Path, Arc<DefaultInterpreter>),
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kind::Port(p) => write!(f, "Port({p})"),
            Kind::Only(ips) => write!(f, "Only({ips:?})"),
            Kind::Replace(p, _) => write!(f, "Replace({p})"),
            Kind::Const(p, _) => write!(f, "Const({p})"),
        }
    }
}

/// One transformer: its kind and the prefix its ids get (`/%` included).
#[derive(Debug, Clone)]
pub struct Transformer {
    pub prefix: Path,
    pub kind: Kind,
}

impl Transformer {
    /// `prefix` without the leading `/%` (as configured, or the kind's default).
    pub fn new(prefix: &Path, kind: Kind) -> Transformer {
        Transformer {
            prefix: Path::utf8(["%"]).concat(prefix),
            kind,
        }
    }

    /// The name Linkerd shows for this transformer in delegation trees (its class name).
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Port(_) => "PortTransformer",
            Kind::Only(_) => "SubnetLocalTransformer",
            Kind::Replace(..) => "ReplaceTransformer",
            Kind::Const(..) => "ConstTransformer",
        }
    }

    /// Whether it maps each bound name on its own (and so shows in delegation trees); the
    /// others bind a path of their own (Linkerd's non-delegating transformers).
    pub fn per_leaf(&self) -> bool {
        matches!(self.kind, Kind::Port(_) | Kind::Only(_))
    }

    /// The replacement of `io.l5d.replace` / `io.l5d.const`: `path` bound with an empty dtab,
    /// its ids `prefix ++ path`.
    fn replacement(&self) -> Option<Activity<NameTree<Bound>>> {
        let (Kind::Replace(path, interp) | Kind::Const(path, interp)) = &self.kind else {
            return None;
        };
        let id = self.prefix.concat(path);
        Some(map_var(
            interp.bind(&Dtab::empty(), path),
            move |s: &State<NameTree<Bound>>| relabel(&id, s.clone()),
        ))
    }

    /// The transformer applied to a live binding.
    pub fn apply(self: &Arc<Self>, input: Activity<NameTree<Bound>>) -> Activity<NameTree<Bound>> {
        match &self.kind {
            Kind::Port(_) | Kind::Only(_) => {
                let t = Arc::clone(self);
                map_var(input, move |s: &State<NameTree<Bound>>| match s {
                    State::Ok(tree) => State::Ok(t.tree(tree)),
                    other => other.clone(),
                })
            }
            // Linkerd transforms a bound tree only: Pending and Failed pass through.
            Kind::Const(..) => match self.replacement() {
                Some(rep) => map2_var(input, rep, |i, r| match i {
                    State::Ok(_) => r.clone(),
                    other => other.clone(),
                }),
                None => input,
            },
            Kind::Replace(..) => match self.replacement() {
                Some(rep) => map2_var(input, rep, combine_replace),
                None => input,
            },
        }
    }

    /// The transformer applied to one settled tree (`dtab bind`): the replacement of
    /// `io.l5d.replace` / `io.l5d.const` is settled in turn.
    pub async fn apply_settled(
        &self,
        input: State<NameTree<Bound>>,
        timeout: std::time::Duration,
    ) -> State<NameTree<Bound>> {
        match &self.kind {
            Kind::Port(_) | Kind::Only(_) => match input {
                State::Ok(t) => State::Ok(Arc::new(self.clone()).tree(&t)),
                other => other,
            },
            Kind::Replace(path, interp) | Kind::Const(path, interp) => {
                let (rep, _) = interp.bind_settled(&Dtab::empty(), path, timeout).await;
                let rep = relabel(&self.prefix.concat(path), rep);
                if matches!(self.kind, Kind::Const(..)) {
                    match input {
                        State::Ok(_) => rep,
                        other => other,
                    }
                } else {
                    combine_replace(&input, &rep)
                }
            }
        }
    }

    fn addr(&self, a: &Addr) -> Addr {
        match (a, &self.kind) {
            (Addr::Bound { endpoints, meta }, Kind::Port(port)) => {
                // Instances on one host become one address (Linkerd's is a set).
                let mut out: Vec<crate::addr::Endpoint> = Vec::with_capacity(endpoints.len());
                for e in endpoints {
                    let mut e = e.clone();
                    e.addr.set_port(*port);
                    if !out.iter().any(|o| o.addr == e.addr) {
                        out.push(e);
                    }
                }
                Addr::Bound {
                    endpoints: out,
                    meta: meta.clone(),
                }
            }
            (Addr::Bound { endpoints, meta }, Kind::Only(ips)) => {
                let kept: Vec<_> = endpoints
                    .iter()
                    .filter(|e| ips.contains(&e.addr.ip()))
                    .cloned()
                    .collect();
                if kept.is_empty() {
                    Addr::Neg
                } else {
                    Addr::Bound {
                        endpoints: kept,
                        meta: meta.clone(),
                    }
                }
            }
            (other, _) => other.clone(),
        }
    }

    /// The bound name transformed: its id prefixed, its addresses mapped (and followed).
    pub fn bound(self: &Arc<Self>, b: &Bound) -> Bound {
        let t = Arc::clone(self);
        Bound {
            id: self.prefix.concat(&b.id),
            residual: b.residual.clone(),
            addr: map_var(b.addr.clone(), move |a| t.addr(a)),
            weight: b.weight,
        }
    }

    /// Every leaf of a bound tree transformed.
    pub fn tree(self: &Arc<Self>, t: &NameTree<Bound>) -> NameTree<Bound> {
        t.map(&mut |b: &Bound| self.bound(b))
    }
}

/// Every bound name of a replacement tree given the transformer's id (`prefix ++ path`).
fn relabel(id: &Path, s: State<NameTree<Bound>>) -> State<NameTree<Bound>> {
    match s {
        State::Ok(t) => State::Ok(t.map(&mut |b: &Bound| Bound {
            id: id.clone(),
            ..b.clone()
        })),
        other => other,
    }
}

/// Applies the per-leaf transformers of `ts` in order to every leaf (the others bind paths of
/// their own: see [`Transformer::apply`]).
pub fn transform_tree(ts: &[Arc<Transformer>], t: &NameTree<Bound>) -> NameTree<Bound> {
    ts.iter()
        .filter(|x| x.per_leaf())
        .fold(t.clone(), |t, x| x.tree(&t))
}

/// `io.l5d.replace`: every leaf of the input replaced by the replacement tree; Neg, Empty and
/// Fail kept. Pending or failed on either side is that state.
fn combine_replace(
    input: &State<NameTree<Bound>>,
    rep: &State<NameTree<Bound>>,
) -> State<NameTree<Bound>> {
    match (input, rep) {
        (State::Failed(e), _) | (_, State::Failed(e)) => State::Failed(e.clone()),
        (State::Pending, _) | (_, State::Pending) => State::Pending,
        (State::Ok(t), State::Ok(r)) => State::Ok(replace_leaves(t, r)),
    }
}

fn replace_leaves(t: &NameTree<Bound>, r: &NameTree<Bound>) -> NameTree<Bound> {
    crate::stack::grow(|| match t {
        NameTree::Leaf(_) => r.clone(),
        NameTree::Alt(ts) => NameTree::Alt(ts.iter().map(|t| replace_leaves(t, r)).collect()),
        NameTree::Union(ws) => NameTree::Union(
            ws.iter()
                .map(|w| crate::tree::Weighted {
                    weight: w.weight,
                    tree: replace_leaves(&w.tree, r),
                })
                .collect(),
        ),
        other => other.clone(),
    })
}

/// A `Var` that follows `a` and `b` through `f` (see [`map_var`]).
pub fn map2_var<A, B, U>(
    mut a: Var<A>,
    mut b: Var<B>,
    f: impl Fn(&A, &B) -> U + Send + 'static,
) -> Var<U>
where
    A: Clone + Send + Sync + 'static,
    B: Clone + Send + Sync + 'static,
    U: Clone + PartialEq + Send + Sync + 'static,
{
    let last = a.is_final() && b.is_final();
    let first = f(&a.get(), &b.get());
    if last {
        return Var::constant(first);
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return Var::constant(first);
    };
    let (up, var) = Updater::new(first);
    rt.spawn(async move {
        let (mut a_live, mut b_live) = (true, true);
        loop {
            tokio::select! {
                more = a.changed(), if a_live => a_live = more,
                more = b.changed(), if b_live => b_live = more,
                _ = up.closed() => return,
            }
            if !a_live && !b_live {
                return;
            }
            up.set(f(&a.get(), &b.get()));
        }
    });
    var
}

/// A `Var` that follows `src` through `f`. A constant maps once; a watched source is followed
/// by a task that ends when the source can no longer change or nobody observes the result.
/// Outside a tokio runtime the current value is taken once.
pub fn map_var<T, U>(mut src: Var<T>, f: impl Fn(&T) -> U + Send + 'static) -> Var<U>
where
    T: Clone + Send + Sync + 'static,
    U: Clone + PartialEq + Send + Sync + 'static,
{
    // Final first: a value read before the last publication could otherwise be frozen.
    let last = src.is_final();
    let first = f(&src.get());
    if last {
        return Var::constant(first);
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return Var::constant(first);
    };
    let (up, var) = Updater::new(first);
    rt.spawn(async move {
        loop {
            tokio::select! {
                more = src.changed() => {
                    if !more {
                        return;
                    }
                    up.set(f(&src.get()));
                }
                _ = up.closed() => return,
            }
        }
    });
    var
}

/// A namer whose bound trees pass through transformers (a namer's `transformers`). A tree with
/// paths still to resolve passes unchanged, as in Linkerd (only fully bound trees transform).
pub struct TransformingNamer {
    inner: Arc<dyn Namer>,
    transformers: Vec<Arc<Transformer>>,
}

impl TransformingNamer {
    /// Only per-leaf transformers (`io.l5d.port`, `io.l5d.localhost`, `io.l5d.specificHost`)
    /// apply to a namer; config refuses the others there.
    pub fn new(inner: Arc<dyn Namer>, transformers: Vec<Transformer>) -> TransformingNamer {
        TransformingNamer {
            inner,
            transformers: transformers.into_iter().map(Arc::new).collect(),
        }
    }
}

fn all_bound(t: &NameTree<Name>) -> Option<NameTree<Bound>> {
    let mut ok = true;
    let out = t.map(&mut |n: &Name| match n {
        Name::Bound(b) => b.clone(),
        Name::Path(p) => {
            ok = false;
            Bound::new(p.clone(), Path::empty(), Var::constant(Addr::Neg))
        }
    });
    ok.then_some(out)
}

impl Namer for TransformingNamer {
    fn lookup(&self, path: &Path) -> Activity<NameTree<Name>> {
        let ts = self.transformers.clone();
        map_var(
            self.inner.lookup(path),
            move |s: &State<NameTree<Name>>| match s {
                State::Ok(t) => match all_bound(t) {
                    Some(b) => {
                        State::Ok(transform_tree(&ts, &b).map(&mut |b| Name::Bound(b.clone())))
                    }
                    None => State::Ok(t.clone()),
                },
                other => other.clone(),
            },
        )
    }

    fn state(&self) -> serde_json::Value {
        self.inner.state()
    }

    fn enumerate(&self) -> Vec<Path> {
        self.inner.enumerate()
    }

    fn stats(&self) -> Vec<(String, i64)> {
        self.inner.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Endpoint;

    fn addr(list: &[&str]) -> Addr {
        Addr::bound(
            list.iter()
                .map(|a| Endpoint::new(a.parse().unwrap()))
                .collect(),
        )
    }

    fn shown(a: &Addr) -> Vec<String> {
        match a {
            Addr::Bound { endpoints, .. } => endpoints.iter().map(|e| e.addr.to_string()).collect(),
            other => vec![format!("{other:?}")],
        }
    }

    #[tokio::test]
    async fn port_and_host_filters_prefix_ids_and_follow_updates() {
        let (up, var) = Updater::new(addr(&["10.0.0.1:8080", "10.0.0.2:8080"]));
        let b = Bound::new(Path::read("/#/io.l5d.fs/web").unwrap(), Path::empty(), var);
        let port = Arc::new(Transformer::new(
            &Path::read("/io.l5d.port/4141").unwrap(),
            Kind::Port(4141),
        ));
        let only = Arc::new(Transformer::new(
            &Path::read("/io.l5d.localhost").unwrap(),
            Kind::Only(vec!["10.0.0.2".parse().unwrap()]),
        ));
        let t = transform_tree(&[port, only], &NameTree::Leaf(b));
        let NameTree::Leaf(out) = t else {
            panic!("{t:?}")
        };
        assert_eq!(
            out.id.show(),
            "/%/io.l5d.localhost/%/io.l5d.port/4141/#/io.l5d.fs/web"
        );
        let mut a = out.addr.clone();
        assert_eq!(shown(&a.get()), ["10.0.0.2:4141"]);
        // The source changes: the transformed set follows, without a new Bound.
        up.set(addr(&["10.0.0.2:9000", "10.0.0.2:9001", "10.0.0.3:9000"]));
        // Two instances on 10.0.0.2 are one address on its port 4141: no change to publish.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!a.has_changed());
        up.set(addr(&["10.0.0.4:9000"]));
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), a.changed()).await;
        assert!(matches!(got, Ok(true)));
        assert_eq!(a.get(), Addr::Neg);
        up.set(addr(&["10.0.0.2:9000", "10.0.0.3:9000"]));
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), a.changed()).await;
        assert!(matches!(got, Ok(true)));
        assert_eq!(shown(&a.get()), ["10.0.0.2:4141"]);
        // No address left on this host: Neg.
        up.set(addr(&["10.0.0.3:9000"]));
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), a.changed()).await;
        assert_eq!(a.get(), Addr::Neg);
        // Pending and Neg pass through.
        up.set(Addr::Pending);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), a.changed()).await;
        assert_eq!(a.get(), Addr::Pending);
    }

    #[test]
    fn replace_keeps_neg_fail_and_empty() {
        let b = |id: &str| {
            Bound::new(
                Path::read(id).unwrap(),
                Path::empty(),
                Var::constant(Addr::Neg),
            )
        };
        let t = NameTree::Alt(vec![NameTree::Neg, NameTree::Leaf(b("/x")), NameTree::Fail]);
        let r = NameTree::Leaf(b("/%/io.l5d.replace/r"));
        let got = replace_leaves(&t, &r);
        assert_eq!(
            got,
            NameTree::Alt(vec![
                NameTree::Neg,
                NameTree::Leaf(b("/%/io.l5d.replace/r")),
                NameTree::Fail
            ])
        );
    }
}
