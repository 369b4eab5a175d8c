//! Key and identity files as the `openssl` tool writes them, made at test time.

use super::jwe_common as common;

use common::openssl;
use datagate::keystore::{Certificate, Identity, KeyKind, PrivateKey, PublicKey};
use std::path::{Path, PathBuf};

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// An EC P-256 key in every PEM form, an RSA key, certificates, PKCS#12 files.
fn make() -> Files {
    let f = Files {
        dir: tempfile::tempdir().expect("tempdir"),
    };
    let d = f.dir();
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "pkcs8.pem",
        ],
    );
    openssl(d, &["ec", "-in", "pkcs8.pem", "-out", "sec1.pem"]);
    openssl(
        d,
        &[
            "pkcs8",
            "-topk8",
            "-in",
            "pkcs8.pem",
            "-out",
            "encrypted.pem",
            "-passout",
            "pass:s3cret",
        ],
    );
    openssl(
        d,
        &[
            "ec",
            "-in",
            "pkcs8.pem",
            "-aes256",
            "-passout",
            "pass:s3cret",
            "-out",
            "sec1-encrypted.pem",
        ],
    );
    openssl(d, &["genrsa", "-traditional", "-out", "pkcs1.pem", "2048"]);
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "pkcs8.pem",
            "-subj",
            "/CN=gateway.example",
            "-days",
            "30",
            "-out",
            "cert.pem",
        ],
    );
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "ca-key.pem",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca-key.pem",
            "-subj",
            "/CN=CA",
            "-days",
            "30",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        d,
        &[
            "pkcs12",
            "-export",
            "-inkey",
            "pkcs8.pem",
            "-in",
            "cert.pem",
            "-certfile",
            "ca.pem",
            "-passout",
            "pass:pw",
            "-out",
            "modern.p12",
        ],
    );
    openssl(
        d,
        &[
            "pkcs12",
            "-export",
            "-legacy",
            "-inkey",
            "pkcs8.pem",
            "-in",
            "cert.pem",
            "-certfile",
            "ca.pem",
            "-passout",
            "pass:pw",
            "-out",
            "legacy.p12",
        ],
    );
    f
}

#[test]
fn every_pem_form_of_one_key_loads_to_the_same_key() {
    let f = make();
    let reference = PrivateKey::load(f.path("pkcs8.pem"), None).expect("PKCS#8");
    assert_eq!(reference.kind(), KeyKind::EcP256);
    for (file, password) in [
        ("sec1.pem", None),
        ("encrypted.pem", Some("s3cret")),
        ("sec1-encrypted.pem", Some("s3cret")),
        ("modern.p12", Some("pw")),
    ] {
        let key =
            PrivateKey::load(f.path(file), password).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            key.public_key_spki_der(),
            reference.public_key_spki_der(),
            "{file}"
        );
        assert_eq!(key.kind(), KeyKind::EcP256);
    }
    let rsa = PrivateKey::load(f.path("pkcs1.pem"), None).expect("PKCS#1");
    assert_eq!(rsa.kind(), KeyKind::Rsa { bits: 2048 });
    // The PKCS#8 export is what aws-lc-rs signs with.
    let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &reference.to_pkcs8_der(),
    )
    .expect("aws-lc-rs reads the PKCS#8");
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let signature = pair.sign(&rng, b"message").expect("signs");
    let public =
        PublicKey::from_pem(openssl(f.dir(), &["pkey", "-in", "pkcs8.pem", "-pubout"]).as_bytes())
            .expect("PUBLIC KEY");
    assert_eq!(public.spki_der(), reference.public_key_spki_der());
    assert!(
        openssl::sign::Verifier::new(
            openssl::hash::MessageDigest::sha256(),
            &openssl::pkey::PKey::public_key_from_der(public.spki_der()).expect("spki")
        )
        .and_then(|mut v| v.verify_oneshot(signature.as_ref(), b"message"))
        .expect("verifies")
    );
    let rsa_pair = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&rsa.to_pkcs8_der())
        .expect("aws-lc-rs reads RSA PKCS#8");
    assert_eq!(rsa_pair.public_modulus_len(), 256);
}

#[test]
fn passwords_required_and_wrong() {
    let f = make();
    for file in [
        "encrypted.pem",
        "sec1-encrypted.pem",
        "modern.p12",
        "legacy.p12",
    ] {
        let err = PrivateKey::load(f.path(file), None).expect_err(file);
        assert_eq!(err.code(), "key.password_required", "{file}: {err}");
        let err = PrivateKey::load(f.path(file), Some("wrong")).expect_err(file);
        assert_eq!(err.code(), "key.password_wrong", "{file}: {err}");
        assert!(
            !err.to_string().contains("wrong\""),
            "the password is not echoed"
        );
        let err = Identity::load(f.path(file), Some("nul\0byte")).expect_err(file);
        assert!(
            ["key.password_wrong", "key.unreadable"].contains(&err.code()),
            "{file}: {err}"
        );
    }
}

