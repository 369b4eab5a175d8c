//! Unit tests of the global configuration: keys made with the `openssl` crate at
//! test time (the integration tests use the `openssl` CLI and an independent JWS
//! implementation).

use super::*;
use base64::engine::general_purpose::STANDARD;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameBuilder};
use serde_json::{Value, json};
use std::sync::OnceLock;
use time::macros::datetime;

/// A key pair for tests: private PEM (PKCS#8), public PEM, public JWK.
struct TestKey {
    private_pem: String,
    public_pem: String,
    jwk: Value,
}

fn ec_key() -> TestKey {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
    let ec = EcKey::generate(&group).expect("generate");
    let mut x = BigNum::new().expect("bn");
    let mut y = BigNum::new().expect("bn");
    let mut ctx = BigNumContext::new().expect("ctx");
    ec.public_key()
        .affine_coordinates(&group, &mut x, &mut y, &mut ctx)
        .expect("coordinates");
    let b64 = |n: &BigNum| URL_SAFE_NO_PAD.encode(n.to_vec_padded(32).expect("pad"));
    let jwk = json!({ "kty": "EC", "crv": "P-256", "x": b64(&x), "y": b64(&y), "kid": "enc-1" });
    let key = PKey::from_ec_key(ec).expect("pkey");
    pems(&key, jwk)
}

fn rsa_key(bits: u32) -> TestKey {
    let rsa = Rsa::generate(bits).expect("generate");
    let b64 = |n: &openssl::bn::BigNumRef| URL_SAFE_NO_PAD.encode(n.to_vec());
    let jwk = json!({ "kty": "RSA", "n": b64(rsa.n()), "e": b64(rsa.e()), "kid": "rsa-1" });
    let key = PKey::from_rsa(rsa).expect("pkey");
    pems(&key, jwk)
}

fn pems(key: &PKey<Private>, jwk: Value) -> TestKey {
    TestKey {
        private_pem: String::from_utf8(key.private_key_to_pem_pkcs8().expect("pem")).expect("utf8"),
        public_pem: String::from_utf8(key.public_key_to_pem().expect("pem")).expect("utf8"),
        jwk,
    }
}

/// The central authority's keys, made once per test run.
fn authority_ec() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(ec_key)
}
fn authority_rsa() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| rsa_key(2048))
}
fn next_authority() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(ec_key)
}

/// A self-signed CA certificate.
fn ca_pem() -> &'static str {
    static PEM: OnceLock<String> = OnceLock::new();
    PEM.get_or_init(|| {
        let key = PKey::private_key_from_pem(ec_key().private_pem.as_bytes()).expect("key");
        let mut name = X509NameBuilder::new().expect("name");
        name.append_entry_by_text("CN", "Test Federation CA")
            .expect("cn");
        let name = name.build();
        let mut builder = X509::builder().expect("builder");
        builder.set_version(2).expect("version");
        builder.set_subject_name(&name).expect("subject");
        builder.set_issuer_name(&name).expect("issuer");
        builder.set_pubkey(&key).expect("pubkey");
        let from = openssl::asn1::Asn1Time::from_unix(1_700_000_000).expect("time");
        let until = openssl::asn1::Asn1Time::from_unix(1_900_000_000).expect("time");
        builder.set_not_before(&from).expect("nb");
        builder.set_not_after(&until).expect("na");
        builder.sign(&key, MessageDigest::sha256()).expect("sign");
        String::from_utf8(builder.build().to_pem().expect("pem")).expect("utf8")
    })
}

fn encryption_jwk() -> &'static Value {
    static JWK: OnceLock<Value> = OnceLock::new();
    JWK.get_or_init(|| ec_key().jwk)
}

const H01: &str = "VN/GOV/000-00-00-H01";
const G01: &str = "VN/GOV/000-00-00-G01";

fn fp(byte: &str) -> String {
    byte.repeat(32)
}

/// A valid document: one provider member with one secure server, one hub member
/// with the NDXP hub, one service reached through it, one identity provider.
fn document(version: u64) -> Value {
    json!({
        "format": "datagate-global-configuration/1",
        "instance": "VN",
        "version": version,
        "issued_at": "2026-12-01T08:00:00+07:00",
        "expires_at": "2026-12-08T08:00:00+07:00",
        "trusted_cas": [ca_pem()],
        "members": [
            { "id": H01, "name": "Bộ Công an", "subsystems": ["dan-cu"] },
            { "id": G01, "name": "Văn phòng Chính phủ" }
        ],
        "secure_servers": [{
            "member": H01, "name": "ss1",
            "address": "https://lgsp-b.example:8444",
            "certificates": [{
                "sha256": fp("ab"),
                "submitted_at": "2026-11-02T10:00:00+07:00",
                "effective_from": "2026-11-05T00:00:00+07:00"
            }],
            "encryption_key": encryption_jwk()
        }],
        "services": [{ "id": format!("{H01}/dan-cu/cong-dan"), "hubs": ["ndxp"] }],
        "hubs": [{
            "name": "ndxp", "member": G01, "address": "https://ndxp.example:8444",
            "certificates": [{
                "sha256": fp("cd"),
                "submitted_at": "2026-11-02T10:00:00+07:00",
                "effective_from": "2026-11-05T00:00:00+07:00"
            }]
        }],
        "identity_providers": [{
            "issuer": "https://vneid.example",
            "jwks": { "keys": [authority_rsa().jwk.clone()] }
        }],
        "holidays": ["2026-09-01", "2026-09-02"]
    })
}

/// Within the validity of [`document`].
const NOW: OffsetDateTime = datetime!(2026-12-02 09:00 +7);

fn signed(doc: &Value, key: &TestKey, alg: SigningAlg) -> String {
    sign(doc.to_string().as_bytes(), &key.private_pem, alg).expect("sign")
}

