//! `NameTree<T>`: the algebra of names (Finagle's `NameTree`): leaves, ordered fallback (`Alt`,
//! `|`), weighted union (`Union`, `&`), and the three constants Neg (`~`), Fail (`!`) and Empty
//! (`$`). Provides `show`, `simplified` and `eval`. It does not bind or look anything up; that is
//! [`crate::bind`].

use std::collections::BTreeSet;
use std::fmt;

use crate::path::Path;
use crate::syntax::{self, ParseError};

#[derive(Clone, Debug, PartialEq)]
pub enum NameTree<T> {
    Leaf(T),
    Alt(Vec<NameTree<T>>),
    Union(Vec<Weighted<T>>),
    Neg,
    Fail,
    Empty,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Weighted<T> {
    pub weight: f64,
    pub tree: NameTree<T>,
}

impl<T> Weighted<T> {
    pub const DEFAULT_WEIGHT: f64 = 1.0;

    pub fn new(weight: f64, tree: NameTree<T>) -> Self {
        Weighted { weight, tree }
    }
}

impl NameTree<Path> {
    /// Parses the textual form (`NameTree.read`).
    pub fn read(s: &str) -> Result<NameTree<Path>, ParseError> {
        syntax::parse_tree(s)
    }
}

impl<T> NameTree<T> {
    pub fn map<U>(&self, f: &mut impl FnMut(&T) -> U) -> NameTree<U> {
        crate::stack::grow(|| self.map_inner(f))
    }

    fn map_inner<U>(&self, f: &mut impl FnMut(&T) -> U) -> NameTree<U> {
        match self {
            NameTree::Leaf(v) => NameTree::Leaf(f(v)),
            NameTree::Alt(ts) => NameTree::Alt(ts.iter().map(|t| t.map(f)).collect()),
            NameTree::Union(ws) => NameTree::Union(
                ws.iter()
                    .map(|w| Weighted::new(w.weight, w.tree.map(f)))
                    .collect(),
            ),
            NameTree::Neg => NameTree::Neg,
            NameTree::Fail => NameTree::Fail,
            NameTree::Empty => NameTree::Empty,
        }
    }

    /// Visits every leaf, left to right.
    pub fn for_each_leaf<'a>(&'a self, f: &mut impl FnMut(&'a T)) {
        crate::stack::grow(|| match self {
            NameTree::Leaf(v) => f(v),
            NameTree::Alt(ts) => ts.iter().for_each(|t| t.for_each_leaf(f)),
            NameTree::Union(ws) => ws.iter().for_each(|w| w.tree.for_each_leaf(f)),
            _ => {}
        })
    }
}

impl<T: Clone> NameTree<T> {
    /// An evaluation-equivalent simpler tree (Finagle's `simplified`).
    pub fn simplified(&self) -> NameTree<T> {
        crate::stack::grow(|| self.simplified_inner())
    }

