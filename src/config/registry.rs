//! Plugin registries: one per family (namer, identifier, interpreter, ...), each listing every
//! `kind` it knows exactly once, as either supported (with the decoder of its parameters) or a
//! Linkerd 1 kind that is not supported yet (with the reason). `Plugin<F>` decodes a `{kind: ..,
//! ...}` map through family `F` from inside serde, so typed config structs can hold plugins
//! directly; an error inside a plugin keeps its full location (`... (io.l5d.path).segments`).
//! The families themselves are declared in `plugins`.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::Deserialize;
use serde_json::Value;

use super::diag::{type_name, Loc};

/// How a family knows one kind.
pub enum Entry<T> {
    /// Decodes the parameters (the map without `kind`).
    Supported(fn(Value) -> Result<T, String>),
    /// A Linkerd 1 kind Switchboard does not run yet; the text says why or when.
    NotYet(&'static str),
}

/// A plugin family and its registry.
pub trait Family: 'static {
    type Out;
    /// The family's name in messages ("namer", "identifier", ...).
    const NAME: &'static str;
    /// Every kind, each exactly once.
    fn kinds() -> &'static [(&'static str, Entry<Self::Out>)];
    /// The kind assumed when a map has no `kind`, if any.
    fn default_kind() -> Option<&'static str> {
        None
    }
}

/// A decoded plugin of family `F`, with the kind it was written as.
pub struct Plugin<F: Family> {
    pub kind: &'static str,
    pub value: F::Out,
    _f: PhantomData<F>,
}

impl<F: Family> Plugin<F>
where
    F::Out: Clone,
{
    pub fn new(kind: &'static str, value: F::Out) -> Plugin<F> {
        Plugin {
            kind,
            value,
            _f: PhantomData,
        }
    }
}

impl<F: Family> Clone for Plugin<F>
where
    F::Out: Clone,
{
    fn clone(&self) -> Self {
        Plugin {
            kind: self.kind,
            value: self.value.clone(),
            _f: PhantomData,
        }
    }
}

impl<F: Family> fmt::Debug for Plugin<F>
where
    F::Out: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("kind", &self.kind)
            .field("value", &self.value)
            .finish()
    }
}

impl<'de, F: Family> Deserialize<'de> for Plugin<F> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        decode::<F>(v).map_err(D::Error::custom)
    }
}

/// The kinds of a family, as written in an "unknown kind" message.
pub fn known_kinds<F: Family>() -> String {
    let supported: Vec<&str> = F::kinds()
        .iter()
        .filter(|(_, e)| matches!(e, Entry::Supported(_)))
        .map(|(k, _)| *k)
        .collect();
    let not_yet: Vec<&str> = F::kinds()
        .iter()
        .filter(|(_, e)| matches!(e, Entry::NotYet(_)))
        .map(|(k, _)| *k)
        .collect();
    let mut s = format!("known {} kinds: {}", F::NAME, supported.join(", "));
    if !not_yet.is_empty() {
        s.push_str(&format!(
            " (Linkerd 1 kinds not supported yet: {})",
            not_yet.join(", ")
        ));
    }
    s
}

fn decode<F: Family>(v: Value) -> Result<Plugin<F>, String> {
    let Value::Object(mut map) = v else {
        return Err(format!(
            "expected a {} map with a `kind`, found {}",
            F::NAME,
            type_name(&v)
        ));
    };
    let kind = match map.remove("kind") {
        Some(Value::String(k)) => k,
        Some(other) => {
            return Err(format!(
                "`kind` must be a string, found {}",
                type_name(&other)
            ))
        }
        None => match F::default_kind() {
            Some(k) => k.to_string(),
            None => return Err(format!("missing `kind`; {}", known_kinds::<F>())),
        },
    };
    let Some((name, entry)) = F::kinds().iter().find(|(k, _)| *k == kind) else {
        let hint = if kind.starts_with("io.l5d.") {
            ""
        } else {
            " (third-party plugin kinds are not supported)"
        };
        return Err(located(
            &kind,
            "",
            &format!(
                "unknown {} kind `{kind}`{hint}; {}",
                F::NAME,
                known_kinds::<F>()
            ),
        ));
    };
    match entry {
        Entry::NotYet(why) => Err(located(
            name,
            "",
            &format!("{} kind `{name}` is not supported yet: {why}", F::NAME),
        )),
        Entry::Supported(build) => build(Value::Object(map))
            .map(|value| Plugin {
                kind: name,
                value,
                _f: PhantomData,
            })
            .map_err(|e| located(name, "", &e)),
    }
}

/// Decodes a plugin's parameters as `T`, keeping the failing field's path in the error.
pub fn params<T: DeserializeOwned>(v: Value) -> Result<T, String> {
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let path = e.path().to_string();
        located_path(&path, &e.into_inner().to_string())
    })
}

// Errors cross serde as strings; these markers carry the plugin kind and the path inside it so
// `relocate` can rebuild `loc (kind).path: message` however deep plugins nest.
const MARK: char = '\u{1}';

fn located(kind: &str, path: &str, msg: &str) -> String {
    format!("{MARK}{kind}{MARK}{path}{MARK}{msg}")
}

/// Marks `msg` as an error at `path` inside the value being decoded (`configs[2].prefix`).
pub fn nest(path: &str, msg: &str) -> String {
    located_path(path, msg)
}

fn located_path(path: &str, msg: &str) -> String {
    format!("{MARK}{MARK}{path}{MARK}{msg}")
}

/// Splits a serde error message carrying plugin markers into the location it names (relative to
/// `loc`) and the plain message.
pub fn relocate(loc: &Loc, msg: &str) -> (Loc, String) {
    let mut loc = loc.clone();
    let mut msg = msg.to_string();
    while let Some(rest) = msg.strip_prefix(MARK) {
        let mut parts = rest.splitn(3, MARK);
        let (Some(kind), Some(path), Some(inner)) = (parts.next(), parts.next(), parts.next())
        else {
            break;
        };
        if !kind.is_empty() {
            loc = loc.kind(kind);
        }
        loc = loc.sub(path);
        msg = inner.to_string();
    }
    (loc, msg)
}