fn verifier() -> Verifier {
    Verifier::new(
        Anchor::from_pem(&authority_ec().public_pem).expect("anchor"),
        "VN",
    )
}

fn accepted(outcome: Result<Verification, GlobalConfError>) -> Accepted {
    match outcome.expect("accepted") {
        Verification::Accepted(accepted) => *accepted,
        Verification::Unchanged => panic!("unchanged, expected accepted"),
    }
}

fn refused(outcome: Result<Verification, GlobalConfError>) -> GlobalConfError {
    match outcome {
        Err(error) => error,
        Ok(_) => panic!("accepted, expected refused"),
    }
}

fn parsed(doc: &Value) -> GlobalConfiguration {
    GlobalConfiguration::parse_unverified(doc.to_string().as_bytes()).expect("valid document")
}

fn problems(doc: &Value) -> Vec<Problem> {
    match GlobalConfiguration::parse_unverified(doc.to_string().as_bytes()) {
        Err(GlobalConfError::Invalid { problems }) => problems,
        other => panic!("expected invalid, got {other:?}"),
    }
}

fn paths(problems: &[Problem]) -> Vec<&str> {
    problems.iter().map(|p| p.path.as_str()).collect()
}

/// Builds an unsigned-by-us compact JWS with any header, for attacks.
fn forged(header: &Value, payload: &[u8], signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

// ---- verification ----------------------------------------------------------------

/// 003 Điều 50 khoản 3: the published catalogue, signed ES256 by the authority, is accepted.
#[test]
fn accepts_valid_es256_configuration() {
    let jws = signed(&document(1), authority_ec(), SigningAlg::Es256);
    let accepted = accepted(verifier().verify(jws.as_bytes(), None, NOW));
    assert_eq!(accepted.config.version(), 1);
    assert!(!accepted.anchor_rotated);
    assert_eq!(
        accepted.config.raw_json(),
        document(1).to_string().as_bytes()
    );
}

/// 003 Điều 50 khoản 3: an RSA anchor (national CA keys are often RSA) verifies RS256.
#[test]
fn accepts_valid_rs256_configuration() {
    let jws = signed(&document(1), authority_rsa(), SigningAlg::Rs256);
    let verifier = Verifier::new(
        Anchor::from_pem(&authority_rsa().public_pem).expect("anchor"),
        "VN",
    );
    assert_eq!(
        accepted(verifier.verify(jws.as_bytes(), None, NOW))
            .config
            .version(),
        1
    );
}

/// 003 Điều 3 khoản 3: only the authority's key makes a configuration trusted.
#[test]
fn refuses_configuration_signed_by_another_key() {
    let jws = signed(&document(1), &ec_key(), SigningAlg::Es256);
    assert_eq!(
        refused(verifier().verify(jws.as_bytes(), None, NOW)).code(),
        "globalconf.signature_invalid"
    );
}

/// 003 Điều 3 khoản 3: a changed payload breaks the signature.
#[test]
fn refuses_configuration_whose_payload_was_changed() {
    let jws = signed(&document(1), authority_ec(), SigningAlg::Es256);
    let parts: Vec<&str> = jws.split('.').collect();
    let other = URL_SAFE_NO_PAD.encode(document(2).to_string());
    let tampered = format!("{}.{}.{}", parts[0], other, parts[2]);
    assert_eq!(
        refused(verifier().verify(tampered.as_bytes(), None, NOW)).code(),
        "globalconf.signature_invalid"
    );
}

/// 003 Điều 3 khoản 3: an RS256 signature is not checked against an EC anchor.
#[test]
fn refuses_algorithm_that_does_not_match_the_anchor_key() {
    let jws = signed(&document(1), authority_rsa(), SigningAlg::Rs256);
    assert_eq!(
        refused(verifier().verify(jws.as_bytes(), None, NOW)).code(),
        "globalconf.signature_invalid"
    );
}

/// Design §10 (no article): a replayed older catalogue cannot roll trust back.
#[test]
fn refuses_configuration_older_than_held() {
    let held = parsed(&document(5));
    let jws = signed(&document(4), authority_ec(), SigningAlg::Es256);
    assert_eq!(
        refused(verifier().verify(jws.as_bytes(), Some(&held), NOW)),
        GlobalConfError::Stale {
            held: 5,
            received: 4
        }
    );
}

/// Design §10 (no article): the same version twice is harmless and reported as unchanged.
#[test]
fn same_version_with_same_payload_is_unchanged() {
    let held = parsed(&document(5));
    let jws = signed(&document(5), authority_ec(), SigningAlg::Es256);
    assert!(matches!(
        verifier().verify(jws.as_bytes(), Some(&held), NOW),
        Ok(Verification::Unchanged)
    ));
}

/// Design §10 (no article): one version has one content; a second content under it is refused.
#[test]
fn refuses_same_version_with_other_content() {
    let held = parsed(&document(5));
    let mut other = document(5);
    other["holidays"] = json!(["2026-09-02"]);
    let jws = signed(&other, authority_ec(), SigningAlg::Es256);
    assert_eq!(
        refused(verifier().verify(jws.as_bytes(), Some(&held), NOW)).code(),
        "globalconf.stale"
    );
}

/// Design §10 (no article): a newer version replaces the held one.
#[test]
fn accepts_newer_version_than_held() {
    let held = parsed(&document(5));
    let jws = signed(&document(6), authority_ec(), SigningAlg::Es256);
    assert_eq!(
        accepted(verifier().verify(jws.as_bytes(), Some(&held), NOW))
            .config
            .version(),
        6
    );
}

/// 003 Điều 50 khoản 3: a catalogue past its expiry is not trusted.
#[test]
fn refuses_expired_configuration() {
    let jws = signed(&document(1), authority_ec(), SigningAlg::Es256);
    let at_expiry = datetime!(2026-12-08 08:00 +7);
    assert_eq!(
        refused(verifier().verify(jws.as_bytes(), None, at_expiry)),
        GlobalConfError::Expired {
            expires_at: at_expiry
        }
    );
    assert!(
        verifier()
            .verify(jws.as_bytes(), None, at_expiry - time::Duration::SECOND)
            .is_ok()
    );
}

/// Design §10 (no article): a configuration of another federation is refused.
#[test]
fn refuses_configuration_for_another_instance() {
    let jws = signed(&document(1), authority_ec(), SigningAlg::Es256);
    let verifier = Verifier::new(
        Anchor::from_pem(&authority_ec().public_pem).expect("anchor"),
        "LA",
    );
    assert_eq!(
        refused(verifier.verify(jws.as_bytes(), None, NOW)).code(),
        "globalconf.instance_mismatch"
    );
}

/// 003 Điều 3 khoản 3: an unsigned (`alg: none`) configuration is refused before any crypto.
#[test]
fn refuses_alg_none() {
    let payload = document(1).to_string();
    for jws in [
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(&payload)
        ),
        forged(&json!({"alg": "none"}), payload.as_bytes(), b"x"),
        forged(&json!({"alg": "None"}), payload.as_bytes(), b"x"),
    ] {
        assert_eq!(
            refused(verifier().verify(jws.as_bytes(), None, NOW)).code(),
            "globalconf.algorithm_unsupported"
        );
    }
}

