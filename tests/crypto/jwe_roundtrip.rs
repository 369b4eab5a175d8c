//! Encrypt → decrypt for EC P-256, RSA-2048 and RSA-3072, and every way a
//! token can be wrong.

use super::jwe_common as common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use datagate::jwe::{
    ContentEncryption, DEFAULT_MAX_BYTES, KeyManagement, Policy, decrypt, encrypt, header,
};
use datagate::keystore::{PrivateKey, PublicKey};
use serde_json::Value;

const PLAINTEXT: &[u8] = b"{\"citizen\":\"001085012345\",\"status\":\"ok\"}";

fn keys() -> Vec<(&'static str, common::Generated, KeyManagement)> {
    vec![
        ("EC P-256", common::ec_p256(), KeyManagement::EcdhEsA256kw),
        ("RSA-2048", common::rsa(2048), KeyManagement::RsaOaep256),
        ("RSA-3072", common::rsa(3072), KeyManagement::RsaOaep256),
    ]
}

fn public(key: &PrivateKey) -> PublicKey {
    key.public_key().expect("public half")
}

/// The token with its protected header replaced by `edit` of the decoded JSON.
fn with_header(token: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let (head, rest) = token.split_once('.').expect("has parts");
    let mut json: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(head).expect("b64")).expect("json");
    edit(json.as_object_mut().expect("object"));
    format!(
        "{}.{rest}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json).expect("json"))
    )
}

#[test]
fn round_trips_with_kid_and_cty_in_the_protected_header() {
    for (name, generated, alg) in keys() {
        let key = &generated.key;
        let token = encrypt(
            PLAINTEXT,
            &public(key),
            Some("ab12cd"),
            Some("application/json"),
        )
        .expect("encrypts");
        assert_eq!(token.split('.').count(), 5, "{name}");
        let out = decrypt(&token, key, &Policy::production()).expect(name);
        assert_eq!(out.plaintext, PLAINTEXT, "{name}");
        assert_eq!(out.header.alg, alg, "{name}");
        assert_eq!(out.header.enc, ContentEncryption::A256gcm, "{name}");
        assert_eq!(out.header.kid.as_deref(), Some("ab12cd"), "{name}");
        assert_eq!(
            out.header.cty.as_deref(),
            Some("application/json"),
            "{name}"
        );
        assert_eq!(header(&token).expect("header"), out.header, "{name}");
        // Two encryptions of one plaintext differ (fresh CEK, IV, epk).
        let again = encrypt(PLAINTEXT, &public(key), None, None).expect("encrypts");
        assert_ne!(again, token);
        let out = decrypt(&again, key, &Policy::production()).expect(name);
        assert_eq!(out.header.kid, None);
        assert_eq!(out.header.cty, None);
    }
}

#[test]
fn empty_and_large_plaintexts_round_trip() {
    let g = common::ec_p256();
    for len in [0usize, 1, 65_536, 1 << 20] {
        let plaintext = vec![0x5au8; len];
        let token = encrypt(&plaintext, &public(&g.key), None, None).expect("encrypts");
        let out = decrypt(&token, &g.key, &Policy::production()).expect("decrypts");
        assert_eq!(out.plaintext.len(), len);
    }
}

#[test]
fn the_wrong_key_is_decryption_failed() {
    let pairs = [
        (common::ec_p256(), common::ec_p256()),
        (common::rsa(2048), common::rsa(2048)),
        (common::rsa(2048), common::rsa(3072)),
    ];
    for (right, wrong) in pairs {
        let token = encrypt(PLAINTEXT, &public(&right.key), None, None).expect("encrypts");
        let err = decrypt(&token, &wrong.key, &Policy::production()).expect_err("wrong key");
        assert_eq!(err.code(), "jwe.decryption_failed", "{err}");
    }
}

#[test]
fn a_key_of_the_other_type_is_key_unsupported() {
    let ec = common::ec_p256();
    let rsa = common::rsa(2048);
    let token = encrypt(PLAINTEXT, &public(&ec.key), None, None).expect("encrypts");
    assert_eq!(
        decrypt(&token, &rsa.key, &Policy::production())
            .expect_err("type")
            .code(),
        "jwe.key_unsupported"
    );
    let token = encrypt(PLAINTEXT, &public(&rsa.key), None, None).expect("encrypts");
    assert_eq!(
        decrypt(&token, &ec.key, &Policy::production())
            .expect_err("type")
            .code(),
        "jwe.key_unsupported"
    );
}

