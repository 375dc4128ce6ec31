//! Names and the `Namer` trait. A `Name` is either a path still to resolve or a `Bound` name: an
//! id (`/#/io.l5d.fs/web`), a residual path the namer did not consume, and a watched address
//! set. A namer turns a path into a watched name tree; it never routes or balances.

use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;

use crate::addr::Addr;
use crate::path::Path;
use crate::tree::NameTree;
use crate::var::{Activity, Var};

/// A name bound to a (watched) address set.
#[derive(Clone)]
pub struct Bound {
    /// The client identity, e.g. `/#/io.l5d.fs/web` or `/$/inet/127.0.0.1/8080`.
    pub id: Path,
    /// What the namer did not consume.
    pub residual: Path,
    pub addr: Var<Addr>,
    /// The innermost union weight that applied while binding, if any.
    pub weight: Option<f64>,
}

impl Bound {
    pub fn new(id: Path, residual: Path, addr: Var<Addr>) -> Bound {
        Bound {
            id,
            residual,
            addr,
            weight: None,
        }
    }
}

impl fmt::Debug for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bound({}, {})", self.id, self.residual)
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id.concat(&self.residual))
    }
}

impl PartialEq for Bound {
    fn eq(&self, o: &Bound) -> bool {
        self.id == o.id && self.residual == o.residual && self.weight == o.weight
    }
}
impl Eq for Bound {}
impl PartialOrd for Bound {
    fn partial_cmp(&self, o: &Bound) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Bound {
    fn cmp(&self, o: &Bound) -> Ordering {
        (&self.id, &self.residual).cmp(&(&o.id, &o.residual))
    }
}

/// A name in a tree: a path to look up further, or a bound name.
#[derive(Clone, Debug, PartialEq)]
pub enum Name {
    Path(Path),
    Bound(Bound),
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Name::Path(p) => write!(f, "{p}"),
            Name::Bound(b) => write!(f, "{}", b.id),
        }
    }
}

/// Turns a path (relative to the namer's prefix) into a watched name tree.
pub trait Namer: Send + Sync {
    fn lookup(&self, path: &Path) -> Activity<NameTree<Name>>;

    /// The namer's watch state for `/namer_state/<prefix>.json`.
    fn state(&self) -> Value {
        Value::Null
    }

    /// The concrete names it knows of, for `/bound-names.json` (only enumerable namers).
    fn enumerate(&self) -> Vec<Path> {
        Vec::new()
    }

    /// Counters and gauges for metrics, as `(name, value)` (`namer/<prefix>/<name>`).
    fn stats(&self) -> Vec<(String, i64)> {
        Vec::new()
    }
}

/// A tree of paths as a tree of names.
pub fn path_tree(t: &NameTree<Path>) -> NameTree<Name> {
    t.map(&mut |p: &Path| Name::Path(p.clone()))
}
