//! The `io.l5d.rewrite` namer and Linkerd's `PathMatcher`: a pattern such as
//! `/{service}/*/api` is matched as a prefix of the path (`*` matches one element, `{var}`
//! captures part of one element), and the match is substituted into `name`, giving a path that
//! resolution continues with. The unmatched rest of the path is dropped, as in Linkerd.

use std::collections::BTreeMap;

use regex::Regex;

use crate::namer::{Name, Namer};
use crate::path::Path;
use crate::tree::NameTree;
use crate::var::{self, Activity, NamingError};

/// Error text when the namer is configured without a prefix.
pub const PREFIX_REQUIRED: &str = "The 'prefix' property is required for the io.l5d.rewrite namer.";

enum Segment {
    Any,
    Literal(String),
    Capture { re: Regex, keys: Vec<String> },
}

/// A compiled `PathMatcher` pattern.
pub struct PathMatcher {
    segments: Vec<Segment>,
}

/// A pattern that cannot be compiled.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid pattern `{pattern}`: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

impl PathMatcher {
    pub fn new(pattern: &str) -> Result<PathMatcher, PatternError> {
        // Linkerd's key charset `[a-zA-Z0-9\.:-_]`, where `:-_` is a range.
        let key_re = Regex::new(r"\{([a-zA-Z0-9.:-_]+)\}").map_err(|e| PatternError {
            pattern: pattern.into(),
            reason: e.to_string(),
        })?;
        let mut segments = Vec::new();
        for seg in pattern.split('/').skip_while(|s| s.is_empty()) {
            if seg == "*" {
                segments.push(Segment::Any);
                continue;
            }
            let keys: Vec<String> = key_re
                .captures_iter(seg)
                .filter_map(|c| c.get(1).map(|m| m.as_str().to_string()))
                .collect();
            if keys.is_empty() {
                segments.push(Segment::Literal(seg.to_string()));
                continue;
            }
            // Literal text is escaped; each `{key}` becomes a greedy group (unanchored, as
            // Linkerd's `find`).
            let mut re = String::new();
            let mut last = 0;
            for m in key_re.find_iter(seg) {
                re.push_str(&regex::escape(&seg[last..m.start()]));
                re.push_str("(.*)");
                last = m.end();
            }
            re.push_str(&regex::escape(&seg[last..]));
            let re = Regex::new(&re).map_err(|e| PatternError {
                pattern: pattern.into(),
                reason: e.to_string(),
            })?;
            segments.push(Segment::Capture { re, keys });
        }
        Ok(PathMatcher { segments })
    }

    /// The variables captured when the pattern matches a prefix of `path`.
    pub fn extract(&self, path: &Path) -> Option<BTreeMap<String, String>> {
        let shown: Vec<String> = path
            .elems()
            .iter()
            .map(|e| {
                let mut s = String::new();
                // Writing to a String cannot fail.
                let _ = crate::path::show_elem(e, &mut s);
                s
            })
            .collect();
        let mut vars = BTreeMap::new();
        for (i, seg) in self.segments.iter().enumerate() {
            let elem = shown.get(i)?;
            match seg {
                Segment::Any => {}
                Segment::Literal(l) => {
                    if l != elem {
                        return None;
                    }
                }
                Segment::Capture { re, keys } => {
                    let caps = re.captures(elem)?;
                    for (k, key) in keys.iter().enumerate() {
                        let v = caps.get(k + 1).map(|m| m.as_str()).unwrap_or("");
                        vars.insert(key.clone(), v.to_string());
                    }
                }
            }
        }
        Some(vars)
    }

    /// `extract`, then replaces each `{key}` in `template` with its value.
    pub fn substitute(&self, path: &Path, template: &str) -> Option<String> {
        let vars = self.extract(path)?;
        Some(vars.iter().rev().fold(template.to_string(), |acc, (k, v)| {
            acc.replace(&format!("{{{k}}}"), v)
        }))
    }
}

/// The `io.l5d.rewrite` namer.
pub struct RewritingNamer {
    matcher: PathMatcher,
    name: String,
}

impl RewritingNamer {
    pub fn new(pattern: &str, name: &str) -> Result<RewritingNamer, PatternError> {
        Ok(RewritingNamer {
            matcher: PathMatcher::new(pattern)?,
            name: name.to_string(),
        })
    }
}

impl Namer for RewritingNamer {
    fn lookup(&self, path: &Path) -> Activity<NameTree<Name>> {
        match self.matcher.substitute(path, &self.name) {
            None => var::value(NameTree::Neg),
            Some(s) => match Path::read(&s) {
                Ok(p) => var::value(NameTree::Leaf(Name::Path(p))),
                Err(e) => var::failed(NamingError::new(format!(
                    "io.l5d.rewrite: `{s}` is not a path: {e}"
                ))),
            },
        }
    }
}
