//! Adapter files: `toml::from_str::<RawAdapter>` then
//! `datagate::adapters::AdapterSpec::validate`. Never panics; a refusal names
//! at least one problem; an accepted adapter has an operation.
#![no_main]

use datagate::adapters::{AdapterSpec, RawAdapter};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(raw) = toml::from_str::<RawAdapter>(text) else {
        return;
    };
    match AdapterSpec::validate(raw, Path::new("fuzz.toml")) {
        Ok(spec) => assert!(!spec.operations.is_empty()),
        Err(errors) => assert!(!errors.is_empty(), "a refusal names a problem"),
    }
});
