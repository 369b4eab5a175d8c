//! `datagate::base::json_pointer::pointer_tokens` (RFC 6901).
//! An accepted pointer is the escaping of its tokens; escaping any tokens
//! (here: the input split at NUL bytes) gives a pointer that parses back to them.
#![no_main]

use datagate::base::json_pointer::pointer_tokens;
use libfuzzer_sys::fuzz_target;

fn escape(tokens: &[String]) -> String {
    tokens
        .iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(tokens) = pointer_tokens(text) {
        assert_eq!(escape(&tokens), text);
    }
    if !text.is_empty() {
        let tokens: Vec<String> = text.split('\0').map(str::to_owned).collect();
        assert_eq!(pointer_tokens(&escape(&tokens)), Some(tokens));
    }
});