/// 003 Điều 3 khoản 3: the key-confusion attack (HMAC keyed with the public anchor) fails.
#[test]
fn refuses_hs256_signed_with_anchor_bytes_as_secret() {
    let payload = document(1).to_string();
    let anchor_pem = authority_ec().public_pem.as_bytes();
    let anchor_der = PKey::public_key_from_pem(anchor_pem)
        .expect("pem")
        .public_key_to_der()
        .expect("der");
    for secret in [anchor_pem, &anchor_der[..]] {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#);
        let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(&payload));
        let key = PKey::hmac(secret).expect("hmac key");
        let mut signer = openssl::sign::Signer::new(MessageDigest::sha256(), &key).expect("signer");
        let mac = signer
            .sign_oneshot_to_vec(signing_input.as_bytes())
            .expect("mac");
        let jws = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac));
        assert_eq!(
            refused(verifier().verify(jws.as_bytes(), None, NOW)).code(),
            "globalconf.algorithm_unsupported"
        );
    }
}

/// 003 Điều 3 khoản 3: only ES256 and RS256; other algorithms are refused by name.
#[test]
fn refuses_other_algorithms() {
    let payload = document(1).to_string();
    for alg in [
        "HS256", "HS512", "PS256", "ES384", "ES512", "RS512", "EdDSA", "es256", "",
    ] {
        let jws = forged(&json!({ "alg": alg }), payload.as_bytes(), b"signature");
        assert_eq!(
            refused(verifier().verify(jws.as_bytes(), None, NOW)).code(),
            "globalconf.algorithm_unsupported",
            "{alg}"
        );
    }
}

/// 003 Điều 3 khoản 3: a header cannot bring its own key or change the signing input.
#[test]
fn refuses_header_parameters_that_redirect_trust() {
    let payload = document(1).to_string();
    for header in [
        json!({"alg": "ES256", "jwk": authority_ec().jwk}),
        json!({"alg": "ES256", "jku": "https://evil.example/jwks"}),
        json!({"alg": "ES256", "x5c": ["MIIB"]}),
        json!({"alg": "ES256", "b64": false, "crit": ["b64"]}),
    ] {
        let jws = forged(&header, payload.as_bytes(), b"signature");
        assert_eq!(
            refused(verifier().verify(jws.as_bytes(), None, NOW)).code(),
            "globalconf.malformed"
        );
    }
}

/// 002 Điều 26 khoản 2: hostile input is bounded: over 4 MiB is refused before parsing.
#[test]
fn refuses_oversized_configuration() {
    let huge = vec![b'a'; MAX_SIGNED_BYTES + 1];
    assert_eq!(
        refused(verifier().verify(&huge, None, NOW)).code(),
        "globalconf.malformed"
    );
}

