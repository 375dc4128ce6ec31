//! Delegation (explain) trees, as `/delegator.json` and `switchboard dtab delegate` show them
//! (Linkerd's `DelegateTree` and `ConfiguredNamersInterpreter.delegate`). Unlike binding, every
//! alternative and union branch is evaluated; each node records the path being resolved and the
//! dentry that produced it; lookup failures become `Exception` nodes. Also the JSON rendering of
//! delegation trees and of bound trees (namerd's `/api/1/bind` shape).

use serde_json::{json, Map, Value};

use crate::addr::{Addr, Meta, NAMETREE_WEIGHT_KEY};
use crate::bind::{BindLimits, Budget, LookupDeps};
use crate::dtab::{Dentry, Dtab};
use crate::interpreter::DefaultInterpreter;
use crate::namer::{path_tree, Bound, Name};
use crate::path::Path;
use crate::tree::NameTree;
use crate::var::State;

/// Delegation depth limit, and its error text.
pub const MAX_DEPTH: usize = 100;
pub const MAX_DEPTH_MESSAGE: &str = "Max recursion level reached.";

#[derive(Clone, Debug, PartialEq)]
pub enum DelegateTree<T> {
    Exception {
        path: Path,
        dentry: Dentry,
        message: String,
    },
    Empty {
        path: Path,
        dentry: Dentry,
    },
    Fail {
        path: Path,
        dentry: Dentry,
    },
    Neg {
        path: Path,
        dentry: Dentry,
    },
    Delegate {
        path: Path,
        dentry: Dentry,
        tree: Box<DelegateTree<T>>,
    },
    Leaf {
        path: Path,
        dentry: Dentry,
        value: T,
    },
    Alt {
        path: Path,
        dentry: Dentry,
        trees: Vec<DelegateTree<T>>,
    },
    Union {
        path: Path,
        dentry: Dentry,
        trees: Vec<(f64, DelegateTree<T>)>,
    },
    /// A transformer's step (Linkerd's `DelegateTree.Transformation`): `value` before it, and
    /// the tree after it (a leaf whose path is the transformed id).
    Transformation {
        path: Path,
        name: String,
        value: T,
        tree: Box<DelegateTree<T>>,
    },
}

use DelegateTree as D;

impl<T: Clone> DelegateTree<T> {
    pub fn path(&self) -> &Path {
        match self {
            D::Exception { path, .. }
            | D::Empty { path, .. }
            | D::Fail { path, .. }
            | D::Neg { path, .. }
            | D::Delegate { path, .. }
            | D::Leaf { path, .. }
            | D::Alt { path, .. }
            | D::Union { path, .. }
            | D::Transformation { path, .. } => path,
        }
    }

    fn with_dentry(self, d: Dentry) -> DelegateTree<T> {
        match self {
            D::Exception { path, message, .. } => D::Exception {
                path,
                dentry: d,
                message,
            },
            D::Empty { path, .. } => D::Empty { path, dentry: d },
            D::Fail { path, .. } => D::Fail { path, dentry: d },
            D::Neg { path, .. } => D::Neg { path, dentry: d },
            D::Delegate { path, tree, .. } => D::Delegate {
                path,
                dentry: d,
                tree,
            },
            D::Leaf { path, value, .. } => D::Leaf {
                path,
                dentry: d,
                value,
            },
            D::Alt { path, trees, .. } => D::Alt {
                path,
                dentry: d,
                trees,
            },
            D::Union { path, trees, .. } => D::Union {
                path,
                dentry: d,
                trees,
            },
            // A transformation carries no dentry of its own.
            t @ D::Transformation { .. } => t,
        }
    }

    /// Linkerd's `DelegateTree.simplified`.
    pub fn simplified(&self) -> DelegateTree<T> {
        crate::stack::grow(|| self.simplified_inner())
    }

