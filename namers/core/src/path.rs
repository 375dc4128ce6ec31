//! `Path`: a hierarchical name, a sequence of non-empty byte strings (Finagle's `Path`).
//!
//! Paths are shown as `/a/b/c`; an element made only of label characters is shown as UTF-8,
//! any other element is shown with every byte escaped as `\xNN`, so `show` and `read` round-trip.
//! This module knows nothing about dtabs or trees; parsing lives in [`crate::syntax`].

use std::fmt;
use std::sync::Arc;

use crate::syntax::{self, ParseError};

/// A path: zero or more non-empty elements. Cheap to clone (the elements are shared).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Path {
    elems: Arc<[Box<[u8]>]>,
}

/// Whether `b` may appear unescaped in a shown path element (Finagle's `Path.isShowable`).
pub fn is_label_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'.' | b'#' | b'$' | b'%' | b'-')
}

impl Path {
    /// The empty path, shown as `/`.
    pub fn empty() -> Path {
        Path::default()
    }

    /// Builds a path from raw elements. Empty elements are dropped, as Finagle's `Path.Utf8`
    /// cannot represent them.
    pub fn from_elems<I, E>(elems: I) -> Path
    where
        I: IntoIterator<Item = E>,
        E: AsRef<[u8]>,
    {
        let v: Vec<Box<[u8]>> = elems
            .into_iter()
            .filter(|e| !e.as_ref().is_empty())
            .map(|e| e.as_ref().to_vec().into_boxed_slice())
            .collect();
        Path { elems: v.into() }
    }

    /// Builds a path from UTF-8 strings (Finagle's `Path.Utf8`).
    pub fn utf8<I, S>(elems: I) -> Path
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Path::from_elems(elems.into_iter().map(|s| s.as_ref().as_bytes().to_vec()))
    }

    /// Parses the textual form (`Path.read`).
    pub fn read(s: &str) -> Result<Path, ParseError> {
        syntax::parse_path(s)
    }

    pub fn elems(&self) -> &[Box<[u8]>] {
        &self.elems
    }

    /// The element at `i` as UTF-8, if it is valid UTF-8.
    pub fn elem_str(&self, i: usize) -> Option<&str> {
        self.elems.get(i).and_then(|e| std::str::from_utf8(e).ok())
    }

    pub fn len(&self) -> usize {
        self.elems.len()
    }

    pub fn is_empty(&self) -> bool {
        self.elems.is_empty()
    }

    pub fn starts_with(&self, prefix: &Path) -> bool {
        prefix.len() <= self.len() && self.elems[..prefix.len()] == prefix.elems[..]
    }

    pub fn take(&self, n: usize) -> Path {
        let n = n.min(self.len());
        Path {
            elems: self.elems[..n].to_vec().into(),
        }
    }

    pub fn drop(&self, n: usize) -> Path {
        let n = n.min(self.len());
        if n == 0 {
            return self.clone();
        }
        Path {
            elems: self.elems[n..].to_vec().into(),
        }
    }

    /// Concatenation (`++`).
    pub fn concat(&self, other: &Path) -> Path {
        if other.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return other.clone();
        }
        let mut v = self.elems.to_vec();
        v.extend(other.elems.iter().cloned());
        Path { elems: v.into() }
    }

    /// The shown form, `/a/b` or `/`.
    pub fn show(&self) -> String {
        self.to_string()
    }
}

/// Shows one element: as-is when every byte is a label character, else every byte as `\xNN`.
pub fn show_elem(e: &[u8], out: &mut impl fmt::Write) -> fmt::Result {
    if e.iter().all(|&b| is_label_char(b)) {
        // Label characters are ASCII, so this is valid UTF-8.
        out.write_str(std::str::from_utf8(e).map_err(|_| fmt::Error)?)
    } else {
        for b in e {
            write!(out, "\\x{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.elems.is_empty() {
            return f.write_str("/");
        }
        for e in self.elems.iter() {
            f.write_str("/")?;
            show_elem(e, f)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Path({self})")
    }
}

impl serde::Serialize for Path {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.show())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_escapes_whole_element() {
        let p = Path::from_elems([b"foo".to_vec(), b"a b".to_vec(), vec![0xff]]);
        assert_eq!(p.show(), "/foo/\\x61\\x20\\x62/\\xff");
        assert_eq!(Path::read(&p.show()).unwrap(), p);
    }

    #[test]
    fn prefix_is_by_element() {
        let s = Path::read("/s").unwrap();
        assert!(Path::read("/s/crawler").unwrap().starts_with(&s));
        assert!(!Path::read("/s#/foo").unwrap().starts_with(&s));
        assert!(Path::read("/x").unwrap().starts_with(&Path::empty()));
    }

    #[test]
    fn take_drop_concat() {
        let p = Path::read("/a/b/c").unwrap();
        assert_eq!(p.take(2).show(), "/a/b");
        assert_eq!(p.drop(2).show(), "/c");
        assert_eq!(p.drop(5).show(), "/");
        assert_eq!(p.take(1).concat(&p.drop(1)), p);
    }
}