/// 002 Điều 26 khoản 2: anything that is not a JWS compact serialisation is malformed.
#[test]
fn refuses_malformed_jws() {
    let payload = document(1).to_string();
    let good = signed(&document(1), authority_ec(), SigningAlg::Es256);
    for bad in [
        String::new(),
        payload.clone(),
        "a.b".to_owned(),
        "a.b.c.d".to_owned(),
        format!("{good}="),
        good.replace('.', ".="),
        forged(&json!(["ES256"]), payload.as_bytes(), b"sig"),
        forged(&json!({"kid": "x"}), payload.as_bytes(), b"sig"),
        forged(&json!({"alg": "ES256"}), payload.as_bytes(), b""),
        format!(
            "{}.{}.{}",
            // 16 bytes: standard base64 pads with "==".
            STANDARD.encode(r#"{"alg":"ES256" }"#),
            URL_SAFE_NO_PAD.encode(&payload),
            "AA"
        ),
    ] {
        assert_eq!(
            refused(verifier().verify(bad.as_bytes(), None, NOW)).code(),
            "globalconf.malformed",
            "{bad:.40}"
        );
    }
}

/// 002 Điều 26 khoản 2: a signed payload that is not JSON is malformed, not invalid.
#[test]
fn refuses_signed_payload_that_is_not_json() {
    for payload in [&b"not json"[..], br#"{"version":1,"version":2}"#] {
        let jws = sign(payload, &authority_ec().private_pem, SigningAlg::Es256).expect("sign");
        assert_eq!(
            refused(verifier().verify(jws.as_bytes(), None, NOW)).code(),
            "globalconf.malformed"
        );
    }
}

/// 003 Điều 50 khoản 3: a signed but invalid catalogue is refused with its problems.
#[test]
fn refuses_signed_configuration_that_breaks_the_format() {
    let mut doc = document(1);
    doc["secure_servers"][0]["address"] = json!("http://lgsp-b.example:8444");
    let jws = signed(&doc, authority_ec(), SigningAlg::Es256);
    match refused(verifier().verify(jws.as_bytes(), None, NOW)) {
        GlobalConfError::Invalid { problems } => {
            assert_eq!(paths(&problems), ["secure_servers[0].address"]);
        }
        other => panic!("expected invalid, got {other:?}"),
    }
}

// ---- anchor rotation --------------------------------------------------------------

fn announcing(version: u64, effective_from: &str) -> Value {
    let mut doc = document(version);
    doc["anchor_rotation"] = json!({
        "next_anchor": next_authority().jwk,
        "effective_from": effective_from,
    });
    doc
}

/// 003 Điều 50 khoản 3: the authority's new key counts once its announced date has passed.
#[test]
fn accepts_configuration_signed_by_announced_anchor_after_it_takes_effect() {
    let first = signed(
        &announcing(1, "2026-12-03T00:00:00+07:00"),
        authority_ec(),
        SigningAlg::Es256,
    );
    let held = accepted(verifier().verify(first.as_bytes(), None, NOW));
    let (next, from) = held.next_anchor.clone().expect("announced");
    assert_eq!(from, datetime!(2026-12-03 00:00 +7));
    let second = signed(&document(2), next_authority(), SigningAlg::Es256);
    let after = datetime!(2026-12-03 00:00 +7);
    let rotated = accepted(verifier().verify(second.as_bytes(), Some(&held.config), after));
    assert!(rotated.anchor_rotated);
    assert_eq!(rotated.signed_by, next);
    // The persisted anchor verifies the next documents without the old configuration.
    let persisted = Anchor::from_pem(&rotated.signed_by.to_pem()).expect("pem round trip");
    assert_eq!(persisted.fingerprint(), next.fingerprint());
    let third = signed(&document(3), next_authority(), SigningAlg::Es256);
    assert!(
        Verifier::new(persisted, "VN")
            .verify(third.as_bytes(), Some(&rotated.config), after)
            .is_ok()
    );
}

/// 003 Điều 50 khoản 3: before its date, the announced key is not yet trusted.
#[test]
fn refuses_new_anchor_before_it_takes_effect() {
    let held = parsed(&announcing(1, "2026-12-03T00:00:00+07:00"));
    let second = signed(&document(2), next_authority(), SigningAlg::Es256);
    let before = datetime!(2026-12-02 23:59:59 +7);
    assert_eq!(
        refused(verifier().verify(second.as_bytes(), Some(&held), before)).code(),
        "globalconf.signature_invalid"
    );
    // Meanwhile the old anchor still signs.
    let old = signed(&document(2), authority_ec(), SigningAlg::Es256);
    assert!(!accepted(verifier().verify(old.as_bytes(), Some(&held), before)).anchor_rotated);
}

/// 003 Điều 50 khoản 3: after the rotation date, the old anchor alone no longer counts.
#[test]
fn refuses_old_anchor_after_rotation_takes_effect() {
    let held = parsed(&announcing(1, "2026-12-03T00:00:00+07:00"));
    let old = signed(&document(2), authority_ec(), SigningAlg::Es256);
    assert_eq!(
        refused(verifier().verify(old.as_bytes(), Some(&held), datetime!(2026-12-03 00:00 +7)))
            .code(),
        "globalconf.signature_invalid"
    );
}

// ---- peers and the notice rule ------------------------------------------------------

fn with_certificates(certificates: Value) -> GlobalConfiguration {
    let mut doc = document(1);
    doc["secure_servers"][0]["certificates"] = certificates;
    parsed(&doc)
}

/// 003 Điều 50 khoản 2: a registered, effective secure server is authenticated as its member's.
#[test]
fn authenticates_registered_secure_server() {
    let config = parsed(&document(1));
    assert_eq!(
        config.authenticate_peer(&fp("ab"), NOW),
        Ok(Peer::SecureServer {
            member: H01.parse().expect("id"),
            name: "ss1".into()
        })
    );
    // Upper case and colons are the same fingerprint.
    let upper = "AB:".repeat(31) + "AB";
    assert!(config.authenticate_peer(&upper, NOW).is_ok());
}

/// 003 Điều 50 khoản 2: a hub is authenticated as a hub, not as a secure server.
#[test]
fn authenticates_registered_hub() {
    let config = parsed(&document(1));
    assert_eq!(
        config.authenticate_peer(&fp("cd"), NOW),
        Ok(Peer::Hub {
            name: "ndxp".into(),
            member: G01.parse().expect("id")
        })
    );
    assert!(config.server_by_fingerprint(&fp("cd")).is_none());
    assert_eq!(
        config
            .hub_by_fingerprint(&fp("cd"))
            .map(|(h, _)| h.name.as_str()),
        Some("ndxp")
    );
}

/// 003 Điều 50 khoản 2: an unregistered certificate is nobody.
#[test]
fn refuses_unknown_fingerprint() {
    let config = parsed(&document(1));
    for unknown in [fp("ef"), "not hex".to_owned(), String::new()] {
        assert_eq!(
            config.authenticate_peer(&unknown, NOW),
            Err(GlobalConfError::PeerUnknown)
        );
    }
}

/// 003 Điều 50 khoản 2: three working days' notice, with a public holiday in the window.
#[test]
fn refuses_secure_server_registered_less_than_three_working_days_ahead() {
    // Submitted Monday 31 Aug 2026; 1-2 Sep are the National Day holiday, so the
    // three working days are Thu 3, Fri 4 and Mon 7 Sep: accepted from 7 Sep 00:00 +07,
    // although effective_from says 3 Sep (Mon + 3 without the holidays).
    let config = with_certificates(json!([{
        "sha256": fp("ab"),
        "submitted_at": "2026-08-31T10:00:00+07:00",
        "effective_from": "2026-09-03T00:00:00+07:00"
    }]));
    let from = datetime!(2026-09-07 00:00 +7);
    for early in [
        datetime!(2026-09-03 00:00 +7),
        from - time::Duration::SECOND,
    ] {
        assert_eq!(
            config.authenticate_peer(&fp("ab"), early),
            Err(GlobalConfError::PeerNotYetEffective { from })
        );
    }
    assert!(config.authenticate_peer(&fp("ab"), from).is_ok());
}

/// 003 Điều 50 khoản 2: working days are counted in Vietnam time, as the local registry does.
#[test]
fn counts_notice_in_vietnam_time() {
    // 18:00 UTC Thursday 19 Nov is Friday in Vietnam: Friday + 3 = Wednesday 25 Nov.
    let config = with_certificates(json!([{
        "sha256": fp("ab"),
        "submitted_at": "2026-11-19T18:00:00Z",
        "effective_from": "2026-11-20T00:00:00Z"
    }]));
    assert_eq!(
        config.authenticate_peer(&fp("ab"), datetime!(2026-11-24 23:59 +7)),
        Err(GlobalConfError::PeerNotYetEffective {
            from: datetime!(2026-11-25 00:00 +7)
        })
    );
}

/// 003 Điều 50 khoản 2: notice alone is not enough; effective_from is honoured too.
#[test]
fn honours_effective_from_after_the_notice() {
    let config = with_certificates(json!([{
        "sha256": fp("ab"),
        "submitted_at": "2026-11-02T10:00:00+07:00",
        "effective_from": "2026-12-02T12:00:00+07:00"
    }]));
    assert_eq!(
        config
            .authenticate_peer(&fp("ab"), NOW)
            .map_err(|e| e.code()),
        Err("globalconf.peer_not_yet_effective")
    );
    assert!(
        config
            .authenticate_peer(&fp("ab"), datetime!(2026-12-02 12:00 +7))
            .is_ok()
    );
}

/// 003 Điều 50 khoản 2: during a renewal, the old and the new certificate both work.
#[test]
fn accepts_both_certificates_during_renewal() {
    let config = with_certificates(json!([
        {
            "sha256": fp("ab"),
            "submitted_at": "2026-01-05T10:00:00+07:00",
            "effective_from": "2026-01-10T00:00:00+07:00",
            "effective_until": "2026-12-10T00:00:00+07:00"
        },
        {
            "sha256": fp("ef"),
            "submitted_at": "2026-11-23T10:00:00+07:00",
            "effective_from": "2026-11-27T00:00:00+07:00"
        }
    ]));
    let server = |fingerprint: &str| config.authenticate_peer(fingerprint, NOW);
    assert_eq!(server(&fp("ab")), server(&fp("ef")));
    assert!(server(&fp("ab")).is_ok());
    let member: MemberId = H01.parse().expect("id");
    assert_eq!(config.secure_servers_of(&member).len(), 1);
    assert_eq!(config.secure_servers_of(&member)[0].certificates.len(), 2);
}

/// 003 Điều 50 khoản 2: once its registration ends, the old certificate is refused.
#[test]
fn refuses_certificate_whose_registration_ended() {
    let config = with_certificates(json!([{
        "sha256": fp("ab"),
        "submitted_at": "2026-01-05T10:00:00+07:00",
        "effective_from": "2026-01-10T00:00:00+07:00",
        "effective_until": "2026-12-02T00:00:00+07:00"
    }]));
    assert_eq!(
        config.authenticate_peer(&fp("ab"), NOW),
        Err(GlobalConfError::PeerRegistrationEnded {
            at: datetime!(2026-12-02 00:00 +7)
        })
    );
}

/// 003 Điều 50 khoản 3: an expired catalogue authenticates nobody (fail closed).
#[test]
fn expired_configuration_authenticates_nobody() {
    let config = parsed(&document(1));
    assert_eq!(
        config
            .authenticate_peer(&fp("ab"), datetime!(2026-12-08 08:00 +7))
            .map_err(|e| e.code()),
        Err("globalconf.expired")
    );
}

// ---- lookups -------------------------------------------------------------------------

/// 003 Điều 12; 000 Điều 7 khoản 4: the catalogue tells services, hubs and identity providers.
#[test]
fn looks_up_members_services_hubs_and_identity_providers() {
    let config = parsed(&document(1));
    let h01: MemberId = H01.parse().expect("id");
    assert_eq!(config.members().len(), 2);
    assert_eq!(
        config.member(&h01).map(|m| m.name.as_str()),
        Some("Bộ Công an")
    );
    let service: crate::identity::ServiceId = format!("{H01}/dan-cu/cong-dan").parse().expect("id");
    assert_eq!(
        config.service(&service).map(|s| s.hubs.clone()),
        Some(vec!["ndxp".to_owned()])
    );
    assert_eq!(
        config.hub("ndxp").map(|h| h.address.as_str()),
        Some("https://ndxp.example:8444/")
    );
    let idp = config
        .identity_provider("https://vneid.example")
        .expect("listed");
    assert!(idp.key("rsa-1").is_some());
    assert!(config.identity_provider("https://vneid.example/").is_none());
    assert_eq!(config.trusted_cas().len(), 1);
    assert_eq!(config.holidays().len(), 2);
    assert!(
        !config
            .calendar()
            .is_working_day(time::macros::date!(2026 - 09 - 01))
    );
    let (server, entry) = config.server_by_fingerprint(&fp("ab")).expect("server");
    assert_eq!(server.name, "ss1");
    assert_eq!(entry.notice_ends, datetime!(2026-11-05 00:00 +7));
    assert_eq!(server.encryption_key.kid(), Some("enc-1"));
}

/// Design §3 (no article): each member's secure servers are one slice, whatever the order.
#[test]
fn groups_secure_servers_by_member() {
    let mut doc = document(1);
    let mut second = doc["secure_servers"][0].clone();
    second["name"] = json!("ss2");
    second["certificates"][0]["sha256"] = json!(fp("01"));
    let mut hub_server = second.clone();
    hub_server["member"] = json!(G01);
    hub_server["certificates"][0]["sha256"] = json!(fp("02"));
    doc["secure_servers"] = json!([doc["secure_servers"][0], hub_server, second]);
    let config = parsed(&doc);
    let h01: MemberId = H01.parse().expect("id");
    let names: Vec<&str> = config
        .secure_servers_of(&h01)
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["ss1", "ss2"]);
    let nobody: MemberId = "VN/GOV/000-00-00-Z99".parse().expect("id");
    assert!(config.secure_servers_of(&nobody).is_empty());
    assert_eq!(
        config
            .server_by_fingerprint(&fp("02"))
            .map(|(s, _)| s.member.to_string()),
        Some(G01.to_owned())
    );
}