#[test]
fn every_single_changed_character_is_an_error_not_a_panic() {
    for (name, generated, _) in keys() {
        let key = &generated.key;
        let token = encrypt(b"short secret", &public(key), Some("kid-1"), None).expect("encrypts");
        let policy = Policy::production();
        let bytes = token.as_bytes();
        for i in 0..bytes.len() {
            if bytes[i] == b'.' {
                continue;
            }
            for replacement in [if bytes[i] == b'A' { b'B' } else { b'A' }, b'!', b'='] {
                let mut altered = bytes.to_vec();
                altered[i] = replacement;
                let altered = String::from_utf8(altered).expect("ascii");
                let result = decrypt(&altered, key, &policy);
                assert!(
                    result.is_err(),
                    "{name}: changing byte {i} was not detected"
                );
            }
        }
    }
}

#[test]
fn flipped_bytes_in_each_part_name_the_right_codes() {
    let g = common::rsa(2048);
    let token = encrypt(PLAINTEXT, &public(&g.key), None, None).expect("encrypts");
    let parts: Vec<&str> = token.split('.').collect();
    for part in 0..5 {
        // Decode, flip one bit in the middle, re-encode: valid base64url, wrong content.
        let mut raw = URL_SAFE_NO_PAD.decode(parts[part]).expect("b64");
        let mid = raw.len() / 2;
        raw[mid] ^= 0x01;
        let mut altered: Vec<String> = parts.iter().map(|s| (*s).to_owned()).collect();
        altered[part] = URL_SAFE_NO_PAD.encode(&raw);
        let err = decrypt(&altered.join("."), &g.key, &Policy::production()).expect_err("altered");
        if part == 0 {
            // The header is JSON: a flipped bit breaks its syntax or changes the
            // authenticated data; both are refused.
            assert!(
                [
                    "jwe.malformed",
                    "jwe.decryption_failed",
                    "jwe.algorithm_unsupported"
                ]
                .contains(&err.code()),
                "{err}"
            );
        } else {
            assert_eq!(err.code(), "jwe.decryption_failed", "part {part}: {err}");
        }
    }
}

#[test]
fn truncated_tokens_are_refused() {
    let g = common::ec_p256();
    let token = encrypt(PLAINTEXT, &public(&g.key), None, None).expect("encrypts");
    for len in 0..token.len() {
        let err = decrypt(&token[..len], &g.key, &Policy::production()).expect_err("truncated");
        assert!(
            ["jwe.malformed", "jwe.decryption_failed"].contains(&err.code()),
            "length {len}: {err}"
        );
    }
    // A shortened tag (still valid base64url) is malformed, not checked as given.
    let parts: Vec<&str> = token.split('.').collect();
    let tag = URL_SAFE_NO_PAD.decode(parts[4]).expect("b64");
    let short = format!(
        "{}.{}.{}.{}.{}",
        parts[0],
        parts[1],
        parts[2],
        parts[3],
        URL_SAFE_NO_PAD.encode(&tag[..12])
    );
    assert_eq!(
        decrypt(&short, &g.key, &Policy::production())
            .expect_err("short tag")
            .code(),
        "jwe.malformed"
    );
    // Four or six parts.
    let four = parts[..4].join(".");
    assert_eq!(
        decrypt(&four, &g.key, &Policy::production())
            .expect_err("4")
            .code(),
        "jwe.malformed"
    );
    assert_eq!(header(&four).expect_err("4").code(), "jwe.malformed");
    let six = format!("{token}.AAAA");
    assert_eq!(
        decrypt(&six, &g.key, &Policy::production())
            .expect_err("6")
            .code(),
        "jwe.malformed"
    );
}

