//! `datagate::protocol::parse_target`: the `/r1/...` request path.
//! Never panics; an accepted path is its own one canonical spelling.
#![no_main]

use datagate::error::ErrorCode;
use datagate::protocol::parse_target;
use libfuzzer_sys::fuzz_target;

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
            for (i, &b) in bytes.iter().enumerate() {
                if b == b'%' {
                    let hex = &bytes[i + 1..i + 3];
                    assert!(
                        hex.iter()
                            .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h))
                    );
                }
            }
        }
        Err(error) => assert!(matches!(
            error.code(),
            ErrorCode::RequestPathInvalid | ErrorCode::RequestRouteNotFound
        )),
    }
});
