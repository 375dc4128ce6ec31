//! The textual language of paths, name trees and dtabs: a port of Finagle's `NameTreeParsers`.
//!
//! One hand-written recursive-descent parser serves all three (no parser-combinator crate: the
//! grammar is tiny, and Finagle's exact error texts, `'/' expected but 'i' found at
//! '[i]nvalid-param'`, are part of the contract, which a generic library would not reproduce).
//! Whitespace and `#` comments (to the end of the line) are skipped between tokens; inside a
//! label `#` is an ordinary character. This module only parses; showing lives with each type.

use crate::dtab::{Dentry, Dtab, Prefix, PrefixElem};
use crate::path::{is_label_char, Path};
use crate::tree::{NameTree, Weighted};

/// A syntax error, with Finagle's message text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

const EOI: char = '\u{ffff}';

/// Java's `Character.isWhitespace`, which Finagle's parser uses (unlike Rust's
/// `char::is_whitespace`, it excludes no-break spaces and U+0085).
fn is_java_whitespace(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0b}' | '\u{0c}' | '\r' | '\u{1c}'..='\u{1f}' | ' '
            | '\u{1680}'
            | '\u{2000}'..='\u{2006}'
            | '\u{2008}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

struct Parser {
    s: Vec<char>,
    idx: usize,
    /// Open parentheses around the current position.
    depth: usize,
}

/// Deepest parenthesis nesting a tree may have. Finagle has no limit; a parser that recursed
/// without one would let a header such as `l5d-dtab` overflow the stack.
pub const MAX_NESTING: usize = 100;

type R<T> = Result<T, ParseError>;

impl Parser {
    fn new(s: &str) -> Parser {
        Parser {
            depth: 0,
            s: s.chars().collect(),
            idx: 0,
        }
    }

    fn at_end(&self) -> bool {
        self.idx >= self.s.len()
    }

    fn peek(&self) -> char {
        self.s.get(self.idx).copied().unwrap_or(EOI)
    }

    fn next(&mut self) {
        self.idx += 1;
    }

    fn illegal<T>(&self, expected: &str, found: char) -> R<T> {
        let shown_found = if found == EOI {
            "end of input".to_string()
        } else {
            format!("'{found}'")
        };
        let before: String = self.s[..self.idx.min(self.s.len())].iter().collect();
        let at: String = self
            .s
            .get(self.idx)
            .map(|c| c.to_string())
            .unwrap_or_default();
        let after: String = self.s.get(self.idx + 1..).unwrap_or(&[]).iter().collect();
        Err(ParseError(format!(
            "{expected} expected but {shown_found} found at '{before}[{at}]{after}'"
        )))
    }

    fn maybe_eat(&mut self, c: char) -> bool {
        if self.peek() == c {
            self.next();
            true
        } else {
            false
        }
    }

    fn eat(&mut self, c: char) -> R<()> {
        if self.maybe_eat(c) {
            Ok(())
        } else {
            self.illegal(&format!("'{c}'"), self.peek())
        }
    }

    fn eat_whitespace(&mut self) {
        let mut in_comment = false;
        while !self.at_end() {
            let c = self.peek();
            if in_comment {
                if c == '\n' {
                    in_comment = false;
                }
            } else if c == '#' {
                in_comment = true;
            } else if !is_java_whitespace(c) {
                break;
            }
            self.next();
        }
    }

    fn ensure_end(&self) -> R<()> {
        if self.at_end() {
            Ok(())
        } else {
            self.illegal("end of input", self.peek())
        }
    }

    fn is_label(c: char) -> bool {
        c.is_ascii() && is_label_char(c as u8)
    }

    fn parse_hex(&mut self) -> R<u8> {
        match self.peek().to_digit(16) {
            Some(d) if self.peek().is_ascii() => {
                self.next();
                Ok(d as u8)
            }
            _ => self.illegal("hex char", self.peek()),
        }
    }