    fn simplified_inner(&self) -> DelegateTree<T> {
        match self {
            D::Delegate { path, dentry, tree } => {
                let s = tree.simplified();
                let collapse = !matches!(s, D::Neg { .. } | D::Fail { .. } | D::Empty { .. })
                    && s.path() == path;
                if collapse {
                    s.with_dentry(dentry.clone())
                } else {
                    D::Delegate {
                        path: path.clone(),
                        dentry: dentry.clone(),
                        tree: Box::new(s),
                    }
                }
            }
            D::Alt {
                path,
                dentry,
                trees,
            } if trees.is_empty() => D::Neg {
                path: path.clone(),
                dentry: dentry.clone(),
            },
            D::Alt {
                path,
                dentry,
                trees,
            } if trees.len() == 1 => D::Delegate {
                path: path.clone(),
                dentry: dentry.clone(),
                tree: Box::new(trees[0].clone()),
            }
            .simplified(),
            D::Alt {
                path,
                dentry,
                trees,
            } => {
                let mut out = Vec::new();
                for t in trees {
                    match t.simplified() {
                        D::Alt {
                            path: p, trees: ts, ..
                        } if p == *path => out.extend(ts),
                        s => out.push(s),
                    }
                }
                D::Alt {
                    path: path.clone(),
                    dentry: dentry.clone(),
                    trees: out,
                }
            }
            D::Union {
                path,
                dentry,
                trees,
            } if trees.is_empty() => D::Neg {
                path: path.clone(),
                dentry: dentry.clone(),
            },
            D::Union {
                path,
                dentry,
                trees,
            } if trees.len() == 1 => D::Delegate {
                path: path.clone(),
                dentry: dentry.clone(),
                tree: Box::new(trees[0].1.clone()),
            }
            .simplified(),
            D::Union {
                path,
                dentry,
                trees,
            } => D::Union {
                path: path.clone(),
                dentry: dentry.clone(),
                trees: trees.iter().map(|(w, t)| (*w, t.simplified())).collect(),
            },
            other => other.clone(),
        }
    }

    /// Visits every leaf value.
    pub fn for_each_leaf<'a>(&'a self, f: &mut impl FnMut(&'a T)) {
        crate::stack::grow(|| match self {
            D::Leaf { value, .. } => f(value),
            D::Delegate { tree, .. } => tree.for_each_leaf(f),
            D::Alt { trees, .. } => trees.iter().for_each(|t| t.for_each_leaf(f)),
            D::Union { trees, .. } => trees.iter().for_each(|(_, t)| t.for_each_leaf(f)),
            D::Transformation { tree, .. } => tree.for_each_leaf(f),
            _ => {}
        })
    }

    /// Every leaf replaced by `f(path, dentry, value)`.
    pub fn map_leaves(
        &self,
        f: &mut impl FnMut(&Path, &Dentry, &T) -> DelegateTree<T>,
    ) -> DelegateTree<T> {
        crate::stack::grow(|| match self {
            D::Leaf {
                path,
                dentry,
                value,
            } => f(path, dentry, value),
            D::Delegate { path, dentry, tree } => D::Delegate {
                path: path.clone(),
                dentry: dentry.clone(),
                tree: Box::new(tree.map_leaves(f)),
            },
            D::Alt {
                path,
                dentry,
                trees,
            } => D::Alt {
                path: path.clone(),
                dentry: dentry.clone(),
                trees: trees.iter().map(|t| t.map_leaves(f)).collect(),
            },
            D::Union {
                path,
                dentry,
                trees,
            } => D::Union {
                path: path.clone(),
                dentry: dentry.clone(),
                trees: trees.iter().map(|(w, t)| (*w, t.map_leaves(f))).collect(),
            },
            D::Transformation {
                path,
                name,
                value,
                tree,
            } => D::Transformation {
                path: path.clone(),
                name: name.clone(),
                value: value.clone(),
                tree: Box::new(tree.map_leaves(f)),
            },
            other => other.clone(),
        })
    }
}

/// `DelegateTree.fromNameTree(path, dentry, tree)`: a `~` destination gets the empty path.
fn from_name_tree<T: Clone>(path: &Path, dentry: &Dentry, t: &NameTree<T>) -> DelegateTree<T> {
    let (path, dentry) = (path.clone(), dentry.clone());
    match t {
        NameTree::Empty => D::Empty { path, dentry },
        NameTree::Fail => D::Fail { path, dentry },
        NameTree::Neg => D::Neg {
            path: Path::empty(),
            dentry,
        },
        NameTree::Leaf(v) => D::Leaf {
            path,
            dentry,
            value: v.clone(),
        },
        NameTree::Alt(ts) => D::Alt {
            trees: ts
                .iter()
                .map(|t| from_name_tree(&path, &dentry, t))
                .collect(),
            path,
            dentry,
        },
        NameTree::Union(ws) => D::Union {
            trees: ws
                .iter()
                .map(|w| (w.weight, from_name_tree(&path, &dentry, &w.tree)))
                .collect(),
            path,
            dentry,
        },
    }
}

