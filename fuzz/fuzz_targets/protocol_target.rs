//! `datagate::protocol::parse_target`: the `/r1/...` request path.
//! Never panics; an accepted path is its own one canonical spelling: only
//! unreserved characters plain, every other byte an uppercase escape, decoding
//! to UTF-8 without separators, controls or bidirectional formatting characters.
#![no_main]

use datagate::error::ErrorCode;
use datagate::protocol::parse_target;
use libfuzzer_sys::fuzz_target;

/// Decodes an accepted segment (its escapes are well-formed); panics if not UTF-8.
fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ASCII");
            out.push(u8::from_str_radix(hex, 16).expect("hex"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("an accepted segment decodes to UTF-8")
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    match parse_target(path) {
        Ok(target) => {
            assert!(target.path.starts_with('/'));
            let canonical = if target.path == "/" {
                format!("/r1/{}", target.service)
            } else {
                format!("/r1/{}{}", target.service, target.path)
            };
            // Only the canonical spelling is accepted, so it is the input itself.
            assert_eq!(canonical, path);
            assert_eq!(parse_target(&canonical).expect("re-parses"), target);
            assert!(!canonical.contains("//"));
            for segment in canonical.split('/').skip(1) {
                assert!(segment != "." && segment != "..");
            }
            let bytes = canonical.as_bytes();
            assert!(
                bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~/%".contains(b))
            );
            for (i, &b) in bytes.iter().enumerate() {
                if b == b'%' {
                    let hex = &bytes[i + 1..i + 3];
                    assert!(
                        hex.iter()
                            .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h))
                    );
                }
            }
            for segment in target
                .path
                .split('/')
                .skip(1)
                .filter(|_| target.path != "/")
            {
                let decoded = decode(segment);
                assert!(!decoded.is_empty());
                assert!(
                    !decoded.chars().any(|c| c == '/'
                        || c == '\\'
                        || c.is_control()
                        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'))
                );
            }
        }
        Err(error) => assert!(matches!(
            error.code(),
            ErrorCode::RequestPathInvalid | ErrorCode::RequestRouteNotFound
        )),
    }
});
