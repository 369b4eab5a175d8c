//! `datagate::protocol::parse_query` and `canonical_query`.
//! Input: `declared names, comma-separated \n query string`.
//! Only declared names pass, each once, sorted, without control or bidirectional
//! formatting characters or U+FFFD (bytes that were not UTF-8) in names and values;
//! the canonical query parses back to the same pairs.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use datagate::error::ErrorCode;
use datagate::protocol::{MAX_QUERY_BYTES, canonical_query, parse_query};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parts = common::split_parts(data, 2);
    let (Ok(names), Ok(query)) = (std::str::from_utf8(parts[0]), std::str::from_utf8(parts[1]))
    else {
        return;
    };
    let declared: Vec<&str> = names.split(',').collect();
    let is_declared = |name: &str| declared.contains(&name);
    // No newline at all: the request has no query string.
    let query = data.contains(&b'\n').then_some(query);
    match parse_query(query, is_declared) {
        Ok(pairs) => {
            assert!(query.is_none_or(|q| q.len() <= MAX_QUERY_BYTES));
            for window in pairs.windows(2) {
                assert!(window[0].0 < window[1].0, "sorted, each name once");
            }
            for (name, value) in &pairs {
                assert!(is_declared(name));
                assert!(!name.chars().chain(value.chars()).any(|c| c.is_control()
                    || c == '\u{FFFD}'
                    || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')));
            }
            let canonical = canonical_query(&pairs);
            // Re-encoding can lengthen a query (`~` becomes `%7E`); past the limit
            // the canonical form is refused like any other long query.
            if canonical.len() <= MAX_QUERY_BYTES {
                assert_eq!(
                    parse_query(Some(&canonical), is_declared).expect("canonical re-parses"),
                    pairs
                );
            }
        }
        Err(error) => assert_eq!(error.code(), ErrorCode::RequestQueryNotAllowed),
    }
});