impl DefaultInterpreter {
    /// Explains the resolution of `path` with `dtab`, against current state.
    pub fn delegate_snapshot(
        &self,
        dtab: &Dtab,
        path: &Path,
        deps: &mut LookupDeps,
    ) -> State<DelegateTree<Bound>> {
        let root = D::Leaf {
            path: Path::empty(),
            dentry: Dentry::nop(),
            value: Name::Path(path.clone()),
        };
        let mut budget = Budget::new(BindLimits::default());
        let mut d = Delegation {
            interp: self,
            dtab,
            deps,
            budget: &mut budget,
        };
        match d.bind(0, 0, &root) {
            State::Ok(t) => State::Ok(self.transform_delegation(t.simplified())),
            other => other,
        }
    }
}

impl DefaultInterpreter {
    /// Each transformer's step shown over every leaf, as Linkerd's
    /// `DelegatingNameTreeTransformer.transformDelegate` does.
    fn transform_delegation(&self, mut t: DelegateTree<Bound>) -> DelegateTree<Bound> {
        // Only per-leaf transformers show (Linkerd's delegating ones).
        for x in self.transformers().iter().filter(|x| x.per_leaf()) {
            t = t.map_leaves(&mut |path, dentry, value| {
                let after = x.bound(value);
                D::Transformation {
                    path: path.clone(),
                    name: x.name().to_string(),
                    value: value.clone(),
                    tree: Box::new(D::Leaf {
                        path: after.id.clone(),
                        dentry: dentry.clone(),
                        value: after,
                    }),
                }
            });
        }
        t
    }
}

/// One delegation snapshot: the interpreter, the dtab, what was read, and the work done.
struct Delegation<'a> {
    interp: &'a DefaultInterpreter,
    dtab: &'a Dtab,
    deps: &'a mut LookupDeps,
    budget: &'a mut Budget,
}

impl DefaultInterpreter {
    fn delegate_lookup(
        &self,
        dtab: &Dtab,
        dentry: &Dentry,
        path: &Path,
        deps: &mut LookupDeps,
    ) -> State<DelegateTree<Name>> {
        let mut matches: Vec<DelegateTree<Name>> = dtab
            .lookup_entries(path)
            .into_iter()
            .map(|(d, t)| from_name_tree(path, &d, &path_tree(&t)))
            .collect();
        let result = match matches.len() {
            0 => {
                return match self.lookup_namers(path, deps) {
                    State::Ok(NameTree::Neg) => State::Ok(D::Neg {
                        path: path.clone(),
                        dentry: dentry.clone(),
                    }),
                    State::Ok(t) => State::Ok(from_name_tree(path, dentry, &t)),
                    State::Pending => State::Pending,
                    State::Failed(e) => State::Ok(D::Exception {
                        path: path.clone(),
                        dentry: dentry.clone(),
                        message: e.message().to_string(),
                    }),
                }
            }
            1 => D::Delegate {
                path: path.clone(),
                dentry: dentry.clone(),
                tree: Box::new(matches.pop().unwrap_or(D::Neg {
                    path: path.clone(),
                    dentry: dentry.clone(),
                })),
            },
            _ => D::Alt {
                path: path.clone(),
                dentry: dentry.clone(),
                trees: matches,
            },
        };
        State::Ok(result)
    }
}

