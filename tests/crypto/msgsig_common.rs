//! Shared helpers of the integration tests: the RFC 9421 vectors on disk.
#![allow(dead_code)]

use std::path::PathBuf;

use datagate::msgsig::{SignatureError, SigningKey, VerifyingKey};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

pub fn rfc(name: &str) -> String {
    let path = vectors().join("rfc9421").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn signing_key(name: &str) -> Result<SigningKey, SignatureError> {
    SigningKey::from_pem(&rfc(&format!("{name}.pem")), None)
}

pub fn verifying_key(name: &str) -> Result<VerifyingKey, SignatureError> {
    VerifyingKey::from_pem(&rfc(&format!("{name}.pub.pem")), None)
}
