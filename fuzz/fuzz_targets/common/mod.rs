//! Helpers shared by the fuzz targets (included with `#[path]`; not a target).
#![allow(dead_code)]

use http::HeaderValue;

/// Turns fuzz bytes into an optional header value the way a request carries
/// one: the first byte chooses absent (even) or present (odd); the rest is the
/// value. `None` when the bytes cannot be a header value at all (hyper
/// refuses those before any parser of ours sees them).
pub fn optional_header(data: &[u8]) -> Option<Option<HeaderValue>> {
    let (&choice, rest) = data.split_first()?;
    if choice % 2 == 0 {
        return Some(None);
    }
    HeaderValue::from_bytes(rest).ok().map(Some)
}

/// Splits fuzz bytes into `n` parts at the first `n - 1` newlines (missing parts are empty).
pub fn split_parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut parts: Vec<&[u8]> = data.splitn(n, |&b| b == b'\n').collect();
    while parts.len() < n {
        parts.push(&[]);
    }
    parts
}
