//! The legacy provider is loaded lazily: only when a legacy PKCS#12 needs it.
//! (Its own test binary, so that no other test has loaded it first.)

#[path = "../crypto/jwe_common.rs"]
mod common;

use datagate::keystore::{Identity, KeyKind, legacy_provider_loaded};

#[test]
fn legacy_provider_is_loaded_only_for_a_legacy_pkcs12() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    common::openssl(d, &["genrsa", "-out", "key.pem", "2048"]);
    common::openssl(
        d,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "key.pem",
            "-subj",
            "/CN=legacy",
            "-days",
            "1",
            "-out",
            "cert.pem",
        ],
    );
    common::openssl(
        d,
        &[
            "pkcs12",
            "-export",
            "-inkey",
            "key.pem",
            "-in",
            "cert.pem",
            "-passout",
            "pass:pw",
            "-out",
            "modern.p12",
        ],
    );
    // RC2-40 for the certificates, 3DES for the key, SHA-1 MAC: what old tools write.
    common::openssl(
        d,
        &[
            "pkcs12",
            "-export",
            "-provider",
            "legacy",
            "-provider",
            "default",
            "-keypbe",
            "PBE-SHA1-3DES",
            "-certpbe",
            "PBE-SHA1-RC2-40",
            "-macalg",
            "sha1",
            "-inkey",
            "key.pem",
            "-in",
            "cert.pem",
            "-passout",
            "pass:pw",
            "-out",
            "legacy.p12",
        ],
    );

    assert!(!legacy_provider_loaded());
    let modern = Identity::load(d.join("modern.p12"), Some("pw")).expect("modern");
    assert!(
        !legacy_provider_loaded(),
        "a modern PKCS#12 does not load it"
    );
    // A wrong password on a legacy file is a password error, found by the MAC
    // before any legacy cipher is needed.
    assert_eq!(
        Identity::load(d.join("legacy.p12"), Some("nope"))
            .expect_err("wrong")
            .code(),
        "key.password_wrong"
    );
    assert!(!legacy_provider_loaded());
    let legacy = Identity::load(d.join("legacy.p12"), Some("pw")).expect("legacy");
    assert!(legacy_provider_loaded());
    assert_eq!(legacy.key().kind(), KeyKind::Rsa { bits: 2048 });
    assert_eq!(legacy.certificate(), modern.certificate());
    // Modern files still load with both providers present.
    assert!(Identity::load(d.join("modern.p12"), Some("pw")).is_ok());
}