// ---- validation ------------------------------------------------------------------------

/// 002 Điều 26 khoản 1; design §10 invariant 5: every problem is reported, by path, never by value.
#[test]
fn validation_errors_name_paths_not_values() {
    let mut doc = document(1);
    doc["instance"] = json!("VN");
    doc["version"] = json!(0);
    doc["expires_at"] = json!("2026-11-30T08:00:00+07:00");
    doc["members"][0]["subsystems"] = json!(["dan-cu", "SECRET<value>"]);
    doc["secure_servers"][0]["member"] = json!("VN/GOV/SECRET-MEMBER-Z9");
    doc["secure_servers"][0]["address"] = json!("https://SECRET-HOST.example/?token=SECRET");
    doc["secure_servers"][0]["certificates"][0]["sha256"] = json!("SECRET-FINGERPRINT");
    doc["secure_servers"][0]["certificates"][0]["effective_until"] = json!("2020-01-01T00:00:00Z");
    doc["secure_servers"][0]["encryption_key"] =
        json!({"kty": "EC", "crv": "P-384", "x": "SECRET", "y": "SECRET"});
    doc["services"][0]["id"] = json!(format!("{H01}/SECRET-SUBSYSTEM/cong-dan"));
    doc["services"][0]["hubs"] = json!(["SECRET-HUB"]);
    doc["hubs"][0]["certificates"] = json!([]);
    doc["holidays"] = json!(["SECRET"]);
    doc["trusted_cas"] = json!(["SECRET"]);
    doc["colour"] = json!("SECRET");
    let problems = problems(&doc);
    let found = paths(&problems);
    for path in [
        "colour",
        "version",
        "expires_at",
        "trusted_cas[0]",
        "holidays[0]",
        "members[0].subsystems[1]",
        "secure_servers[0].member",
        "secure_servers[0].address",
        "secure_servers[0].certificates[0].sha256",
        "secure_servers[0].certificates[0].effective_until",
        "secure_servers[0].encryption_key.crv",
        "services[0].id",
        "services[0].hubs[0]",
        "hubs[0].certificates",
    ] {
        assert!(found.contains(&path), "{path} missing from {found:?}");
    }
    let text = GlobalConfError::Invalid {
        problems: problems.clone(),
    }
    .to_string();
    assert!(!text.contains("SECRET"), "{text}");
    assert!(!text.to_lowercase().contains("secret"), "{text}");
}