#[test]
fn alg_none_and_dir_zip_and_crit_are_refused() {
    let g = common::ec_p256();
    let token = encrypt(PLAINTEXT, &public(&g.key), None, None).expect("encrypts");
    let policy = Policy::production();
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            with_header(&token, |h| {
                h.insert("alg".into(), "none".into());
            }),
        ),
        (
            "alg dir",
            with_header(&token, |h| {
                h.insert("alg".into(), "dir".into());
            }),
        ),
        (
            "alg RSA1_5",
            with_header(&token, |h| {
                h.insert("alg".into(), "RSA1_5".into());
            }),
        ),
        (
            "enc A128CBC-HS256",
            with_header(&token, |h| {
                h.insert("enc".into(), "A128CBC-HS256".into());
            }),
        ),
        (
            "zip DEF",
            with_header(&token, |h| {
                h.insert("zip".into(), "DEF".into());
            }),
        ),
        (
            "crit",
            with_header(&token, |h| {
                h.insert("crit".into(), serde_json::json!(["exp"]));
                h.insert("exp".into(), 1.into());
            }),
        ),
        (
            "epk P-521",
            with_header(&token, |h| {
                h["epk"]["crv"] = "P-521".into();
            }),
        ),
    ];
    for (name, altered) in cases {
        let err = decrypt(&altered, &g.key, &policy).expect_err(name);
        assert_eq!(err.code(), "jwe.algorithm_unsupported", "{name}: {err}");
        assert_eq!(
            header(&altered).expect_err(name).code(),
            "jwe.algorithm_unsupported",
            "{name}"
        );
    }
    let malformed: Vec<(&str, String)> = vec![
        (
            "no enc",
            with_header(&token, |h| {
                h.remove("enc");
            }),
        ),
        (
            "no alg",
            with_header(&token, |h| {
                h.remove("alg");
            }),
        ),
        (
            "alg not a string",
            with_header(&token, |h| {
                h.insert("alg".into(), 1.into());
            }),
        ),
        (
            "kid not a string",
            with_header(&token, |h| {
                h.insert("kid".into(), serde_json::json!({}));
            }),
        ),
        (
            "no epk",
            with_header(&token, |h| {
                h.remove("epk");
            }),
        ),
        (
            "short epk x",
            with_header(&token, |h| {
                h["epk"]["x"] = "AAAA".into();
            }),
        ),
    ];
    for (name, altered) in malformed {
        let err = decrypt(&altered, &g.key, &policy).expect_err(name);
        assert_eq!(err.code(), "jwe.malformed", "{name}: {err}");
    }
    // A header that is not JSON, not an object, or repeats a member.
    let rest = token.split_once('.').expect("parts").1;
    for bad in [
        &b"not json"[..],
        b"[1,2]",
        br#"{"alg":"ECDH-ES+A256KW","alg":"dir","enc":"A256GCM"}"#,
    ] {
        let altered = format!("{}.{rest}", URL_SAFE_NO_PAD.encode(bad));
        assert_eq!(
            decrypt(&altered, &g.key, &policy)
                .expect_err("bad header")
                .code(),
            "jwe.malformed"
        );
    }
}

#[test]
fn the_policy_is_checked_before_the_key() {
    // A test-only algorithm with a key that could not decrypt it anyway:
    // the answer is the policy's, so no key operation ran.
    let g = common::ec_p256();
    let token = encrypt(PLAINTEXT, &public(&g.key), None, None).expect("encrypts");
    let altered = with_header(&token, |h| {
        h.insert("alg".into(), "RSA-OAEP".into());
    });
    let rsa = common::rsa(2048);
    assert_eq!(
        decrypt(&altered, &rsa.key, &Policy::production())
            .expect_err("policy")
            .code(),
        "jwe.algorithm_unsupported"
    );
    // Under the test policy the same token gets past the policy and fails later.
    let err =
        decrypt(&altered, &rsa.key, &Policy::dangerous_rfc7520_examples()).expect_err("later");
    assert_ne!(err.code(), "jwe.algorithm_unsupported");
}

