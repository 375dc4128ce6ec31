//! Config text to a JSON value, strictly. Text whose first non-blank character is `{` is JSON,
//! anything else YAML (Linkerd's rule). Duplicate keys are rejected in both, as Jackson's
//! `STRICT_DUPLICATE_DETECTION` does; serde_json and serde_yaml_ng would otherwise keep the
//! last value silently. This module knows nothing of the config's meaning.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// A config that could not be read as YAML or JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {format} syntax: {message}")]
pub struct SyntaxError {
    pub format: &'static str,
    pub message: String,
}

/// Parses config text into a JSON value, rejecting duplicate keys.
pub fn parse(text: &str) -> Result<Value, SyntaxError> {
    if text.trim_start().starts_with('{') {
        let mut de = serde_json::Deserializer::from_str(text);
        let v = StrictValue::deserialize(&mut de)
            .and_then(|v| de.end().map(|()| v))
            .map_err(|e| SyntaxError {
                format: "JSON",
                message: e.to_string(),
            })?;
        Ok(v.0)
    } else {
        let v = serde_yaml_ng::from_str::<StrictValue>(text).map_err(|e| SyntaxError {
            format: "YAML",
            message: with_duplicate_lines(text, e.to_string()),
        })?;
        Ok(v.0)
    }
}

/// serde_yaml_ng reports a duplicate key without a position; when the key is written on exactly
/// two lines, those are the two, so name them.
fn with_duplicate_lines(text: &str, message: String) -> String {
    let Some(key) = message
        .split("duplicate key `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
    else {
        return message;
    };
    let lines: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| {
            let t = l.trim_start().trim_start_matches("- ").trim_start();
            let t = t
                .strip_prefix(key)
                .or_else(|| t.strip_prefix(&format!("\"{key}\"")))
                .or_else(|| t.strip_prefix(&format!("'{key}'")));
            t.is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map(|(i, _)| i + 1)
        .collect();
    match lines.as_slice() {
        [a, b] => format!("{message} (lines {a} and {b})"),
        _ => message,
    }
}

/// A `serde_json::Value` whose maps refuse a key seen twice.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML or JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("number {v} is not finite")))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(StrictValue(k)) = map.next_key()? {
            let key = match k {
                Value::String(s) => s,
                // YAML allows scalar keys of other types; JSON objects need strings.
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => "null".to_string(),
                other => {
                    return Err(de::Error::custom(format!(
                        "a map key must be a scalar, found {other}"
                    )))
                }
            };
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, want: Result<&str, &str>) {
        let got = parse(text)
            .map(|v| v.to_string())
            .map_err(|e| e.to_string());
        match (got, want) {
            (Ok(g), Ok(w)) => assert_eq!(g, w, "{text:?}"),
            (Err(g), Err(w)) => assert!(g.contains(w), "{text:?}: error {g:?} lacks {w:?}"),
            (g, w) => panic!("{text:?}: got {g:?}, want {w:?}"),
        }
    }

    #[test]
    fn rows() {
        check("a: 1\nb: [x, 2.5]\n", Ok(r#"{"a":1,"b":["x",2.5]}"#));
        check(r#"  {"a": {"b": null}}"#, Ok(r#"{"a":{"b":null}}"#));
        check("8080: x\ntrue: y\n", Ok(r#"{"8080":"x","true":"y"}"#));
        check("a: &x {k: 1}\nb: *x\n", Ok(r#"{"a":{"k":1},"b":{"k":1}}"#));
        check("a: 1\na: 2\n", Err("duplicate key `a`"));
        check("r:\n- x: 1\n  x: 2\n", Err("duplicate key `x`"));
        check(r#"{"a": 1, "a": 2}"#, Err("duplicate key `a`"));
        check(r#"{"a": 1} trailing"#, Err("invalid JSON syntax"));
        check("a: [1, 2\n", Err("invalid YAML syntax"));
        check("a:\n  b: 1\n c: 2\n", Err("invalid YAML syntax"));
    }
}