/// 003 Điều 3 khoản 3: exchange listeners are reached over https only, at a clean base URL.
#[test]
fn refuses_addresses_that_are_not_clean_https_urls() {
    for (address, message) in [
        ("http://lgsp-b.example:8444", "must use https"),
        ("https://lgsp-b.example/?a=1", "must not have a query"),
        ("https://lgsp-b.example/#x", "must not have a fragment"),
        (
            "https://user:pw@lgsp-b.example/",
            "must not carry credentials",
        ),
        ("lgsp-b.example:8444", "must use https"),
        ("/relative", "must be an absolute URL"),
        ("file:///etc/passwd", "must use https"),
    ] {
        let mut doc = document(1);
        doc["hubs"][0]["address"] = json!(address);
        let problems = problems(&doc);
        assert!(
            problems
                .iter()
                .any(|p| p.path == "hubs[0].address" && p.message == message),
            "{address}: {problems:?}"
        );
    }
}

/// 003 Điều 53 khoản 4: encryption keys are public EC P-256 or RSA of at least 2048 bits.
#[test]
fn refuses_weak_private_or_foreign_jwks() {
    let weak = rsa_key(1024).jwk;
    let mut private = ec_key().jwk;
    private["d"] = json!("AAAA");
    let mut unknown = ec_key().jwk;
    unknown["x5c"] = json!(["MIIB"]);
    let mut off_curve = ec_key().jwk;
    off_curve["y"] = json!(URL_SAFE_NO_PAD.encode([7u8; 32]));
    let mut no_kid = ec_key().jwk;
    no_kid.as_object_mut().expect("object").remove("kid");
    for (jwk, path) in [
        (weak, "secure_servers[0].encryption_key.n"),
        (private, "secure_servers[0].encryption_key"),
        (unknown, "secure_servers[0].encryption_key.x5c"),
        (off_curve, "secure_servers[0].encryption_key.x"),
        (no_kid, "secure_servers[0].encryption_key.kid"),
        (
            json!({"kty": "oct", "kid": "a"}),
            "secure_servers[0].encryption_key.kty",
        ),
        (
            json!({"kty": "OKP", "crv": "Ed25519", "x": "AA", "kid": "a"}),
            "secure_servers[0].encryption_key.kty",
        ),
    ] {
        let mut doc = document(1);
        doc["secure_servers"][0]["encryption_key"] = jwk;
        assert!(paths(&problems(&doc)).contains(&path), "{path}");
    }
}

