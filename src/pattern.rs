//! Operation patterns: `GET /{citizen_id}`, `POST /search`.
//!
//! A pattern is a method and a path of literal segments and `{name}` segments
//! that each match one non-empty path segment. Contracts use patterns to say
//! which operations a consumer may call; adapters use them to bind a request
//! to a backend operation and name its parameters.

use axum::http::Method;
use std::collections::BTreeMap;

/// A compiled operation pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationPattern {
    method: Method,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

impl OperationPattern {
    /// Parses a method and a path pattern; the error names the problem, not the input.
    pub fn parse(method: &str, path: &str) -> Result<Self, String> {
        let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| "method must be an HTTP method such as GET or POST".to_owned())?;
        let rest = path
            .strip_prefix('/')
            .ok_or_else(|| "path pattern must start with '/'".to_owned())?;
        let mut segments = Vec::new();
        let mut names = std::collections::HashSet::new();
        for part in rest.split('/').filter(|s| !s.is_empty()) {
            if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                let ok =
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok {
                    return Err("parameter names are letters, digits and '_'".into());
                }
                if !names.insert(name.to_owned()) {
                    return Err("a parameter name is used twice".into());
                }
                segments.push(Segment::Param(name.to_owned()));
            } else if part.contains(['{', '}']) {
                return Err("a segment is either literal or a whole {parameter}".into());
            } else {
                segments.push(Segment::Literal(part.to_owned()));
            }
        }
        Ok(OperationPattern { method, segments })
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Names of the `{parameters}`, in order.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Matches a request; on success returns the named parameters (percent-decoded).
    pub fn matches(&self, method: &Method, path: &str) -> Option<BTreeMap<String, String>> {
        if method != self.method {
            return None;
        }
        // Matched as the path is split, without collecting its parts (issue 12).
        let mut parts = crate::base::path::segments(path).filter(|s| !s.is_empty());
        let mut params = BTreeMap::new();
        for segment in &self.segments {
            let part = parts.next()?;
            match segment {
                Segment::Literal(text) if text == part => {}
                Segment::Literal(_) => return None,
                Segment::Param(name) => {
                    params.insert(name.clone(), percent_decode(part)?);
                }
            }
        }
        if parts.next().is_some() {
            return None;
        }
        Some(params)
    }

    /// Fills a `{name}` template with percent-encoded parameters.
    pub fn fill(template: &str, params: &BTreeMap<String, String>) -> Option<String> {
        let mut out = String::with_capacity(template.len() + 16);
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}')? + start;
            let value = params.get(&rest[start + 1..end])?;
            percent_encode_into(value, &mut out);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }
}

impl std::fmt::Display for OperationPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ", self.method)?;
        if self.segments.is_empty() {
            return write!(f, "/");
        }
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => write!(f, "/{text}")?,
                Segment::Param(name) => write!(f, "/{{{name}}}")?,
            }
        }
        Ok(())
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            // Two hex digits exactly: `u8::from_str_radix` alone would take `+F`.
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn percent_encode_into(text: &str, out: &mut String) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_literals_and_params() {
        let p = OperationPattern::parse("get", "/{citizen_id}").expect("valid");
        let params = p.matches(&Method::GET, "/001085012345").expect("match");
        assert_eq!(params["citizen_id"], "001085012345");
        assert!(p.matches(&Method::POST, "/001085012345").is_none());
        assert!(p.matches(&Method::GET, "/").is_none());
        assert!(p.matches(&Method::GET, "/a/b").is_none());
        let search = OperationPattern::parse("POST", "/search").expect("valid");
        assert!(search.matches(&Method::POST, "/search").is_some());
        assert!(search.matches(&Method::POST, "/other").is_none());
        assert_eq!(search.to_string(), "POST /search");
    }

    #[test]
    fn decodes_and_encodes_parameters() {
        let p = OperationPattern::parse("GET", "/{name}").expect("valid");
        assert_eq!(
            p.matches(&Method::GET, "/a%20b").expect("match")["name"],
            "a b"
        );
        assert!(p.matches(&Method::GET, "/%zz").is_none());
        let mut params = BTreeMap::new();
        params.insert("id".to_owned(), "a/b c".to_owned());
        assert_eq!(
            OperationPattern::fill("/x/{id}", &params).as_deref(),
            Some("/x/a%2Fb%20c")
        );
        assert_eq!(OperationPattern::fill("/x/{missing}", &params), None);
    }

    #[test]
    fn rejects_bad_patterns() {
        assert!(OperationPattern::parse("GET", "no-slash").is_err());
        assert!(OperationPattern::parse("GET", "/{a}/{a}").is_err());
        assert!(OperationPattern::parse("GET", "/x{a}").is_err());
        assert!(OperationPattern::parse("G ET", "/").is_err());
    }
}
