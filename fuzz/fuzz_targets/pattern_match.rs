//! `datagate::pattern::OperationPattern::parse` and `matches` (percent-decodes
//! path parameters). Input: `method \n pattern \n request method \n request path`.
//! A parsed pattern prints and re-parses to itself; a match names exactly the
//! pattern's parameters; filling the pattern with the matched values matches
//! again with the same values.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use datagate::pattern::OperationPattern;
use http::Method;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeSet;

fuzz_target!(|data: &[u8]| {
    let parts = common::split_parts(data, 4);
    let texts: Vec<&str> = parts
        .iter()
        .filter_map(|part| std::str::from_utf8(part).ok())
        .collect();
    let [method, path, request_method, request_path] = texts[..] else {
        return;
    };
    let Ok(pattern) = OperationPattern::parse(method, path) else {
        return;
    };
    let shown = pattern.to_string();
    let (shown_method, shown_path) = shown.split_once(' ').expect("METHOD /path");
    assert_eq!(
        OperationPattern::parse(shown_method, shown_path).expect("re-parses"),
        pattern
    );
    let Ok(request_method) = Method::from_bytes(request_method.as_bytes()) else {
        return;
    };
    if let Some(params) = pattern.matches(&request_method, request_path) {
        assert_eq!(&request_method, pattern.method());
        let names: BTreeSet<&str> = pattern.param_names().collect();
        assert_eq!(names, params.keys().map(String::as_str).collect());
        let filled = OperationPattern::fill(shown_path, &params).expect("every name is given");
        assert_eq!(
            pattern
                .matches(&request_method, &filled)
                .expect("filled path matches"),
            params
        );
    }
});
