//! Locations and diagnostics for config checking. A `Loc` is the path to a value written the
//! way a user reads it (`routers[0].identifier (io.l5d.path).segments`); `Diags` collects every
//! error and warning so `check` can report them all at once. It also holds the one helper that
//! decodes a JSON value into a typed, `deny_unknown_fields` struct with the failing field's
//! location. Nothing here knows the config's schema.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Where a value sits in the config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Loc(String);

impl Loc {
    pub fn root() -> Loc {
        Loc(String::new())
    }

    /// A key under this location.
    pub fn key(&self, k: &str) -> Loc {
        if self.0.is_empty() {
            Loc(k.to_string())
        } else {
            Loc(format!("{}.{k}", self.0))
        }
    }

    /// An element of a list at this location.
    pub fn idx(&self, i: usize) -> Loc {
        Loc(format!("{}[{i}]", self.0))
    }

    /// This location, annotated with the plugin kind found there.
    pub fn kind(&self, kind: &str) -> Loc {
        Loc(format!("{} ({kind})", self.0))
    }

    /// A sub-path produced by serde (`a.b[0]`, or `.` for the value itself).
    pub fn sub(&self, p: &str) -> Loc {
        if p.is_empty() || p == "." {
            self.clone()
        } else if self.0.is_empty() {
            Loc(p.to_string())
        } else if p.starts_with('[') {
            Loc(format!("{}{p}", self.0))
        } else {
            Loc(format!("{}.{p}", self.0))
        }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("(top level)")
        } else {
            f.write_str(&self.0)
        }
    }
}

/// One finding: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diag {
    pub loc: Loc,
    pub message: String,
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.loc, self.message)
    }
}

/// Everything found while checking a config.
#[derive(Debug, Default, Clone)]
pub struct Diags {
    pub errors: Vec<Diag>,
    pub warnings: Vec<Diag>,
}

impl Diags {
    pub fn error(&mut self, loc: &Loc, message: impl Into<String>) {
        self.errors.push(Diag {
            loc: loc.clone(),
            message: message.into(),
        });
    }

    pub fn warn(&mut self, loc: &Loc, message: impl Into<String>) {
        self.warnings.push(Diag {
            loc: loc.clone(),
            message: message.into(),
        });
    }

    /// Decodes `v` as `T`, recording an error at the failing field and returning `None`.
    pub fn typed<T: DeserializeOwned>(&mut self, v: &Value, loc: &Loc) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(v.clone()) {
            Ok(t) => Some(t),
            Err(e) => {
                let at = loc.sub(&e.path().to_string());
                let (at, msg) = super::registry::relocate(&at, &e.into_inner().to_string());
                self.error(&at, msg);
                None
            }
        }
    }
}

/// The JSON type of a value, for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}