    fn simplified_inner(&self) -> NameTree<T> {
        match self {
            NameTree::Alt(ts) if ts.is_empty() => NameTree::Neg,
            NameTree::Alt(ts) if ts.len() == 1 => ts[0].simplified(),
            NameTree::Alt(ts) => {
                let mut kept = Vec::new();
                for t in ts {
                    match t.simplified() {
                        NameTree::Neg => {}
                        NameTree::Fail => {
                            kept.push(NameTree::Fail);
                            break;
                        }
                        other => kept.push(other),
                    }
                }
                match kept.len() {
                    0 => NameTree::Neg,
                    1 => kept.pop().unwrap_or(NameTree::Neg),
                    _ => NameTree::Alt(kept),
                }
            }
            NameTree::Union(ws) if ws.is_empty() => NameTree::Neg,
            NameTree::Union(ws) if ws.len() == 1 => ws[0].tree.simplified(),
            NameTree::Union(ws) => {
                let mut kept: Vec<Weighted<T>> = ws
                    .iter()
                    .map(|w| Weighted::new(w.weight, w.tree.simplified()))
                    .filter(|w| !matches!(w.tree, NameTree::Neg | NameTree::Fail))
                    .collect();
                match kept.len() {
                    0 => NameTree::Neg,
                    1 => kept.pop().map(|w| w.tree).unwrap_or(NameTree::Neg),
                    _ => NameTree::Union(kept),
                }
            }
            other => other.clone(),
        }
    }
}

impl<T: Clone + Ord> NameTree<T> {
    /// The set of leaves the tree evaluates to, or `None` (Neg or Fail). Empty gives `Some({})`.
    /// Evaluates the simplified tree, where an Alt has no Neg children and a Fail ends it, so an
    /// Alt is decided by its first child and a Union by its remaining branches.
    pub fn eval(&self) -> Option<BTreeSet<T>> {
        fn go<T: Clone + Ord>(t: &NameTree<T>) -> Option<BTreeSet<T>> {
            match t {
                NameTree::Leaf(v) => Some(BTreeSet::from([v.clone()])),
                NameTree::Empty => Some(BTreeSet::new()),
                NameTree::Neg | NameTree::Fail => None,
                NameTree::Alt(ts) => ts.first().and_then(go),
                NameTree::Union(ws) => {
                    let sets: Vec<_> = ws.iter().filter_map(|w| go(&w.tree)).collect();
                    (!sets.is_empty()).then(|| sets.into_iter().flatten().collect())
                }
            }
        }
        go(&self.simplified())
    }
}

/// Formats a weight as Java's `"%.2f".format(w)` does: HALF_UP rounding of the shortest decimal
/// representation (so `0.125` shows as `0.13` and `1.005` as `1.01`, unlike C's printf).
pub fn format_weight(w: f64) -> String {
    if !w.is_finite() {
        return if w.is_nan() {
            "NaN".into()
        } else if w > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let neg = w < 0.0;
    let s = format!("{}", w.abs());
    let (int_part, frac_part) = match s.split_once('.') {
        Some((i, f)) => (i.to_string(), f.to_string()),
        None => (s.clone(), String::new()),
    };
    let mut digits: Vec<u8> = int_part.bytes().map(|b| b - b'0').collect();
    let frac: Vec<u8> = frac_part.bytes().map(|b| b - b'0').collect();
    let int_len = digits.len();
    digits.extend(frac.iter().take(2));
    while digits.len() < int_len + 2 {
        digits.push(0);
    }
    if frac.get(2).is_some_and(|&d| d >= 5) {
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, 1);
                break;
            }
            i -= 1;
            if digits[i] == 9 {
                digits[i] = 0;
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    let split = digits.len() - 2;
    let int_s: String = digits[..split].iter().map(|d| (b'0' + d) as char).collect();
    let frac_s: String = digits[split..].iter().map(|d| (b'0' + d) as char).collect();
    let sign = if neg && digits.iter().any(|&d| d != 0) {
        "-"
    } else {
        ""
    };
    format!("{sign}{int_s}.{frac_s}")
}

impl<T: fmt::Display> NameTree<T> {
    /// The textual form, the inverse of `read` up to single-child Alts and Unions.
    pub fn show(&self) -> String {
        let mut s = String::new();
        self.show_top(&mut s);
        s
    }

    fn show_top(&self, out: &mut String) {
        match self {
            NameTree::Union(ws) if ws.len() == 1 => ws[0].tree.show_top(out),
            NameTree::Alt(ts) if ts.len() == 1 => ts[0].show_top(out),
            NameTree::Alt(ts) => {
                for (i, t) in ts.iter().enumerate() {
                    if i > 0 {
                        out.push_str(" | ");
                    }
                    t.show1(out);
                }
            }
            _ => self.show1(out),
        }
    }

    fn show1(&self, out: &mut String) {
        match self {
            NameTree::Union(ws) if ws.len() == 1 => ws[0].tree.show1(out),
            NameTree::Alt(ts) if ts.len() == 1 => ts[0].show1(out),
            NameTree::Union(ws) => {
                for (i, w) in ws.iter().enumerate() {
                    if i > 0 {
                        out.push_str(" & ");
                    }
                    if w.weight != Weighted::<T>::DEFAULT_WEIGHT {
                        out.push_str(&format_weight(w.weight));
                        out.push('*');
                    }
                    w.tree.show_simple(out);
                }
            }
            _ => self.show_simple(out),
        }
    }

    fn show_simple(&self, out: &mut String) {
        match self {
            NameTree::Leaf(v) => out.push_str(&v.to_string()),
            NameTree::Empty => out.push('$'),
            NameTree::Fail => out.push('!'),
            NameTree::Neg => out.push('~'),
            NameTree::Alt(ts) if ts.len() == 1 => ts[0].show_simple(out),
            NameTree::Union(ws) if ws.len() == 1 => ws[0].tree.show_simple(out),
            NameTree::Alt(_) | NameTree::Union(_) => {
                out.push('(');
                self.show_top(out);
                out.push(')');
            }
        }
    }
}

impl<T: fmt::Display> fmt::Display for NameTree<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.show())
    }
}
