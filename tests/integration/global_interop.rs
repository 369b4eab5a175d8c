//! Interoperability of the global configuration's JWS with an independent
//! implementation (Python `jwcrypto`, `tests/interop/globalconf_interop.py`), both
//! directions, ES256 and RS256.
//!
//! Skipped with a printed notice where `jwcrypto` is not installed;
//! `DATAGATE_REQUIRE_INTEROP=1` turns the skip into a failure (CI sets it).

use super::global::{Keys, NOW, document};
use crate::support::python_has;
use datagate::trust::global::{Anchor, SigningAlg, Verification, Verifier, sign};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/globalconf_interop.py")
}

/// Whether the independent implementation is here; panics if it must be and is not.
fn jwcrypto_available() -> bool {
    python_has("jwcrypto", "pip install jwcrypto")
}

/// Runs the script in `mode` with `pem` and `input` on stdin.
fn run(mode: &str, pem: &PathBuf, input: &[u8]) -> Output {
    let mut child = Command::new("python3")
        .arg(script())
        .arg(mode)
        .arg(pem)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("script finishes")
}

const CASES: [(&str, &str, SigningAlg); 2] = [
    ("ec.pem", "ec.pub", SigningAlg::Es256),
    ("rsa.pem", "rsa.pub", SigningAlg::Rs256),
];

/// 003 Điều 3 khoản 3: what we sign, an independent implementation verifies (and it
/// refuses a tampered copy, so its "yes" means something).
#[test]
fn jwcrypto_verifies_what_we_sign() {
    if !jwcrypto_available() {
        return;
    }
    let keys = Keys::generate();
    let payload = document(&keys, 7).to_string();
    for (private, public, alg) in CASES {
        let jws = sign(payload.as_bytes(), &keys.read(private), alg).expect("sign");
        let out = run("verify", &keys.path(public), jws.as_bytes());
        assert!(
            out.status.success(),
            "{alg:?}: jwcrypto refused: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, payload.as_bytes(), "{alg:?}");

        // Flip one bit of the signature's first byte.
        let (head, signature) = jws.rsplit_once('.').expect("three parts");
        let mut chars: Vec<char> = signature.chars().collect();
        chars[0] = if chars[0] == 'A' { 'B' } else { 'A' };
        let tampered = format!("{head}.{}", chars.into_iter().collect::<String>());
        let out = run("verify", &keys.path(public), tampered.as_bytes());
        assert_eq!(
            out.status.code(),
            Some(1),
            "{alg:?}: tampered copy accepted"
        );
    }
}

/// 003 Điều 3 khoản 3: what an independent implementation signs, we verify.
#[test]
fn we_verify_what_jwcrypto_signs() {
    if !jwcrypto_available() {
        return;
    }
    let keys = Keys::generate();
    let payload = document(&keys, 7).to_string();
    for (private, public, alg) in CASES {
        let out = run("sign", &keys.path(private), payload.as_bytes());
        assert!(
            out.status.success(),
            "{alg:?}: jwcrypto could not sign: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let verifier = Verifier::new(Anchor::from_pem(&keys.read(public)).expect("anchor"), "VN");
        match verifier.verify(&out.stdout, None, NOW) {
            Ok(Verification::Accepted(accepted)) => {
                assert_eq!(accepted.config.raw_json(), payload.as_bytes(), "{alg:?}");
                assert_eq!(accepted.config.version(), 7);
            }
            other => panic!("{alg:?}: expected accepted, got {other:?}"),
        }
        // Verified against the other key pair's anchor, it is refused.
        let other = if alg == SigningAlg::Es256 {
            "rsa.pub"
        } else {
            "ec.pub"
        };
        let verifier = Verifier::new(Anchor::from_pem(&keys.read(other)).expect("anchor"), "VN");
        assert!(verifier.verify(&out.stdout, None, NOW).is_err());
    }
}
