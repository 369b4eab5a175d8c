//! `datagate::protocol::check_single_headers`: headers that must not repeat.
//! Input: records `[name selector][length][value bytes]`; a selector picks one of
//! the protocol's headers or another header. Refused exactly when one of
//! `SINGLE_HEADERS` appears more than once.
#![no_main]

use datagate::error::ErrorCode;
use datagate::protocol::{SINGLE_HEADERS, check_single_headers};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

const OTHERS: [HeaderName; 4] = [
    http::header::ACCEPT,
    http::header::HOST,
    HeaderName::from_static("x-road-represented-party"),
    HeaderName::from_static("x-road-request-hash"),
];

fuzz_target!(|data: &[u8]| {
    let single = SINGLE_HEADERS;
    let others = OTHERS;
    let mut headers = HeaderMap::new();
    let mut rest = data;
    while let [selector, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (value, tail) = tail.split_at(len);
        rest = tail;
        let index = usize::from(*selector) % (single.len() + others.len());
        let name = single
            .get(index)
            .unwrap_or_else(|| &others[index - single.len()])
            .clone();
        let Ok(value) = HeaderValue::from_bytes(value) else {
            continue;
        };
        headers.append(name, value);
    }
    let repeated = single
        .iter()
        .any(|name| headers.get_all(name).iter().count() > 1);
    match check_single_headers(&headers) {
        Ok(()) => assert!(!repeated),
        Err(error) => {
            assert!(repeated);
            assert_eq!(error.code(), ErrorCode::RequestHeaderDuplicated);
        }
    }
});
