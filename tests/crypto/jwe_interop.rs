//! Interoperability with an independent JWE implementation (Python jwcrypto),
//! both directions, for ECDH-ES+A256KW and RSA-OAEP-256 with A256GCM.
//!
//! Skipped with a notice when jwcrypto is not installed;
//! `DATAGATE_REQUIRE_INTEROP=1` (set in CI) turns the skip into a failure.

use super::jwe_common as common;

use datagate::jwe::{ContentEncryption, KeyManagement, Policy, decrypt, encrypt};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/jwe_interop.py")
}

/// Whether jwcrypto can be used; panics instead of skipping when required.
fn jwcrypto_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import jwcrypto"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let required = std::env::var("DATAGATE_REQUIRE_INTEROP").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "DATAGATE_REQUIRE_INTEROP=1 but python3 with jwcrypto is not available (pip install jwcrypto)"
        );
        eprintln!(
            "NOTICE: interop test skipped: python3 jwcrypto is not installed (pip install jwcrypto)"
        );
    }
    ok
}

fn run(mode: &str, jwk_file: &Path, input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("python3")
        .arg(script())
        .arg(mode)
        .arg(jwk_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    let out = child.wait_with_output().expect("script ends");
    assert!(
        out.status.success(),
        "jwe_interop.py {mode}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn both_directions_with_jwcrypto() {
    if !jwcrypto_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let plaintext = "Hồ sơ công dân: {\"id\":\"001085012345\"} – interop".as_bytes();
    for (name, generated, alg) in [
        ("ec", common::ec_p256(), KeyManagement::EcdhEsA256kw),
        ("rsa", common::rsa(2048), KeyManagement::RsaOaep256),
    ] {
        let private_file = dir.path().join(format!("{name}.private.json"));
        std::fs::write(&private_file, generated.private_jwk.to_string()).expect("write");
        let public = generated.key.public_key().expect("public");
        let public_file = dir.path().join(format!("{name}.public.json"));
        std::fs::write(
            &public_file,
            public
                .to_jwk(Some("kid-from-jwk"))
                .expect("jwk")
                .to_string(),
        )
        .expect("write");

        // Ours → jwcrypto.
        let token = encrypt(
            plaintext,
            &public,
            Some("our-kid"),
            Some("application/json"),
        )
        .expect("encrypts");
        assert_eq!(
            run("decrypt", &private_file, token.as_bytes()),
            plaintext,
            "{name}: jwcrypto decrypts ours"
        );

        // jwcrypto → ours.
        let theirs = String::from_utf8(run("encrypt", &public_file, plaintext)).expect("ascii");
        let out =
            decrypt(&theirs, &generated.key, &Policy::production()).expect("we decrypt jwcrypto's");
        assert_eq!(out.plaintext, plaintext, "{name}");
        assert_eq!(out.header.alg, alg);
        assert_eq!(out.header.enc, ContentEncryption::A256gcm);
        assert_eq!(out.header.kid.as_deref(), Some("kid-from-jwk"));
    }
}
