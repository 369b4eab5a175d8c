//! Contract files: `yaml_serde::from_str::<RawContract>` then
//! `datagate::contract::compile`. Never panics; a refusal names at least one problem.
//!
//! Schema files are read relative to the repository's contracts/ folder; a
//! `request_schema`/`response_schema` naming any other file (absolute, `..`,
//! a device such as /dev/zero) is skipped, since reading it would test the
//! machine's files, not the parser.
#![no_main]

use datagate::contract::{RawContract, SchemaSource, compile};
use libfuzzer_sys::fuzz_target;
use std::path::{Component, Path};

const CONTRACTS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../contracts");

fn confined(source: &Option<SchemaSource>) -> bool {
    match source {
        Some(SchemaSource::File(relative)) => Path::new(relative)
            .components()
            .all(|c| matches!(c, Component::Normal(_))),
        _ => true,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(raw) = yaml_serde::from_str::<RawContract>(text) else {
        return;
    };
    if !confined(&raw.request_schema) || !confined(&raw.response_schema) {
        return;
    }
    if let Err(errors) = compile(&raw, Path::new("fuzz.yaml"), Path::new(CONTRACTS_DIR)) {
        assert!(!errors.is_empty(), "a refusal names a problem");
    }
});
