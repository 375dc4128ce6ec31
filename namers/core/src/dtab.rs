//! Delegation tables: `Dentry` (`prefix => tree`, the prefix may hold `*` wildcards) and `Dtab`
//! (an ordered list of dentries) with parse, show, concatenation and the one-step `lookup`.
//!
//! Lookup walks the dentries from last to first and collects every match into an `Alt`, so later
//! entries win and there is no longest-prefix rule. Recursive resolution is [`crate::bind`].

use std::fmt;

use crate::path::{show_elem, Path};
use crate::syntax::{self, ParseError};
use crate::tree::NameTree;

/// One element of a dentry prefix: a literal label or the `*` wildcard.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PrefixElem {
    Any,
    Label(Box<[u8]>),
}

/// A dentry prefix: like a path, but `*` matches any one element.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Prefix {
    elems: Vec<PrefixElem>,
}

impl Prefix {
    pub fn empty() -> Prefix {
        Prefix::default()
    }

    pub fn new(elems: Vec<PrefixElem>) -> Prefix {
        Prefix { elems }
    }

    pub fn read(s: &str) -> Result<Prefix, ParseError> {
        syntax::parse_prefix(s)
    }

    pub fn len(&self) -> usize {
        self.elems.len()
    }

    pub fn elems(&self) -> &[PrefixElem] {
        &self.elems
    }

    pub fn is_empty(&self) -> bool {
        self.elems.is_empty()
    }

    /// True when every element is `*` or equal (byte-exact) to the path's element at that index.
    pub fn matches(&self, path: &Path) -> bool {
        self.elems.len() <= path.len()
            && self.elems.iter().zip(path.elems()).all(|(p, e)| match p {
                PrefixElem::Any => true,
                PrefixElem::Label(l) => l == e,
            })
    }
}

impl From<&Path> for Prefix {
    fn from(p: &Path) -> Prefix {
        Prefix::new(
            p.elems()
                .iter()
                .map(|e| PrefixElem::Label(e.clone()))
                .collect(),
        )
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.elems.is_empty() {
            return f.write_str("/");
        }
        for e in &self.elems {
            f.write_str("/")?;
            match e {
                PrefixElem::Any => f.write_str("*")?,
                PrefixElem::Label(l) => show_elem(l, f)?,
            }
        }
        Ok(())
    }
}

/// `prefix => dst`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dentry {
    pub prefix: Prefix,
    pub dst: NameTree<Path>,
}

impl Dentry {
    pub fn read(s: &str) -> Result<Dentry, ParseError> {
        syntax::parse_dentry(s)
    }

    /// The dentry that stands for "no rewrite" at the root of a delegation (Finagle's
    /// `Dentry.nop`, shown `/\x2f=>~`).
    pub fn nop() -> Dentry {
        Dentry {
            prefix: Prefix::new(vec![PrefixElem::Label(b"/".to_vec().into_boxed_slice())]),
            dst: NameTree::Neg,
        }
    }

    pub fn is_nop(&self) -> bool {
        *self == Dentry::nop()
    }

    pub fn show(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Dentry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=>{}", self.prefix, self.dst.show())
    }
}

/// An ordered list of dentries. Later entries take precedence.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Dtab {
    pub dentries: Vec<Dentry>,
}

impl Dtab {
    pub fn new(dentries: Vec<Dentry>) -> Dtab {
        Dtab { dentries }
    }

    pub fn empty() -> Dtab {
        Dtab::default()
    }

    pub fn read(s: &str) -> Result<Dtab, ParseError> {
        syntax::parse_dtab(s)
    }

    pub fn is_empty(&self) -> bool {
        self.dentries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.dentries.len()
    }

    /// `self ++ other`: the entries of `other` come later and so win.
    pub fn concat(&self, other: &Dtab) -> Dtab {
        let mut d = self.dentries.clone();
        d.extend(other.dentries.iter().cloned());
        Dtab { dentries: d }
    }

    /// One rewrite step: every matching dentry, last first, as an `Alt` (or Neg if none).
    pub fn lookup(&self, path: &Path) -> NameTree<Path> {
        let mut matches: Vec<NameTree<Path>> = self
            .dentries
            .iter()
            .rev()
            .filter(|d| d.prefix.matches(path))
            .map(|d| {
                let rest = path.drop(d.prefix.len());
                d.dst.map(&mut |p: &Path| p.concat(&rest))
            })
            .collect();
        match matches.len() {
            0 => NameTree::Neg,
            1 => matches.pop().unwrap_or(NameTree::Neg),
            _ => NameTree::Alt(matches),
        }
    }

    /// Like `lookup`, but keeps the dentry that produced each alternative (for delegation).
    pub fn lookup_entries(&self, path: &Path) -> Vec<(Dentry, NameTree<Path>)> {
        self.dentries
            .iter()
            .rev()
            .filter(|d| d.prefix.matches(path))
            .map(|d| {
                let rest = path.drop(d.prefix.len());
                (d.clone(), d.dst.map(&mut |p: &Path| p.concat(&rest)))
            })
            .collect()
    }

    /// Simplifies every dst and drops entries whose dst simplifies to Neg.
    pub fn simplified(&self) -> Dtab {
        Dtab {
            dentries: self
                .dentries
                .iter()
                .map(|d| Dentry {
                    prefix: d.prefix.clone(),
                    dst: d.dst.simplified(),
                })
                .filter(|d| d.dst != NameTree::Neg)
                .collect(),
        }
    }

    /// Removes `prefix`'s entries when they are a leading prefix of this dtab.
    pub fn strip_prefix(&self, prefix: &Dtab) -> Dtab {
        if prefix.len() <= self.len() && self.dentries[..prefix.len()] == prefix.dentries[..] {
            Dtab {
                dentries: self.dentries[prefix.len()..].to_vec(),
            }
        } else {
            self.clone()
        }
    }

    /// `/a=>/b;/c=>/d`, the wire form used in `l5d-ctx-dtab`.
    pub fn show(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Dtab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.dentries.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}
