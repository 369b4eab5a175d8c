//! RFC 7520 §5.2 and §5.4: the RFC's own compact serialisations, decrypted
//! with the RFC's private JWKs (tests/vectors/rfc7520/, taken from the RFC).

use datagate::jwe::{ContentEncryption, KeyManagement, Policy, decrypt, header};
use datagate::keystore::{KeyKind, PrivateKey};
use std::path::PathBuf;

fn vector(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/rfc7520")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn key(name: &str) -> PrivateKey {
    let jwk: serde_json::Value = serde_json::from_slice(&vector(name)).expect("JWK is JSON");
    PrivateKey::from_jwk(&jwk).expect("the RFC's key loads")
}

fn compact(name: &str) -> String {
    String::from_utf8(vector(name))
        .expect("ASCII")
        .trim()
        .to_owned()
}

#[test]
fn section_5_2_rsa_oaep_with_a256gcm_decrypts_to_the_rfc_plaintext() {
    let key = key("5.2.key.json");
    assert_eq!(key.kind(), KeyKind::Rsa { bits: 4096 });
    let out = decrypt(
        &compact("5.2.compact"),
        &key,
        &Policy::dangerous_rfc7520_examples(),
    )
    .expect("decrypts");
    assert_eq!(out.plaintext, vector("plaintext.txt"));
    assert_eq!(out.header.alg, KeyManagement::RsaOaep);
    assert_eq!(out.header.enc, ContentEncryption::A256gcm);
    assert_eq!(
        out.header.kid.as_deref(),
        Some("samwise.gamgee@hobbiton.example")
    );
}

#[test]
fn section_5_4_ecdh_es_a128kw_with_a128gcm_decrypts_to_the_rfc_plaintext() {
    let key = key("5.4.key.json");
    assert_eq!(key.kind(), KeyKind::EcP384);
    let out = decrypt(
        &compact("5.4.compact"),
        &key,
        &Policy::dangerous_rfc7520_examples(),
    )
    .expect("decrypts");
    assert_eq!(out.plaintext, vector("plaintext.txt"));
    assert_eq!(out.header.alg, KeyManagement::EcdhEsA128kw);
    assert_eq!(out.header.enc, ContentEncryption::A128gcm);
    assert_eq!(
        out.header.kid.as_deref(),
        Some("peregrin.took@tuckborough.example")
    );
}

#[test]
fn the_plaintext_is_the_rfcs() {
    let text = String::from_utf8(vector("plaintext.txt")).expect("UTF-8");
    assert!(text.starts_with(
        "You can trust us to stick with you through thick and thin\u{2013}to the bitter end."
    ));
    assert!(text.ends_with("We are your friends, Frodo."));
    assert_eq!(text.len(), 273);
}

#[test]
fn production_policy_refuses_both_examples_before_any_key_operation() {
    for (token, key_file) in [
        ("5.2.compact", "5.2.key.json"),
        ("5.4.compact", "5.4.key.json"),
    ] {
        let err =
            decrypt(&compact(token), &key(key_file), &Policy::production()).expect_err("refused");
        assert_eq!(err.code(), "jwe.algorithm_unsupported", "{token}: {err}");
    }
    // The header can still be read (a relay logs kid), and it reports what it is.
    let h = header(&compact("5.4.compact")).expect("header");
    assert_eq!(h.alg, KeyManagement::EcdhEsA128kw);
}

#[test]
fn tampering_with_the_rfc_examples_fails_as_decryption_failed() {
    let policy = Policy::dangerous_rfc7520_examples();
    let key = key("5.2.key.json");
    let token = compact("5.2.compact");
    let parts: Vec<&str> = token.split('.').collect();
    // Change one character of the ciphertext part.
    let mut ct: Vec<u8> = parts[3].as_bytes().to_vec();
    ct[5] = if ct[5] == b'A' { b'B' } else { b'A' };
    let altered = format!(
        "{}.{}.{}.{}.{}",
        parts[0],
        parts[1],
        parts[2],
        String::from_utf8(ct).expect("ascii"),
        parts[4]
    );
    let err = decrypt(&altered, &key, &policy).expect_err("tampered");
    assert_eq!(err.code(), "jwe.decryption_failed");
}
