//! The signed global configuration end to end, with keys and a CA made by the
//! `openssl` command-line tool at test time, as the central authority would make them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use datagate::identity::MemberId;
use datagate::trust::global::{
    Anchor, GlobalConfError, GlobalConfiguration, Peer, SigningAlg, Verification, Verifier, sign,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use time::OffsetDateTime;
use time::macros::datetime;

/// A directory of keys made with the `openssl` CLI.
pub struct Keys {
    dir: tempfile::TempDir,
}

/// Runs `openssl` with `args` in `dir`, failing the test if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("the openssl command-line tool runs");
    assert!(status.success(), "openssl {args:?} failed");
}

impl Keys {
    /// EC P-256 (`ec.pem`, `ec.pub`) and RSA 2048 (`rsa.pem`, `rsa.pub`) key pairs, a
    /// second EC pair (`ec2.*`) and a self-signed CA (`ca.crt`) plus a certificate
    /// for the EC key (`ec.crt`).
    pub fn generate() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path();
        for name in ["ec", "ec2"] {
            openssl(
                path,
                &[
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-out",
                    &format!("{name}.pem"),
                ],
            );
        }
        openssl(
            path,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "rsa.pem",
            ],
        );
        for name in ["ec", "ec2", "rsa"] {
            openssl(
                path,
                &[
                    "pkey",
                    "-in",
                    &format!("{name}.pem"),
                    "-pubout",
                    "-out",
                    &format!("{name}.pub"),
                ],
            );
        }
        for (key, out, cn) in [
            ("ec2.pem", "ca.crt", "Test CA"),
            ("ec.pem", "ec.crt", "Authority"),
        ] {
            openssl(
                path,
                &[
                    "req",
                    "-x509",
                    "-new",
                    "-key",
                    key,
                    "-subj",
                    &format!("/CN={cn}"),
                    "-days",
                    "2",
                    "-out",
                    out,
                ],
            );
        }
        Keys { dir }
    }

    /// The path of one file.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The text of one file.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).expect("key file")
    }

    /// The public EC key of `name.pem` as a JWK with `kid`.
    pub fn ec_jwk(&self, name: &str, kid: &str) -> Value {
        let key =
            openssl::pkey::PKey::private_key_from_pem(self.read(&format!("{name}.pem")).as_bytes())
                .expect("key");
        let ec = key.ec_key().expect("EC");
        let mut x = openssl::bn::BigNum::new().expect("bn");
        let mut y = openssl::bn::BigNum::new().expect("bn");
        let mut ctx = openssl::bn::BigNumContext::new().expect("ctx");
        ec.public_key()
            .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)
            .expect("coordinates");
        let b64 =
            |n: &openssl::bn::BigNum| URL_SAFE_NO_PAD.encode(n.to_vec_padded(32).expect("pad"));
        json!({ "kty": "EC", "crv": "P-256", "x": b64(&x), "y": b64(&y), "kid": kid })
    }
}

pub const H01: &str = "VN/GOV/000-00-00-H01";

/// A valid document of `version`, valid from 1 to 8 December 2026.
pub fn document(keys: &Keys, version: u64) -> Value {
    json!({
        "format": "datagate-global-configuration/1",
        "instance": "VN",
        "version": version,
        "issued_at": "2026-12-01T08:00:00+07:00",
        "expires_at": "2026-12-08T08:00:00+07:00",
        "trusted_cas": [keys.read("ca.crt")],
        "members": [{ "id": H01, "name": "Bộ Công an", "subsystems": ["dan-cu"] }],
        "secure_servers": [{
            "member": H01, "name": "ss1",
            "address": "https://lgsp-b.example:8444",
            "certificates": [{
                "sha256": "ab".repeat(32),
                "submitted_at": "2026-11-02T10:00:00+07:00",
                "effective_from": "2026-11-05T00:00:00+07:00"
            }],
            "encryption_key": keys.ec_jwk("ec2", "ss1-enc")
        }],
        "services": [{ "id": format!("{H01}/dan-cu/cong-dan") }],
        "holidays": ["2026-09-01", "2026-09-02"]
    })
}

pub const NOW: OffsetDateTime = datetime!(2026-12-02 09:00 +7);