#[test]
fn oversized_input_is_refused_before_decoding() {
    let g = common::ec_p256();
    let token = encrypt(PLAINTEXT, &public(&g.key), None, None).expect("encrypts");
    let small = Policy::production().with_max_bytes(token.len() - 1);
    assert_eq!(
        decrypt(&token, &g.key, &small).expect_err("bound").code(),
        "jwe.too_large"
    );
    assert!(
        decrypt(
            &token,
            &g.key,
            &Policy::production().with_max_bytes(token.len())
        )
        .is_ok()
    );
    let huge = "A".repeat(DEFAULT_MAX_BYTES + 1);
    assert_eq!(
        decrypt(&huge, &g.key, &Policy::production())
            .expect_err("huge")
            .code(),
        "jwe.too_large"
    );
    // A header part beyond its own bound.
    let long_header = format!(
        "{}.a.b.c.d",
        "A".repeat(datagate::jwe::MAX_HEADER_BYTES + 4)
    );
    assert_eq!(
        header(&long_header).expect_err("long").code(),
        "jwe.malformed"
    );
    // encrypt refuses what the default policy would refuse.
    let too_big = vec![0u8; DEFAULT_MAX_BYTES];
    assert_eq!(
        encrypt(&too_big, &public(&g.key), None, None)
            .expect_err("big")
            .code(),
        "jwe.too_large"
    );
}

#[test]
fn small_rsa_and_other_keys_are_refused_for_encryption() {
    let small = common::rsa(1024);
    assert_eq!(
        encrypt(PLAINTEXT, &public(&small.key), None, None)
            .expect_err("1024")
            .code(),
        "jwe.key_unsupported"
    );
    let ed = openssl::pkey::PKey::generate_ed25519().expect("ed25519");
    let ed = PrivateKey::from_pkcs8_der(&ed.private_key_to_pkcs8().expect("pkcs8")).expect("loads");
    assert_eq!(
        encrypt(PLAINTEXT, &public(&ed), None, None)
            .expect_err("ed")
            .code(),
        "jwe.key_unsupported"
    );
    // Decrypting with a small RSA key is refused as well.
    let g = common::rsa(2048);
    let token = encrypt(PLAINTEXT, &public(&g.key), None, None).expect("encrypts");
    assert_eq!(
        decrypt(&token, &small.key, &Policy::production())
            .expect_err("1024")
            .code(),
        "jwe.key_unsupported"
    );
}

#[test]
fn encrypting_to_a_jwk_works() {
    let g = common::ec_p256();
    let jwk = public(&g.key).to_jwk(Some("k1")).expect("jwk");
    assert_eq!(jwk["kid"], "k1");
    assert!(jwk.get("d").is_none());
    let recipient = PublicKey::from_jwk(&jwk).expect("from jwk");
    assert_eq!(recipient, public(&g.key));
    let token = encrypt(PLAINTEXT, &recipient, None, None).expect("encrypts");
    assert_eq!(
        decrypt(&token, &g.key, &Policy::production())
            .expect("decrypts")
            .plaintext,
        PLAINTEXT
    );
}

/// A gateway prepares its peers' keys and its own once: the prepared objects produce and
/// open the same JWEs as the one-shot functions, and an opener refuses a JWE made for
/// another key or algorithm with the one decryption code (no oracle).
#[test]
fn prepared_recipient_and_opener_match_the_one_shot_functions() {
    use datagate::jwe::{Opener, Recipient};
    let all = keys();
    for (name, generated, _) in &all {
        let recipient = Recipient::new(&public(&generated.key)).expect("recipient");
        let opener = Opener::new(&generated.key).expect("opener");
        let prepared = recipient
            .encrypt(PLAINTEXT, Some("k1"), Some("application/json"))
            .expect("encrypt");
        let opened = decrypt(&prepared, &generated.key, &Policy::production()).expect(name);
        assert_eq!(opened.plaintext, PLAINTEXT, "{name}");
        let one_shot = encrypt(PLAINTEXT, &public(&generated.key), None, None).expect("encrypt");
        assert_eq!(opener.decrypt(&one_shot).expect(name).plaintext, PLAINTEXT);
    }
    // An EC opener and a JWE for an RSA key, and two EC keys: refused alike.
    let ec = Opener::new(&all[0].1.key).expect("opener");
    for (_, other, _) in &all[1..] {
        let token = encrypt(PLAINTEXT, &public(&other.key), None, None).expect("encrypt");
        assert_eq!(
            ec.decrypt(&token).map_err(|e| e.code()).err(),
            Some("jwe.decryption_failed")
        );
    }
    let stranger = common::ec_p256();
    let token = encrypt(PLAINTEXT, &public(&stranger.key), None, None).expect("encrypt");
    assert_eq!(
        ec.decrypt(&token).map_err(|e| e.code()).err(),
        Some("jwe.decryption_failed")
    );
}
