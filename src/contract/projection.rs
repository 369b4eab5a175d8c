//! Projection of a response to the fields a contract allows.
//!
//! Allowed fields are JSON pointers (RFC 6901). The projected document holds
//! exactly the values found at those pointers, at the same pointers, and
//! nothing else: a field that is not listed never leaves the node. The empty
//! pointer `""` allows the whole document (pass-through contracts).

use crate::base::json_pointer::{insert_at, lookup, pointer_tokens};
use serde_json::{Map, Value};

/// A compiled list of allowed JSON pointers.
#[derive(Debug, Clone)]
pub struct Projection {
    /// Each pointer as unescaped reference tokens; empty = whole document.
    pointers: Vec<Vec<String>>,
}

impl Projection {
    /// Compiles pointers; returns the indexes of those that are not JSON pointers.
    pub fn compile(pointers: &[String]) -> Result<Self, Vec<usize>> {
        let mut compiled = Vec::with_capacity(pointers.len());
        let mut bad = Vec::new();
        for (index, pointer) in pointers.iter().enumerate() {
            match pointer_tokens(pointer) {
                Some(tokens) => compiled.push(tokens),
                None => bad.push(index),
            }
        }
        if bad.is_empty() {
            Ok(Projection { pointers: compiled })
        } else {
            Err(bad)
        }
    }

    /// Whether the projection passes the whole document through.
    pub fn is_whole_document(&self) -> bool {
        self.pointers.iter().any(Vec::is_empty)
    }

    /// Whether the value at `pointer` (RFC 6901) can survive the projection: an allowed
    /// pointer is `pointer` itself or one of its ancestors. `false` for a malformed pointer.
    pub fn allows(&self, pointer: &str) -> bool {
        let Some(tokens) = pointer_tokens(pointer) else {
            return false;
        };
        self.pointers
            .iter()
            .any(|allowed| tokens.starts_with(allowed))
    }

    /// Projects `document` to the allowed fields.
    pub fn apply(&self, document: Value) -> Value {
        if self.is_whole_document() {
            return document;
        }
        let mut out = Value::Object(Map::new());
        for tokens in &self.pointers {
            if let Some(found) = lookup(&document, tokens) {
                insert_at(&mut out, tokens, found.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn projection(pointers: &[&str]) -> Projection {
        Projection::compile(&pointers.iter().map(|p| p.to_string()).collect::<Vec<_>>())
            .expect("valid pointers")
    }

    /// 004 Điều 3, Điều 6 khoản 3: only the fields the contract allows leave the node.
    #[test]
    fn keeps_only_allowed_fields() {
        let doc = json!({"id": "1", "name": "A", "secret": "x",
                         "address": {"province": "HN", "street": "1 Lê Lợi"}});
        let out = projection(&["/id", "/address/province", "/missing"]).apply(doc);
        assert_eq!(out, json!({"id": "1", "address": {"province": "HN"}}));
    }

    #[test]
    fn handles_escapes_and_whole_document() {
        let doc = json!({"a/b": 1, "c~d": 2, "e": 3});
        assert_eq!(
            projection(&["/a~1b", "/c~0d"]).apply(doc.clone()),
            json!({"a/b": 1, "c~d": 2})
        );
        assert_eq!(projection(&[""]).apply(doc.clone()), doc);
    }

    #[test]
    fn rejects_non_pointers() {
        let bad =
            Projection::compile(&["id".into(), "/ok".into(), "/x~2".into()]).expect_err("invalid");
        assert_eq!(bad, vec![0, 2]);
    }

    /// 004 Điều 3, Điều 6 khoản 3: projection never adds a field.
    #[test]
    fn projection_never_adds_fields() {
        // Property: every leaf of the output exists at the same place in the input.
        let doc = json!({"a": {"b": [1, 2], "c": null}, "d": "x", "e": {"f": {"g": true}}});
        let cases: [&[&str]; 4] = [&["/a/b"], &["/a", "/d"], &["/e/f/g", "/zz/yy"], &["/a/b/1"]];
        for pointers in cases {
            let out = projection(pointers).apply(doc.clone());
            fn check(out: &Value, doc: &Value, at: &str) {
                match out {
                    Value::Object(map) => {
                        for (k, v) in map {
                            check(v, doc, &format!("{at}/{k}"));
                        }
                    }
                    leaf => assert_eq!(doc.pointer(at), Some(leaf), "{at}"),
                }
            }
            check(&out, &doc, "");
        }
    }
}