#[test]
fn pkcs12_identities_modern_and_legacy() {
    let f = make();
    let cert =
        Certificate::from_pem(&std::fs::read(f.path("cert.pem")).expect("read")).expect("cert");
    let ca = Certificate::from_pem(&std::fs::read(f.path("ca.pem")).expect("read")).expect("ca");
    for file in ["modern.p12", "legacy.p12"] {
        let id = Identity::load(f.path(file), Some("pw")).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(id.certificate(), &cert, "{file}");
        assert_eq!(id.chain(), std::slice::from_ref(&ca), "{file}");
        assert_eq!(id.key().public_key_spki_der(), cert.public_key_spki_der());
    }
    // Detection is by content: the same bytes under another name still load.
    std::fs::copy(f.path("legacy.p12"), f.path("identity.bin")).expect("copy");
    assert!(Identity::load(f.path("identity.bin"), Some("pw")).is_ok());
}

#[test]
fn pem_identity_with_chain_in_any_order() {
    let f = make();
    let key = std::fs::read_to_string(f.path("pkcs8.pem")).expect("read");
    let cert = std::fs::read_to_string(f.path("cert.pem")).expect("read");
    let ca = std::fs::read_to_string(f.path("ca.pem")).expect("read");
    std::fs::write(f.path("bundle.pem"), format!("{ca}{key}{cert}")).expect("write");
    let id = Identity::load(f.path("bundle.pem"), None).expect("bundle");
    assert_eq!(
        id.certificate().der(),
        Certificate::from_pem(cert.as_bytes()).expect("c").der()
    );
    assert_eq!(id.chain().len(), 1);
}

#[test]
fn a_key_that_does_not_match_its_certificate_is_mismatch() {
    let f = make();
    let other = std::fs::read_to_string(f.path("ca-key.pem")).expect("read");
    let cert = std::fs::read_to_string(f.path("cert.pem")).expect("read");
    std::fs::write(f.path("mismatch.pem"), format!("{other}{cert}")).expect("write");
    let err = Identity::load(f.path("mismatch.pem"), None).expect_err("mismatch");
    assert_eq!(err.code(), "key.mismatch", "{err}");
    // A PKCS#12 whose only certificate belongs to another key.
    openssl(
        f.dir(),
        &[
            "pkcs12",
            "-export",
            "-nokeys",
            "-in",
            "cert.pem",
            "-passout",
            "pass:pw",
            "-out",
            "certs-only.p12",
        ],
    );
    let err = Identity::load(f.path("certs-only.p12"), Some("pw")).expect_err("no key");
    assert_eq!(err.code(), "key.unreadable", "{err}");
}

#[test]
fn certificates_fingerprint_and_validity() {
    let f = make();
    let cert =
        Certificate::from_pem(&std::fs::read(f.path("cert.pem")).expect("read")).expect("cert");
    let out = openssl(
        f.dir(),
        &[
            "x509",
            "-in",
            "cert.pem",
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    );
    let expected: String = out
        .trim()
        .rsplit('=')
        .next()
        .expect("value")
        .replace(':', "")
        .to_lowercase();
    assert_eq!(cert.fingerprint_hex(), expected);
    assert_eq!(cert.fingerprint_hex().len(), 64);
    let der = Certificate::from_der(cert.der()).expect("der");
    assert_eq!(der, cert);
    let not_before = cert.not_before_unix().expect("nb");
    let not_after = cert.not_after_unix().expect("na");
    assert_eq!(not_after - not_before, 30 * 86_400);
    assert!(not_before > 1_700_000_000);
    let public = PublicKey::from_certificate(&cert).expect("public");
    assert_eq!(public.kind(), KeyKind::EcP256);
}

#[test]
fn unreadable_and_unsupported_inputs() {
    let f = make();
    std::fs::write(f.path("garbage"), b"\x30\x03\x02\x01\x00 not a key").expect("write");
    assert_eq!(
        PrivateKey::load(f.path("garbage"), None)
            .expect_err("garbage")
            .code(),
        "key.unreadable"
    );
    assert_eq!(
        PrivateKey::load(f.path("missing"), None)
            .expect_err("missing")
            .code(),
        "key.unreadable"
    );
    openssl(
        f.dir(),
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:secp256k1",
            "-out",
            "k1.pem",
        ],
    );
    assert_eq!(
        PrivateKey::load(f.path("k1.pem"), None)
            .expect_err("k1")
            .code(),
        "key.unsupported"
    );
    std::fs::write(f.path("big"), vec![b'A'; 2 * 1024 * 1024]).expect("write");
    assert_eq!(
        PrivateKey::load(f.path("big"), None)
            .expect_err("big")
            .code(),
        "key.unreadable"
    );
}

#[test]
fn jwk_round_trip_of_public_keys() {
    let f = make();
    for file in ["pkcs8.pem", "pkcs1.pem"] {
        let key = PrivateKey::load(f.path(file), None).expect("key");
        let public = key.public_key().expect("public");
        let jwk = public.to_jwk(None).expect("jwk");
        assert_eq!(PublicKey::from_jwk(&jwk).expect("back"), public, "{file}");
    }
    // A point off the curve, private members in a public JWK.
    let mut jwk = PrivateKey::load(f.path("pkcs8.pem"), None)
        .expect("k")
        .public_key()
        .expect("p")
        .to_jwk(None)
        .expect("jwk");
    jwk["y"] = jwk["x"].clone();
    assert_eq!(
        PublicKey::from_jwk(&jwk).expect_err("off curve").code(),
        "key.unreadable"
    );
    jwk["d"] = "AAAA".into();
    assert!(PublicKey::from_jwk(&jwk).is_err());
}