impl Delegation<'_> {
    fn branch(
        &mut self,
        depth: usize,
        frame: usize,
        t: &DelegateTree<Name>,
        path: &Path,
        dentry: &Dentry,
    ) -> State<DelegateTree<Bound>> {
        match self.bind(depth, frame, t) {
            State::Failed(e) if e.is_limit() => State::Failed(e),
            State::Failed(e) => State::Ok(D::Exception {
                path: path.clone(),
                dentry: dentry.clone(),
                message: e.message().to_string(),
            }),
            other => other,
        }
    }

    /// `depth` counts lookups, `frame` every level of recursion (bounded by the budget).
    fn bind(
        &mut self,
        depth: usize,
        frame: usize,
        tree: &DelegateTree<Name>,
    ) -> State<DelegateTree<Bound>> {
        crate::stack::grow(|| self.bind_inner(depth, frame, tree))
    }

    fn bind_inner(
        &mut self,
        depth: usize,
        frame: usize,
        tree: &DelegateTree<Name>,
    ) -> State<DelegateTree<Bound>> {
        if depth > MAX_DEPTH {
            return State::Failed(crate::var::NamingError::new(MAX_DEPTH_MESSAGE));
        }
        if let Err(e) = self.budget.enter(frame) {
            return State::Failed(e);
        }
        let next = frame + 1;
        let wrap = |path: &Path, dentry: &Dentry, s: State<DelegateTree<Bound>>| match s {
            State::Ok(t) => State::Ok(D::Delegate {
                path: path.clone(),
                dentry: dentry.clone(),
                tree: Box::new(t),
            }),
            other => other,
        };
        match tree {
            D::Exception {
                path,
                dentry,
                message,
            } => State::Ok(D::Exception {
                path: path.clone(),
                dentry: dentry.clone(),
                message: message.clone(),
            }),
            D::Empty { path, dentry } => State::Ok(D::Empty {
                path: path.clone(),
                dentry: dentry.clone(),
            }),
            D::Fail { path, dentry } => State::Ok(D::Fail {
                path: path.clone(),
                dentry: dentry.clone(),
            }),
            D::Neg { path, dentry } => State::Ok(D::Neg {
                path: path.clone(),
                dentry: dentry.clone(),
            }),
            D::Leaf {
                path,
                dentry,
                value: Name::Bound(b),
            } => {
                if let Err(e) = self.budget.leaf() {
                    return State::Failed(e);
                }
                State::Ok(D::Leaf {
                    path: path.clone(),
                    dentry: dentry.clone(),
                    value: b.clone(),
                })
            }
            D::Leaf {
                dentry,
                value: Name::Path(p),
                ..
            } => match self
                .budget
                .lookup(p.len())
                .map(|()| self.interp.delegate_lookup(self.dtab, dentry, p, self.deps))
                .unwrap_or_else(State::Failed)
            {
                State::Ok(t) => self.bind(depth + 1, next, &t),
                State::Pending => State::Pending,
                State::Failed(e) => State::Failed(e),
            },
            D::Delegate { path, dentry, tree } => wrap(path, dentry, self.bind(depth, next, tree)),
            // Made only from bound trees, after binding; nothing to bind inside.
            D::Transformation { tree, .. } => self.bind(depth, next, tree),
            D::Alt {
                path,
                dentry,
                trees,
            } if trees.is_empty() => State::Ok(D::Neg {
                path: path.clone(),
                dentry: dentry.clone(),
            }),
            D::Alt {
                path,
                dentry,
                trees,
            } if trees.len() == 1 => wrap(path, dentry, self.bind(depth, next, &trees[0])),
            D::Alt {
                path,
                dentry,
                trees,
            } => {
                let mut out = Vec::new();
                let mut pending = false;
                for t in trees {
                    match self.branch(depth, next, t, path, dentry) {
                        State::Ok(t) => out.push(t),
                        State::Failed(e) => return State::Failed(e),
                        State::Pending => pending = true,
                    }
                }
                if pending {
                    return State::Pending;
                }
                State::Ok(D::Alt {
                    path: path.clone(),
                    dentry: dentry.clone(),
                    trees: out,
                })
            }
            D::Union {
                path,
                dentry,
                trees,
            } if trees.is_empty() => State::Ok(D::Neg {
                path: path.clone(),
                dentry: dentry.clone(),
            }),
            D::Union {
                path,
                dentry,
                trees,
            } if trees.len() == 1 => wrap(path, dentry, self.bind(depth, next, &trees[0].1)),
            D::Union {
                path,
                dentry,
                trees,
            } => {
                let mut out = Vec::new();
                let mut pending = false;
                for (w, t) in trees {
                    match self.branch(depth, next, t, path, dentry) {
                        State::Ok(t) => out.push((*w, t)),
                        State::Failed(e) => return State::Failed(e),
                        State::Pending => pending = true,
                    }
                }
                if pending {
                    return State::Pending;
                }
                State::Ok(D::Union {
                    path: path.clone(),
                    dentry: dentry.clone(),
                    trees: out,
                })
            }
        }
    }
}

