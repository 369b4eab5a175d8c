//! `datagate::protocol::parse_purpose`: the `X-Purpose` header.
//! Accepts exactly 1-64 characters of `[A-Za-z0-9._-]`, unchanged, once
//! surrounding whitespace (not part of a field value, RFC 9110 §5.5) is dropped.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use datagate::protocol::parse_purpose;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(value) = common::optional_header(data) else {
        return;
    };
    let result = parse_purpose(value.as_ref());
    match value {
        None => assert!(result.expect("absent is fine").is_none()),
        Some(value) => {
            let bytes = value.as_bytes().trim_ascii();
            let valid = (1..=64).contains(&bytes.len())
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b));
            match result {
                Ok(purpose) => {
                    assert!(valid);
                    assert_eq!(purpose.expect("present").as_str().as_bytes(), bytes);
                }
                Err(_) => assert!(!valid),
            }
        }
    }
});