    fn parse_label(&mut self) -> R<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let c = self.peek();
            if Self::is_label(c) {
                self.next();
                out.push(c as u8);
            } else if c == '\\' {
                self.next();
                self.eat('x')?;
                let hi = self.parse_hex()?;
                let lo = self.parse_hex()?;
                out.push(hi << 4 | lo);
            } else {
                return self.illegal("label char", c);
            }
            let c = self.peek();
            if !(Self::is_label(c) || c == '\\') {
                return Ok(out);
            }
        }
    }

    fn parse_path(&mut self) -> R<Path> {
        self.eat_whitespace();
        self.eat('/')?;
        let c = self.peek();
        if !Self::is_label(c) && c != '\\' {
            return Ok(Path::empty());
        }
        let mut elems = Vec::new();
        loop {
            elems.push(self.parse_label()?);
            if !self.maybe_eat('/') {
                break;
            }
        }
        Ok(Path::from_elems(elems))
    }

    fn parse_prefix(&mut self) -> R<Prefix> {
        self.eat_whitespace();
        self.eat('/')?;
        let c = self.peek();
        if !Self::is_label(c) && c != '\\' && c != '*' {
            return Ok(Prefix::empty());
        }
        let mut elems = Vec::new();
        loop {
            if self.maybe_eat('*') {
                elems.push(PrefixElem::Any);
            } else {
                elems.push(PrefixElem::Label(self.parse_label()?.into_boxed_slice()));
            }
            if !self.maybe_eat('/') {
                break;
            }
        }
        Ok(Prefix::new(elems))
    }

    fn parse_tree(&mut self) -> R<NameTree<Path>> {
        let mut trees = Vec::new();
        loop {
            trees.push(self.parse_tree1()?);
            self.eat_whitespace();
            if !self.maybe_eat('|') {
                break;
            }
        }
        Ok(if trees.len() == 1 {
            trees.pop().unwrap_or(NameTree::Neg)
        } else {
            NameTree::Alt(trees)
        })
    }

    fn parse_tree1(&mut self) -> R<NameTree<Path>> {
        let mut trees = Vec::new();
        loop {
            trees.push(self.parse_weighted()?);
            self.eat_whitespace();
            if !self.maybe_eat('&') {
                break;
            }
        }
        Ok(if trees.len() == 1 {
            trees.pop().map(|w| w.tree).unwrap_or(NameTree::Neg)
        } else {
            NameTree::Union(trees)
        })
    }

    fn is_number_char(c: char) -> bool {
        c.is_ascii_digit() || c == '.'
    }

    fn parse_number(&mut self) -> R<f64> {
        let start = self.idx;
        let mut seen_dot = false;
        while Self::is_number_char(self.peek()) {
            if self.peek() == '.' {
                if seen_dot {
                    return self.illegal("number char", self.peek());
                }
                seen_dot = true;
            }
            self.next();
        }
        let text: String = self.s[start..self.idx].iter().collect();
        if text == "." {
            // Finagle reports the '.' while pointing at the character after it.
            return self.illegal("weight", '.');
        }
        match text.parse::<f64>() {
            Ok(w) => Ok(w),
            Err(_) => self.illegal("weight", self.peek()),
        }
    }

    fn parse_weighted(&mut self) -> R<Weighted<Path>> {
        self.eat_whitespace();
        let weight = if Self::is_number_char(self.peek()) {
            let w = self.parse_number()?;
            self.eat_whitespace();
            self.eat('*')?;
            self.eat_whitespace();
            w
        } else {
            Weighted::<Path>::DEFAULT_WEIGHT
        };
        Ok(Weighted {
            weight,
            tree: self.parse_simple()?,
        })
    }

    fn parse_simple(&mut self) -> R<NameTree<Path>> {
        self.eat_whitespace();
        match self.peek() {
            '(' => {
                if self.depth >= MAX_NESTING {
                    return Err(ParseError(format!(
                        "parentheses nested deeper than {MAX_NESTING} at offset {}",
                        self.idx
                    )));
                }
                self.next();
                self.depth += 1;
                let t = self.parse_tree();
                self.depth -= 1;
                let t = t?;
                self.eat_whitespace();
                self.eat(')')?;
                Ok(t)
            }
            '/' => Ok(NameTree::Leaf(self.parse_path()?)),
            '!' => {
                self.next();
                Ok(NameTree::Fail)
            }
            '~' => {
                self.next();
                Ok(NameTree::Neg)
            }
            '$' => {
                self.next();
                Ok(NameTree::Empty)
            }
            c => self.illegal("simple", c),
        }
    }

    fn parse_dentry(&mut self) -> R<Dentry> {
        let prefix = self.parse_prefix()?;
        self.eat_whitespace();
        self.eat('=')?;
        self.eat('>')?;
        let dst = self.parse_tree()?;
        Ok(Dentry { prefix, dst })
    }

    fn parse_dtab(&mut self) -> R<Dtab> {
        let mut dentries = Vec::new();
        loop {
            self.eat_whitespace();
            if !self.at_end() {
                dentries.push(self.parse_dentry()?);
                self.eat_whitespace();
            }
            if !self.maybe_eat(';') {
                break;
            }
        }
        Ok(Dtab::new(dentries))
    }
}

fn parse_all<T>(s: &str, f: impl FnOnce(&mut Parser) -> R<T>) -> R<T> {
    let mut p = Parser::new(s);
    let v = f(&mut p)?;
    p.eat_whitespace();
    p.ensure_end()?;
    Ok(v)
}

pub fn parse_path(s: &str) -> R<Path> {
    parse_all(s, Parser::parse_path)
}

pub fn parse_tree(s: &str) -> R<NameTree<Path>> {
    parse_all(s, Parser::parse_tree)
}

pub fn parse_dentry(s: &str) -> R<Dentry> {
    parse_all(s, Parser::parse_dentry)
}

pub fn parse_dtab(s: &str) -> R<Dtab> {
    parse_all(s, Parser::parse_dtab)
}

pub fn parse_prefix(s: &str) -> R<Prefix> {
    parse_all(s, Parser::parse_prefix)
}