fn dentry_json(d: &Dentry) -> Option<Value> {
    (!d.is_nop()).then(|| json!({"prefix": d.prefix.to_string(), "dst": d.dst.show()}))
}

fn node(kind: &str, path: Option<String>, dentry: &Dentry) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), json!(kind));
    if let Some(p) = path {
        m.insert("path".into(), json!(p));
    }
    if let Some(d) = dentry_json(dentry) {
        m.insert("dentry".into(), d);
    }
    m
}

/// The `bound` object of a leaf: `{"addr":..,"id":..,"path":..}`, with the union weight (if any)
/// in the address metadata as `namer_nametree_weight`.
pub fn bound_json(b: &Bound, with_weight: bool) -> Value {
    let mut extra = Meta::new();
    if let (true, Some(w)) = (with_weight, b.weight) {
        extra.insert(NAMETREE_WEIGHT_KEY.into(), json!(w));
    }
    let addr: Addr = b.addr.sample();
    json!({"addr": addr.to_json_with(&extra), "id": b.id.show(), "path": b.residual.show()})
}

/// Renders a delegation tree as `/delegator.json` does.
pub fn delegate_json(t: &DelegateTree<Bound>) -> Value {
    crate::stack::grow(|| delegate_json_inner(t))
}

fn delegate_json_inner(t: &DelegateTree<Bound>) -> Value {
    let m = match t {
        D::Exception {
            path,
            dentry,
            message,
        } => {
            let mut m = node("exception", Some(path.show()), dentry);
            m.insert("message".into(), json!(message));
            m
        }
        D::Empty { path, dentry } => node("empty", Some(path.show()), dentry),
        D::Fail { path, dentry } => {
            let shown = if path.elem_str(0) == Some("$") && path.elem_str(1) == Some("fail") {
                path.show()
            } else {
                "!".into()
            };
            node("fail", Some(shown), dentry)
        }
        D::Neg { path, dentry } => {
            let shown = if path.is_empty() {
                "~".into()
            } else {
                path.show()
            };
            node("neg", Some(shown), dentry)
        }
        D::Delegate { path, dentry, tree } => {
            let mut m = node("delegate", Some(path.show()), dentry);
            m.insert("delegate".into(), delegate_json(tree));
            m
        }
        D::Leaf {
            path,
            dentry,
            value,
        } => {
            let mut m = node("leaf", Some(path.show()), dentry);
            m.insert("bound".into(), bound_json(value, false));
            m
        }
        D::Alt {
            path,
            dentry,
            trees,
        } => {
            let mut m = node("alt", Some(path.show()), dentry);
            m.insert("alt".into(), trees.iter().map(delegate_json).collect());
            m
        }
        D::Union {
            path,
            dentry,
            trees,
        } => {
            let mut m = node("union", Some(path.show()), dentry);
            m.insert(
                "union".into(),
                trees
                    .iter()
                    .map(|(w, t)| json!({"weight": w, "tree": delegate_json(t)}))
                    .collect(),
            );
            m
        }
        D::Transformation {
            path,
            name,
            value,
            tree,
        } => {
            let mut m = node("transformation", Some(path.show()), &Dentry::nop());
            m.insert("name".into(), json!(name));
            m.insert("bound".into(), bound_json(value, false));
            m.insert("tree".into(), delegate_json(tree));
            m
        }
    };
    Value::Object(m)
}

/// Renders a bound tree as namerd's `/api/1/bind` does (no paths, no dentries).
pub fn bound_tree_json(t: &NameTree<Bound>) -> Value {
    let nop = Dentry::nop();
    let m = match t {
        NameTree::Leaf(b) => {
            let mut m = node("leaf", None, &nop);
            m.insert("bound".into(), bound_json(b, true));
            m
        }
        NameTree::Neg => node("neg", None, &nop),
        NameTree::Fail => node("fail", None, &nop),
        NameTree::Empty => node("empty", None, &nop),
        NameTree::Alt(ts) => {
            let mut m = node("alt", None, &nop);
            m.insert("alt".into(), ts.iter().map(bound_tree_json).collect());
            m
        }
        NameTree::Union(ws) => {
            let mut m = node("union", None, &nop);
            m.insert(
                "union".into(),
                ws.iter()
                    .map(|w| json!({"weight": w.weight, "tree": bound_tree_json(&w.tree)}))
                    .collect(),
            );
            m
        }
    };
    Value::Object(m)
}