fn accepted(outcome: Result<Verification, GlobalConfError>) -> GlobalConfiguration {
    match outcome.expect("accepted") {
        Verification::Accepted(accepted) => accepted.config,
        Verification::Unchanged => panic!("unchanged, expected accepted"),
    }
}

/// 003 Điều 50 khoản 3: a catalogue signed with CLI-made keys (ES256, RS256) verifies, and
/// the verified catalogue authenticates the registered secure server.
#[test]
fn signed_configuration_round_trips_with_cli_keys() {
    let keys = Keys::generate();
    let payload = document(&keys, 1).to_string();
    for (key, public, alg) in [
        ("ec.pem", "ec.pub", SigningAlg::Es256),
        ("rsa.pem", "rsa.pub", SigningAlg::Rs256),
    ] {
        let jws = sign(payload.as_bytes(), &keys.read(key), alg).expect("sign");
        let verifier = Verifier::new(Anchor::from_pem(&keys.read(public)).expect("anchor"), "VN");
        let config = accepted(verifier.verify(jws.as_bytes(), None, NOW));
        assert_eq!(config.raw_json(), payload.as_bytes());
        assert_eq!(
            config.authenticate_peer(&"ab".repeat(32), NOW),
            Ok(Peer::SecureServer {
                member: H01.parse::<MemberId>().expect("id"),
                name: "ss1".into()
            })
        );
        assert_eq!(config.trusted_cas().len(), 1);
    }
}

/// 003 Điều 3 khoản 3: the anchor may be configured as the authority's certificate.
#[test]
fn anchor_configured_as_certificate_verifies() {
    let keys = Keys::generate();
    let jws = sign(
        document(&keys, 1).to_string().as_bytes(),
        &keys.read("ec.pem"),
        SigningAlg::Es256,
    )
    .expect("sign");
    let anchor = Anchor::from_pem(&keys.read("ec.crt")).expect("certificate anchor");
    assert_eq!(
        anchor.fingerprint(),
        Anchor::from_pem(&keys.read("ec.pub"))
            .expect("pem")
            .fingerprint()
    );
    assert!(
        Verifier::new(anchor, "VN")
            .verify(jws.as_bytes(), None, NOW)
            .is_ok()
    );
}

/// 003 Điều 3 khoản 3: a catalogue signed with any other key is refused, traditional
/// (non-PKCS#8) key files included.
#[test]
fn refuses_configuration_signed_by_another_cli_key() {
    let keys = Keys::generate();
    openssl(
        keys.dir.path(),
        &["ec", "-in", "ec2.pem", "-out", "ec2-traditional.pem"],
    );
    let jws = sign(
        document(&keys, 1).to_string().as_bytes(),
        &keys.read("ec2-traditional.pem"),
        SigningAlg::Es256,
    )
    .expect("a traditional EC key signs too");
    let verifier = Verifier::new(
        Anchor::from_pem(&keys.read("ec.pub")).expect("anchor"),
        "VN",
    );
    assert_eq!(
        verifier.verify(jws.as_bytes(), None, NOW).map(|_| ()),
        Err(GlobalConfError::SignatureInvalid)
    );
}

/// Design §10 (no article): a gateway keeps its last good catalogue: polling it again is
/// `Unchanged`, a replayed older one is `globalconf.stale`, a newer one is accepted.
#[test]
fn polling_sequence_keeps_versions_monotonic() {
    let keys = Keys::generate();
    let verifier = Verifier::new(
        Anchor::from_pem(&keys.read("ec.pub")).expect("anchor"),
        "VN",
    );
    let signed = |version| {
        sign(
            document(&keys, version).to_string().as_bytes(),
            &keys.read("ec.pem"),
            SigningAlg::Es256,
        )
        .expect("sign")
    };
    let v1 = signed(1);
    let held = accepted(verifier.verify(v1.as_bytes(), None, NOW));
    // The same document re-signed (a fresh ECDSA signature) is still unchanged.
    assert!(matches!(
        verifier.verify(signed(1).as_bytes(), Some(&held), NOW),
        Ok(Verification::Unchanged)
    ));
    let held = accepted(verifier.verify(signed(2).as_bytes(), Some(&held), NOW));
    assert_eq!(
        verifier.verify(v1.as_bytes(), Some(&held), NOW).map(|_| ()),
        Err(GlobalConfError::Stale {
            held: 2,
            received: 1
        })
    );
}
