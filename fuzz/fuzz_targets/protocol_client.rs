//! `datagate::protocol::parse_client`: the `X-Road-Client` header.
//! Never panics; an accepted client id prints back as the header's text
//! without its surrounding whitespace (RFC 9110 §5.5).
#![no_main]

#[path = "common/mod.rs"]
mod common;

use datagate::error::ErrorCode;
use datagate::protocol::parse_client;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(value) = common::optional_header(data) else {
        return;
    };
    match parse_client(value.as_ref()) {
        Ok(client) => {
            let bytes = value.as_ref().expect("present").as_bytes().trim_ascii();
            assert_eq!(client.to_string().as_bytes(), bytes);
        }
        Err(error) => {
            let expected = if value.is_none() {
                ErrorCode::RequestClientMissing
            } else {
                ErrorCode::RequestClientInvalid
            };
            assert_eq!(error.code(), expected);
        }
    }
});
