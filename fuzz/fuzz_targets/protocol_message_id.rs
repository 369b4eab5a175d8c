//! `datagate::protocol::message_id`: the `X-Road-Id` header.
//! Accepts exactly 1-128 characters of `[A-Za-z0-9._:-]`, unchanged, once
//! surrounding whitespace (not part of a field value, RFC 9110 §5.5) is dropped.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use datagate::protocol::message_id;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(value) = common::optional_header(data) else {
        return;
    };
    let result = message_id(value.as_ref());
    match value {
        None => assert_eq!(result.expect("generated").len(), 36),
        Some(value) => {
            let bytes = value.as_bytes().trim_ascii();
            let valid = (1..=128).contains(&bytes.len())
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(b));
            match result {
                Ok(id) => {
                    assert!(valid);
                    assert_eq!(id.as_bytes(), bytes);
                }
                Err(_) => assert!(!valid),
            }
        }
    }
});