/// 003 Điều 50 khoản 2: a secure server needs a registered certificate and a listed member.
#[test]
fn refuses_secure_server_without_certificate_or_member() {
    let mut doc = document(1);
    doc["secure_servers"][0]["certificates"] = json!([]);
    doc["secure_servers"][0]["member"] = json!("VN/GOV/000-00-00-Z99");
    let found = problems(&doc);
    assert_eq!(
        paths(&found),
        ["secure_servers[0].member", "secure_servers[0].certificates"]
    );
    assert_eq!(found[0].message, "is not a listed member");
}

/// 003 Điều 50 khoản 2: one certificate belongs to one server, and names are unique.
#[test]
fn refuses_duplicate_fingerprints_and_names() {
    let mut doc = document(1);
    doc["hubs"][0]["certificates"][0]["sha256"] = json!("AB:".repeat(31) + "AB");
    let second = doc["secure_servers"][0].clone();
    doc["secure_servers"] = json!([doc["secure_servers"][0], second]);
    let mut second_hub = doc["hubs"][0].clone();
    second_hub["certificates"][0]["sha256"] = json!(fp("99"));
    doc["hubs"] = json!([doc["hubs"][0], second_hub]);
    let found = problems(&doc);
    let found = paths(&found);
    for path in [
        "secure_servers[1].name",
        "secure_servers[1].certificates[0].sha256",
        "hubs[0].certificates[0].sha256",
        "hubs[1].name",
    ] {
        assert!(found.contains(&path), "{path} missing from {found:?}");
    }
}

/// 004 Điều 57 khoản 5: services are addressed by ids whose provider is a listed subsystem.
#[test]
fn refuses_service_of_unlisted_subsystem_or_member() {
    let mut doc = document(1);
    doc["services"] = json!([
        { "id": format!("{H01}/ho-tich/khai-sinh") },
        { "id": "VN/GOV/000-00-00-Z99/dan-cu/cong-dan" },
        { "id": "VN/GOV/000-00-00-H01/dan-cu" },
        { "id": format!("{H01}/dan-cu/cong-dan"), "hubs": ["ndxp", "ndxp"] },
        { "id": format!("{H01}/dan-cu/cong-dan") },
    ]);
    let found = problems(&doc);
    assert_eq!(
        paths(&found),
        [
            "services[0].id",
            "services[1].id",
            "services[2].id",
            "services[3].hubs[1]",
            "services[4].id"
        ]
    );
}

/// 004 Điều 57 khoản 5: members are of the document's instance, listed once.
#[test]
fn refuses_members_of_another_instance_or_listed_twice() {
    let mut doc = document(1);
    doc["members"] = json!([
        { "id": H01, "name": "A", "subsystems": ["dan-cu"] },
        { "id": G01, "name": "B" },
        { "id": H01, "name": "C" },
        { "id": "LA/GOV/000-00-00-H01", "name": "D" },
        { "id": "VN/GOV/000-00-00-H02", "name": " " },
    ]);
    assert_eq!(
        paths(&problems(&doc)),
        ["members[2].id", "members[3].id", "members[4].name"]
    );
}

/// Design §10 invariant 5: unknown fields are refused at every level.
#[test]
fn refuses_unknown_fields_everywhere() {
    let mut doc = document(1);
    doc["members"][0]["extra"] = json!(1);
    doc["secure_servers"][0]["extra"] = json!(1);
    doc["secure_servers"][0]["certificates"][0]["extra"] = json!(1);
    doc["services"][0]["extra"] = json!(1);
    doc["hubs"][0]["extra"] = json!(1);
    doc["identity_providers"][0]["extra"] = json!(1);
    doc["identity_providers"][0]["jwks"]["extra"] = json!(1);
    doc["anchor_rotation"] = json!({
        "next_anchor": next_authority().jwk, "effective_from": "2026-12-03T00:00:00+07:00", "extra": 1
    });
    assert_eq!(
        paths(&problems(&doc)),
        [
            "members[0].extra",
            "secure_servers[0].extra",
            "secure_servers[0].certificates[0].extra",
            "hubs[0].extra",
            "services[0].extra",
            "identity_providers[0].extra",
            "identity_providers[0].jwks.extra",
            "anchor_rotation.extra",
        ]
    );
}

/// Design §10 invariant 5: required fields and the format marker are checked.
#[test]
fn refuses_missing_fields_and_other_formats() {
    let mut doc = document(1);
    let object = doc.as_object_mut().expect("object");
    object.remove("issued_at");
    object.remove("members");
    object.insert("format".into(), json!("datagate-global-configuration/2"));
    let found = problems(&doc);
    let found = paths(&found);
    for path in ["format", "issued_at", "members"] {
        assert!(found.contains(&path), "{path} missing from {found:?}");
    }
}

