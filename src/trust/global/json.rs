//! Strict JSON for signed documents, and a reader that reports every problem at its path.
//!
//! Two parsers that read one signed document differently are an attack surface, so
//! a JSON object with a repeated key is refused rather than resolved first-wins or
//! last-wins. The reader walks a parsed value field by field, refusing unknown fields
//! (the `deny_unknown_fields` of serde) and collecting every problem with its path,
//! never with the offending value (serde's own messages quote values).

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// One problem of a document: where it is and what is wrong, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path inside the document, e.g. `secure_servers[0].certificates[1].sha256`;
    /// empty for the document as a whole.
    pub path: String,
    /// What is wrong. Never quotes a value of the document.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// The problems found so far.
#[derive(Debug, Default)]
pub(super) struct Problems(pub(super) Vec<Problem>);

impl Problems {
    pub(super) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A JSON value whose objects never repeat a key.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if object.insert(key, value).is_some() {
                return Err(de::Error::custom("an object repeats a key"));
            }
        }
        Ok(Value::Object(object))
    }
}

/// Parses one JSON value, refusing repeated keys. The error says where, never what.
pub(super) fn parse_strict(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice::<Strict>(bytes)
        .map(|Strict(value)| value)
        .map_err(|error| {
            let what = match error.classify() {
                serde_json::error::Category::Data => "an object repeats a key",
                _ => "not well-formed JSON",
            };
            format!("{what} (line {}, column {})", error.line(), error.column())
        })
}

/// `base.key`, or `key` at the top.
pub(super) fn field_path(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_owned()
    } else {
        format!("{base}.{key}")
    }
}

/// `base[index]`.
pub(super) fn index_path(base: &str, index: usize) -> String {
    format!("{base}[{index}]")
}

/// An object being read: its fields, its path, and the fields it may have.
pub(super) struct Object<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Object<'a> {
    /// `value` as an object with only `allowed` fields; each unknown field is a problem.
    pub(super) fn read(
        value: &'a Value,
        path: &str,
        allowed: &[&str],
        problems: &mut Problems,
    ) -> Option<Self> {
        let Value::Object(map) = value else {
            problems.push(path, "must be an object");
            return None;
        };
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                // The key is structure, not a value; still, print only a safe one.
                if is_printable_name(key) {
                    problems.push(field_path(path, key), "unknown field");
                } else {
                    problems.push(path, "has an unknown field");
                }
            }
        }
        Some(Object {
            map,
            path: path.to_owned(),
        })
    }

    /// The path of one field.
    pub(super) fn at(&self, key: &str) -> String {
        field_path(&self.path, key)
    }

    /// Whether the field is present.
    pub(super) fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// A field that must be present.
    pub(super) fn required(&self, key: &str, problems: &mut Problems) -> Option<&'a Value> {
        let value = self.map.get(key);
        if value.is_none() {
            problems.push(self.at(key), "required");
        }
        value
    }

    /// A field that may be absent.
    pub(super) fn optional(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    /// A required string.
    pub(super) fn string(&self, key: &str, problems: &mut Problems) -> Option<&'a str> {
        let value = self.required(key, problems)?;
        as_string(value, &self.at(key), problems)
    }

    /// A required non-empty string.
    pub(super) fn text(&self, key: &str, problems: &mut Problems) -> Option<&'a str> {
        let text = self.string(key, problems)?;
        if text.trim().is_empty() {
            problems.push(self.at(key), "must not be empty");
            return None;
        }
        Some(text)
    }

    /// A required array.
    pub(super) fn array(&self, key: &str, problems: &mut Problems) -> Option<&'a [Value]> {
        let value = self.required(key, problems)?;
        as_array(value, &self.at(key), problems)
    }

    /// An array that may be absent (then empty).
    pub(super) fn optional_array(&self, key: &str, problems: &mut Problems) -> &'a [Value] {
        match self.optional(key) {
            None => &[],
            Some(value) => as_array(value, &self.at(key), problems).unwrap_or(&[]),
        }
    }

    /// A required RFC 3339 timestamp.
    pub(super) fn timestamp(&self, key: &str, problems: &mut Problems) -> Option<OffsetDateTime> {
        let value = self.required(key, problems)?;
        as_timestamp(value, &self.at(key), problems)
    }

    /// An RFC 3339 timestamp that may be absent.
    pub(super) fn optional_timestamp(
        &self,
        key: &str,
        problems: &mut Problems,
    ) -> Option<OffsetDateTime> {
        let value = self.optional(key)?;
        as_timestamp(value, &self.at(key), problems)
    }
}

/// Whether a field name is safe to print in a path (short, plain ASCII).
fn is_printable_name(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 64
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '#'))
}

pub(super) fn as_string<'a>(
    value: &'a Value,
    path: &str,
    problems: &mut Problems,
) -> Option<&'a str> {
    match value {
        Value::String(text) => Some(text),
        _ => {
            problems.push(path, "must be a string");
            None
        }
    }
}

pub(super) fn as_array<'a>(
    value: &'a Value,
    path: &str,
    problems: &mut Problems,
) -> Option<&'a [Value]> {
    match value {
        Value::Array(items) => Some(items),
        _ => {
            problems.push(path, "must be an array");
            None
        }
    }
}

pub(super) fn as_timestamp(
    value: &Value,
    path: &str,
    problems: &mut Problems,
) -> Option<OffsetDateTime> {
    let text = as_string(value, path, problems)?;
    let parsed = OffsetDateTime::parse(text, &Rfc3339).ok();
    if parsed.is_none() {
        problems.push(path, "must be an RFC 3339 date-time with an offset");
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Design §10 (no article): one signed document has one reading, so repeated keys are refused.
    #[test]
    fn refuses_repeated_keys_at_any_depth() {
        assert!(parse_strict(br#"{"a":1,"b":{"c":1,"c":2}}"#).is_err());
        assert!(parse_strict(br#"{"a":1,"a":1}"#).is_err());
        assert!(parse_strict(br#"{"a":[{"b":1},{"b":2}]}"#).is_ok());
    }

    /// 002 Điều 26 khoản 1: parse errors say where, never what.
    #[test]
    fn parse_errors_do_not_quote_the_input() {
        let error = parse_strict(br#"{"secret-value" 1}"#).expect_err("not JSON");
        assert!(!error.contains("secret-value"), "{error}");
    }
}
