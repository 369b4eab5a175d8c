//! Interoperability with the independent Python implementation `http-message-signatures`,
//! in both directions, for the four algorithms. Skipped (with a notice) when the Python
//! module is absent, unless DATAGATE_REQUIRE_INTEROP=1, which turns the skip into a failure.

use super::msgsig_common as common;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{TestResult, vectors};
use datagate::msgsig::{
    Algorithm, Component, DigestAlgorithm, HttpMessage as _, SignatureParams, SigningKey,
    VerifyingKey, check_freshness, content_digest, parse_http1_request, sign, verify,
    verify_message_content_digest,
};

const BODY: &str = r#"{"hello": "world", "so_dinh_danh": "001099000001"}"#;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/msgsig_interop.py")
}

fn python_available() -> bool {
    let present = Command::new("python3")
        .args(["-c", "import http_message_signatures, requests"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return true;
    }
    if std::env::var("DATAGATE_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!(
            "python3 module http_message_signatures not installed, and DATAGATE_REQUIRE_INTEROP=1"
        );
    }
    eprintln!("skipping: python3 module http_message_signatures not installed");
    false
}

/// Runs the script with `input` on stdin: (exit success, stdout, stderr).
fn run(args: &[&str], input: &[u8]) -> Result<(bool, Vec<u8>, String), std::io::Error> {
    let mut child = Command::new("python3")
        .arg(script())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input)?;
    }
    let out = child.wait_with_output()?;
    Ok((
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn key_path(name: &str) -> String {
    vectors().join("interop").join(name).display().to_string()
}

/// (algorithm, private key file, public key file) for the four algorithms.
fn cases() -> [(Algorithm, &'static str, &'static str); 4] {
    [
        (Algorithm::EcdsaP256Sha256, "ec-p256.pem", "ec-p256.pub.pem"),
        (Algorithm::RsaPssSha512, "rsa.pem", "rsa.pub.pem"),
        (Algorithm::RsaV15Sha256, "rsa.pem", "rsa.pub.pem"),
        (Algorithm::Ed25519, "ed25519.pem", "ed25519.pub.pem"),
    ]
}

fn unsigned_request() -> Vec<u8> {
    format!(
        "POST /exchange/v1/VN/GOV/000/svc?lang=vi HTTP/1.1\r\nHost: lgsp-b.example\r\nContent-Type: application/json\r\nContent-Digest: {}\r\nX-Road-Client: VN/GOV/000/client-a\r\nX-Road-Id: 6f1c2a9e-0d4b-4c5e-9a8f-1b2c3d4e5f60\r\nX-Purpose: identity-check\r\nContent-Length: {}\r\n\r\n{BODY}",
        content_digest(BODY.as_bytes(), DigestAlgorithm::Sha256),
        BODY.len()
    )
    .into_bytes()
}

fn required() -> Vec<Component> {
    [
        "@method",
        "@target-uri",
        "content-digest",
        "x-road-client",
        "x-road-id",
        "x-purpose",
    ]
    .into_iter()
    .map(|c| Component::parse(c).expect("component"))
    .collect()
}

#[allow(clippy::disallowed_methods)] // test code: the real clock, as the Python side uses it
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[test]
fn rust_signs_python_verifies() -> TestResult {
    if !python_available() {
        return Ok(());
    }
    for (alg, private, public) in cases() {
        let pem = std::fs::read_to_string(key_path(private))?;
        let key = SigningKey::from_pem(&pem, Some(alg))?;
        let mut msg = parse_http1_request(&unsigned_request())?;
        let created = now();
        let params = SignatureParams {
            created: Some(created),
            expires: Some(created + 300),
            nonce: Some(format!("rust-{created}")),
            keyid: Some("interop-key".into()),
            alg: Some(alg),
            tag: None,
        };
        let h = sign("sig1", &required(), &params, &msg, &key)?;
        msg.add_header("Signature-Input", &h.signature_input);
        msg.add_header("Signature", &h.signature);
        let (ok, _, err) = run(
            &["verify", alg.as_str(), &key_path(public)],
            &msg.to_http1(),
        )?;
        assert!(ok, "{alg}: python refused our signature: {err}");

        // And a tampered copy is refused by Python too.
        let tampered = String::from_utf8(msg.to_http1())?.replace("identity-check", "marketing");
        let (ok, _, _) = run(
            &["verify", alg.as_str(), &key_path(public)],
            tampered.as_bytes(),
        )?;
        assert!(!ok, "{alg}: python accepted a tampered message");
    }
    Ok(())
}

#[test]
fn python_signs_rust_verifies() -> TestResult {
    if !python_available() {
        return Ok(());
    }
    for (alg, private, public) in cases() {
        let (ok, out, err) = run(
            &["sign", alg.as_str(), &key_path(private)],
            &unsigned_request(),
        )?;
        assert!(ok, "{alg}: python could not sign: {err}");
        let msg = parse_http1_request(&out)?;
        let pem = std::fs::read_to_string(key_path(public))?;
        let key = VerifyingKey::from_pem(&pem, Some(alg))?;
        let v = verify("sig1", &msg, |p| {
            assert_eq!(p.keyid.as_deref(), Some("interop-key"));
            Ok(key.clone())
        })?;
        assert_eq!(v.algorithm, alg);
        assert_eq!(v.params.alg, Some(alg));
        assert!(v.params.nonce.is_some() && v.params.expires.is_some());
        v.require_covered(&required())?;
        check_freshness(&v.params, now(), 300, 30)?;
        verify_message_content_digest(&msg, msg.body())?;
        assert_eq!(msg.method(), Some("POST"));
    }
    Ok(())
}