/// 003 Điều 12: identity providers have https issuers and keyed, public, distinct keys.
#[test]
fn refuses_bad_identity_providers() {
    let mut doc = document(1);
    doc["identity_providers"] = json!([
        { "issuer": "http://vneid.example", "jwks": { "keys": [authority_rsa().jwk] } },
        { "issuer": "https://b.example", "jwks": { "keys": [] } },
        { "issuer": "https://c.example", "jwks": { "keys": [authority_rsa().jwk, authority_rsa().jwk] } },
        { "issuer": "https://c.example", "jwks": { "keys": [authority_rsa().jwk] } },
    ]);
    assert_eq!(
        paths(&problems(&doc)),
        [
            "identity_providers[0].issuer",
            "identity_providers[1].jwks.keys",
            "identity_providers[2].jwks.keys[1].kid",
            "identity_providers[3].issuer",
        ]
    );
}

/// Design §10 (no article): a document with two readings (repeated keys) is refused.
#[test]
fn refuses_payload_with_repeated_keys() {
    let text = document(1)
        .to_string()
        .replacen(r#""version":1"#, r#""version":1,"version":2"#, 1);
    assert_eq!(
        GlobalConfiguration::parse_unverified(text.as_bytes())
            .map_err(|e| e.code())
            .err(),
        Some("globalconf.malformed")
    );
}

// ---- keys ------------------------------------------------------------------------------

/// 003 Điều 3 khoản 3: the anchor is the same key whether given as PEM, certificate or JWK.
#[test]
fn anchor_from_pem_certificate_and_jwk_agree() {
    let from_pem = Anchor::from_pem(&authority_ec().public_pem).expect("pem");
    let from_jwk = Anchor::from_jwk(authority_ec().jwk.to_string().as_bytes()).expect("jwk");
    assert_eq!(from_pem, from_jwk);
    assert_eq!(from_pem.fingerprint().len(), 64);
    assert_eq!(from_pem.kind(), KeyKind::EcP256);
    let certificate = Anchor::from_pem(ca_pem()).expect("certificate");
    assert_eq!(certificate.kind(), KeyKind::EcP256);
    let rsa = Anchor::from_pem(&authority_rsa().public_pem).expect("rsa");
    assert_eq!(rsa.kind(), KeyKind::Rsa { bits: 2048 });
}

/// 003 Điều 53 khoản 4: anchors and signing keys are EC P-256 or RSA of at least 2048 bits.
#[test]
fn refuses_weak_or_wrong_keys() {
    let weak = rsa_key(1024);
    assert_eq!(
        Anchor::from_pem(&weak.public_pem).map_err(|e| e.code()),
        Err("globalconf.key_invalid")
    );
    assert!(Anchor::from_jwk(weak.jwk.to_string().as_bytes()).is_err());
    assert!(Anchor::from_pem("not pem").is_err());
    assert!(Anchor::from_pem(&authority_ec().private_pem).is_err());
    let payload = document(1).to_string();
    for (key, alg) in [
        (&weak.private_pem, SigningAlg::Rs256),
        (&authority_ec().private_pem, SigningAlg::Rs256),
        (&authority_rsa().private_pem, SigningAlg::Es256),
        (&authority_ec().public_pem, SigningAlg::Es256),
    ] {
        assert_eq!(
            sign(payload.as_bytes(), key, alg).map_err(|e| e.code()),
            Err("globalconf.key_invalid")
        );
    }
}

/// 003 Điều 3 khoản 3: the signer names its key in `kid` (the anchor fingerprint).
#[test]
fn signature_header_names_the_key() {
    let jws = signed(&document(1), authority_ec(), SigningAlg::Es256);
    let header = jws.split('.').next().expect("header");
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("b64")).expect("json");
    let anchor = Anchor::from_pem(&authority_ec().public_pem).expect("anchor");
    assert_eq!(header, json!({"alg": "ES256", "kid": anchor.fingerprint()}));
}

/// Design §10 invariant 6: every refusal has its stable machine code.
#[test]
fn error_codes_are_stable() {
    let at = NOW;
    let codes: Vec<&str> = [
        GlobalConfError::Malformed {
            reason: String::new(),
        },
        GlobalConfError::Invalid { problems: vec![] },
        GlobalConfError::AlgorithmUnsupported,
        GlobalConfError::SignatureInvalid,
        GlobalConfError::InstanceMismatch,
        GlobalConfError::Expired { expires_at: at },
        GlobalConfError::Stale {
            held: 2,
            received: 1,
        },
        GlobalConfError::PeerUnknown,
        GlobalConfError::PeerNotYetEffective { from: at },
        GlobalConfError::PeerRegistrationEnded { at },
        GlobalConfError::KeyInvalid { reason: "" },
    ]
    .iter()
    .map(GlobalConfError::code)
    .collect();
    assert_eq!(
        codes,
        [
            "globalconf.malformed",
            "globalconf.invalid",
            "globalconf.algorithm_unsupported",
            "globalconf.signature_invalid",
            "globalconf.instance_mismatch",
            "globalconf.expired",
            "globalconf.stale",
            "globalconf.peer_unknown",
            "globalconf.peer_not_yet_effective",
            "globalconf.peer_registration_ended",
            "globalconf.key_invalid",
        ]
    );
}

/// 002 Điều 26 khoản 2: dates at the end of the calendar are refused, never a panic or a hang.
#[test]
fn refuses_registration_at_the_end_of_the_calendar() {
    let mut doc = document(1);
    doc["holidays"] = json!(["9999-12-31"]);
    doc["secure_servers"][0]["certificates"][0]["submitted_at"] =
        json!("9999-12-30T00:00:00+07:00");
    doc["hubs"][0]["certificates"][0]["submitted_at"] = json!("9999-12-31T23:00:00Z");
    assert_eq!(
        paths(&problems(&doc)),
        [
            "secure_servers[0].certificates[0].submitted_at",
            "hubs[0].certificates[0].submitted_at"
        ]
    );
}
