//! JSON pointers (RFC 6901): parse into reference tokens, look up, insert.
//!
//! Shared by contracts (projection to allowed fields) and adapters (mapping a
//! backend's document to a record); it knows neither.

use serde_json::{Map, Value};

/// Splits a JSON pointer into unescaped tokens; `None` if it is not a pointer.
pub fn pointer_tokens(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    rest.split('/')
        .map(|token| {
            // "~" must be followed by 0 or 1.
            let mut out = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return None,
                    }
                } else {
                    out.push(c);
                }
            }
            Some(out)
        })
        .collect()
}

/// Inserts `value` at `tokens` in `target`, creating objects on the way.
/// A non-object in the way is replaced, so insertion always succeeds.
pub fn insert_at(target: &mut Value, tokens: &[String], value: Value) {
    let Some((last, parents)) = tokens.split_last() else {
        *target = value;
        return;
    };
    let mut current = target;
    for token in parents {
        current = as_object(current)
            .entry(token.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    as_object(current).insert(last.clone(), value);
}

fn as_object(value: &mut Value) -> &mut Map<String, Value> {
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    // Cannot fail: the value was made an object on the line above.
    value.as_object_mut().expect("value is an object")
}

/// The value at `tokens` in `value`, through objects and arrays.
pub fn lookup<'v>(mut value: &'v Value, tokens: &[String]) -> Option<&'v Value> {
    for token in tokens {
        value = match value {
            Value::Object(map) => map.get(token)?,
            Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}
