//! The operator tools through the real binary (`datagate message sign | verify |
//! encrypt | decrypt`, `datagate globalconf sign | verify`), with keys made by the
//! `openssl` command line at test time, and interoperability both ways with the
//! independent Python implementations of `tests/interop/`.
//!
//! The interop tests skip with a printed notice when the Python module is missing,
//! unless `DATAGATE_REQUIRE_INTEROP=1` (CI), which turns the skip into a failure.

use super::global::{Keys as AuthorityKeys, document};
use crate::support::python_has;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use datagate::keystore::{Certificate, PublicKey};
use datagate::msgsig::{DigestAlgorithm, content_digest};
use serde_json::{Value, json};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tempfile::TempDir;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The password of the test PKCS#12 files and encrypted keys, given to the binary
/// through this environment variable.
const PASSWORD_VAR: &str = "DATAGATE_TEST_KEY_PASSWORD";
const PASSWORD: &str = "correct horse 42";

/// A synthetic citizen lookup (the id matches no real person).
const BODY: &str = r#"{"so_dinh_danh":"079099000123","ho_ten":"Nguyễn Văn A"}"#;

fn request_with(extra_headers: &str) -> Vec<u8> {
    format!(
        "POST /r1/VN/GOV/000.00.00.G10/population-db/citizen?lang=vi HTTP/1.1\r\n\
         Host: lgsp-b.example\r\n\
         Content-Type: application/json\r\n\
         X-Road-Client: VN/GOV/000.00.00.H29/dvc-portal\r\n\
         X-Road-Id: 6f1c2a9e-0d4b-4c5e-9a8f-1b2c3d4e5f60\r\n\
         X-Purpose: HOUSEHOLD-REGISTRATION\r\n\
         {extra_headers}Content-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    )
    .into_bytes()
}

fn request() -> Vec<u8> {
    request_with("")
}

// ---------------------------------------------------------------------------
// Running things
// ---------------------------------------------------------------------------

/// What a process did.
struct Ran {
    success: bool,
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Ran {
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Asserts exit 1 with `code` first on stderr.
    fn assert_refused(&self, code: &str) {
        assert_eq!(
            self.code,
            Some(1),
            "expected refusal {code}; stderr: {}",
            self.stderr
        );
        assert!(
            self.stderr.starts_with(&format!("{code}: ")),
            "expected {code}, stderr: {}",
            self.stderr
        );
        assert!(self.stdout.is_empty(), "nothing on stdout on refusal");
    }
}

/// Runs `program args` with `input` on stdin (written from a thread, so a program
/// that stops reading early cannot block the test).
fn run(program: &str, args: &[&str], input: &[u8], env: &[(&str, &str)]) -> Ran {
    let mut child = Command::new(program)
        .args(args)
        .env_remove(PASSWORD_VAR)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        // A refusal may close stdin before all is written; the exit status tells.
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("the program finishes");
    let _ = writer.join();
    Ran {
        success: out.status.success(),
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn datagate(args: &[&str], input: &[u8]) -> Ran {
    run(env!("CARGO_BIN_EXE_datagate"), args, input, &[])
}

fn datagate_with_password(args: &[&str], input: &[u8]) -> Ran {
    run(
        env!("CARGO_BIN_EXE_datagate"),
        args,
        input,
        &[(PASSWORD_VAR, PASSWORD)],
    )
}

/// Runs the `openssl` command line in `dir`, failing the test if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn interop_script(name: &str) -> String {
    super::support::repo_root()
        .join("tests/interop")
        .join(name)
        .display()
        .to_string()
}

#[allow(clippy::disallowed_methods)] // the binary reads the real clock, and so do we
fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

// ---------------------------------------------------------------------------
// Keys made with the openssl command line
// ---------------------------------------------------------------------------

/// A directory of keys and certificates made by the `openssl` command line.
struct Keys {
    dir: TempDir,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn openssl(&self, args: &[&str]) -> &Self {
        openssl(self.dir.path(), args);
        self
    }

    /// `name.pem` (PKCS#8) of `algorithm` (`EC`, `RSA`, `ED25519`) and `name.pub`.
    fn pkcs8(&self, name: &str, algorithm: &str) -> &Self {
        let pem = format!("{name}.pem");
        let mut args = vec!["genpkey", "-algorithm", algorithm, "-out", &pem];
        match algorithm {
            "EC" => args.extend(["-pkeyopt", "ec_paramgen_curve:P-256"]),
            "RSA" => args.extend(["-pkeyopt", "rsa_keygen_bits:2048"]),
            _ => {}
        }
        self.openssl(&args).public(name)
    }

    /// `name.pub`: the public key of `name.pem`.
    fn public(&self, name: &str) -> &Self {
        self.openssl(&[
            "pkey",
            "-in",
            &format!("{name}.pem"),
            "-pubout",
            "-out",
            &format!("{name}.pub"),
        ])
    }

    /// `name.crt`: a self-signed certificate for `name.pem`.
    fn certificate(&self, name: &str) -> &Self {
        self.openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            &format!("{name}.pem"),
            "-subj",
            &format!("/CN={name}.gateway.example"),
            "-days",
            "2",
            "-out",
            &format!("{name}.crt"),
        ])
    }

    /// `out`: `name.pem` and `name.crt` as PKCS#12 under [`PASSWORD`]; with
    /// OpenSSL's legacy algorithms (RC2-40/3DES) when `legacy`.
    fn pkcs12(&self, name: &str, out: &str, legacy: bool) -> &Self {
        let pass = format!("pass:{PASSWORD}");
        let key = format!("{name}.pem");
        let crt = format!("{name}.crt");
        let mut args = vec![
            "pkcs12", "-export", "-inkey", &key, "-in", &crt, "-out", out, "-passout", &pass,
        ];
        if legacy {
            args.push("-legacy");
        }
        self.openssl(&args)
    }

    /// The public key of `name.pub` as a JWK with `kid` (through the keystore API).
    fn public_jwk(&self, name: &str, kid: &str) -> Value {
        let pem = std::fs::read(self.path(&format!("{name}.pub"))).expect("public key");
        PublicKey::from_pem(&pem)
            .expect("public key")
            .to_jwk(Some(kid))
            .expect("jwk")
    }

    /// The private key of `name.pem` as a JWK (through the openssl crate: the
    /// keystore writes public JWKs only).
    fn private_jwk(&self, name: &str) -> Value {
        let pem = std::fs::read(self.path(&format!("{name}.pem"))).expect("key");
        let key = openssl::pkey::PKey::private_key_from_pem(&pem).expect("key");
        let b64 = |bytes: Vec<u8>| URL_SAFE_NO_PAD.encode(bytes);
        if let Ok(ec) = key.ec_key() {
            let mut x = openssl::bn::BigNum::new().expect("bn");
            let mut y = openssl::bn::BigNum::new().expect("bn");
            let mut ctx = openssl::bn::BigNumContext::new().expect("ctx");
            ec.public_key()
                .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)
                .expect("coordinates");
            let padded = |n: &openssl::bn::BigNumRef| b64(n.to_vec_padded(32).expect("pad"));
            return json!({
                "kty": "EC", "crv": "P-256",
                "x": padded(&x), "y": padded(&y), "d": padded(ec.private_key()),
            });
        }
        let rsa = key.rsa().expect("EC or RSA");
        let part = |n: Option<&openssl::bn::BigNumRef>| b64(n.expect("component").to_vec());
        json!({
            "kty": "RSA",
            "n": part(Some(rsa.n())), "e": part(Some(rsa.e())), "d": part(Some(rsa.d())),
            "p": part(rsa.p()), "q": part(rsa.q()),
            "dp": part(rsa.dmp1()), "dq": part(rsa.dmq1()), "qi": part(rsa.iqmp()),
        })
    }

    fn write(&self, name: &str, contents: &[u8]) -> String {
        let path = self.path(name);
        std::fs::write(&path, contents).expect("write");
        path
    }
}

/// An EC P-256 key `ec` with its certificate, and a second one `other`.
fn ec_keys() -> Keys {
    let keys = Keys::new();
    keys.pkcs8("ec", "EC")
        .certificate("ec")
        .pkcs8("other", "EC")
        .certificate("other");
    keys
}

fn sign_args<'a>(key: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["message", "sign", "--key", key, "--key-id", "node-a"];
    args.extend_from_slice(extra);
    args
}

/// Signs [`request`] with `ec.pem` (more options in `extra`); the signed message.
fn signed_by_ec(keys: &Keys, extra: &[&str]) -> String {
    let key = keys.path("ec.pem");
    let ran = datagate(&sign_args(&key, extra), &request());
    assert!(ran.success, "sign: {}", ran.stderr);
    ran.stdout_text()
}

fn verify_with_ec_certificate(keys: &Keys, message: &[u8]) -> Ran {
    datagate(
        &["message", "verify", "--cert", &keys.path("ec.crt")],
        message,
    )
}

// ---------------------------------------------------------------------------
// message sign / verify
// ---------------------------------------------------------------------------

/// Every algorithm signs and verifies through the binary, from every key
/// container a CA hands out: PKCS#8, encrypted PKCS#8, SEC1, PKCS#1, PKCS#12 and a
/// legacy (RC2/3DES) PKCS#12, verified against a public key or a certificate.
#[test]
fn signed_request_verifies_for_every_algorithm_and_key_container() {
    let keys = Keys::new();
    keys.pkcs8("ec", "EC")
        .certificate("ec")
        .pkcs12("ec", "ec.p12", false)
        .openssl(&[
            "pkcs8",
            "-topk8",
            "-in",
            "ec.pem",
            "-out",
            "ec-enc.pem",
            "-passout",
            &format!("pass:{PASSWORD}"),
        ])
        .openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "sec1.pem",
        ])
        .public("sec1")
        .pkcs8("rsa", "RSA")
        .certificate("rsa")
        .pkcs12("rsa", "rsa.p12", false)
        .pkcs12("rsa", "rsa-legacy.p12", true)
        .openssl(&["genrsa", "-traditional", "-out", "pkcs1.pem", "2048"])
        .public("pkcs1")
        .pkcs8("ed", "ED25519");
    assert!(
        std::fs::read_to_string(keys.path("sec1.pem"))
            .expect("sec1")
            .contains("BEGIN EC PRIVATE KEY")
    );
    assert!(
        std::fs::read_to_string(keys.path("pkcs1.pem"))
            .expect("pkcs1")
            .contains("BEGIN RSA PRIVATE KEY")
    );
    // (algorithm, key file, needs the password, verify option, verify file)
    let cases = [
        ("ecdsa-p256-sha256", "ec.pem", false, "--key", "ec.pub"),
        ("ecdsa-p256-sha256", "ec-enc.pem", true, "--key", "ec.pub"),
        ("ecdsa-p256-sha256", "sec1.pem", false, "--key", "sec1.pub"),
        ("ecdsa-p256-sha256", "ec.p12", true, "--cert", "ec.crt"),
        ("rsa-pss-sha512", "rsa.pem", false, "--key", "rsa.pub"),
        ("rsa-pss-sha512", "rsa.p12", true, "--cert", "rsa.crt"),
        ("rsa-pss-sha512", "rsa-legacy.p12", true, "--key", "rsa.pub"),
        ("rsa-v1_5-sha256", "pkcs1.pem", false, "--key", "pkcs1.pub"),
        (
            "rsa-v1_5-sha256",
            "rsa-legacy.p12",
            true,
            "--cert",
            "rsa.crt",
        ),
        ("ed25519", "ed.pem", false, "--key", "ed.pub"),
    ];
    for (alg, key, password, option, public) in cases {
        let key_path = keys.path(key);
        let mut args = sign_args(&key_path, &["--alg", alg]);
        if password {
            args.extend(["--password-env", PASSWORD_VAR]);
        }
        let signed = datagate_with_password(&args, &request());
        assert!(signed.success, "{alg} {key}: sign: {}", signed.stderr);
        let text = signed.stdout_text();
        assert!(
            text.contains("\r\nContent-Digest: sha-256=:"),
            "{alg} {key}"
        );
        assert!(text.contains(&format!(";alg=\"{alg}\"")), "{alg} {key}");
        assert!(text.ends_with(BODY), "{alg} {key}: the body is unchanged");

        let verified = datagate(
            &["message", "verify", option, &keys.path(public)],
            &signed.stdout,
        );
        assert!(verified.success, "{alg} {key}: verify: {}", verified.stderr);
        assert_eq!(
            verified.stdout_text(),
            format!(
                "ok keyid=node-a alg={alg} covered=@method,@target-uri,content-digest,\
                 x-road-client,x-road-id,x-purpose\n"
            ),
            "{alg} {key}"
        );
    }
}

/// The default covered set takes each optional X-Road header present (here
/// X-Road-UserId and X-Citizen-Assertion), and the verifier requires them.
#[test]
fn optional_x_road_headers_present_are_covered_and_required() {
    let keys = ec_keys();
    let message =
        request_with("X-Road-UserId: VN12345\r\nX-Citizen-Assertion: eyJhbGciOi.e30.sig\r\n");
    let key = keys.path("ec.pem");
    let signed = datagate(&sign_args(&key, &[]), &message);
    assert!(signed.success, "{}", signed.stderr);
    let verified = verify_with_ec_certificate(&keys, &signed.stdout);
    assert!(verified.success, "{}", verified.stderr);
    assert!(
        verified
            .stdout_text()
            .ends_with("x-road-userid,x-citizen-assertion\n"),
        "{}",
        verified.stdout_text()
    );

    // Signed over the minimum only, the same message is refused by default.
    let narrow = datagate(
        &sign_args(
            &key,
            &[
                "--cover",
                "@method",
                "@target-uri",
                "content-digest",
                "x-road-client",
                "x-road-id",
                "x-purpose",
            ],
        ),
        &message,
    );
    assert!(narrow.success, "{}", narrow.stderr);
    verify_with_ec_certificate(&keys, &narrow.stdout)
        .assert_refused("signature.component_not_covered");
}

/// A body changed after signing is caught by the digest: `digest.mismatch`.
#[test]
fn tampered_body_is_refused_as_digest_mismatch() {
    let keys = ec_keys();
    let signed = signed_by_ec(&keys, &[]);
    let tampered = signed.replace("079099000123", "079099000124");
    verify_with_ec_certificate(&keys, tampered.as_bytes()).assert_refused("digest.mismatch");
}

/// A covered header changed after signing breaks the signature: `signature.invalid`;
/// the message on stderr does not quote the header's value.
#[test]
fn tampered_covered_header_is_refused_as_invalid_signature() {
    let keys = ec_keys();
    let signed = signed_by_ec(&keys, &[]);
    let tampered = signed.replace("HOUSEHOLD-REGISTRATION", "DIRECT-MARKETING");
    let ran = verify_with_ec_certificate(&keys, tampered.as_bytes());
    ran.assert_refused("signature.invalid");
    assert!(!ran.stderr.contains("MARKETING"));
}

/// A covered header removed after signing: `signature.component_missing`.
#[test]
fn removed_covered_header_is_refused_as_component_missing() {
    let keys = ec_keys();
    let signed = signed_by_ec(&keys, &[]);
    let removed = signed.replace("X-Purpose: HOUSEHOLD-REGISTRATION\r\n", "");
    verify_with_ec_certificate(&keys, removed.as_bytes())
        .assert_refused("signature.component_missing");
}

/// A signature that leaves out a required component (X-Road-Id here) is refused,
/// `signature.component_not_covered`, though it verifies; `--require` changes the set.
#[test]
fn signature_not_covering_a_required_component_is_refused() {
    let keys = ec_keys();
    let signed = signed_by_ec(
        &keys,
        &[
            "--cover",
            "@method",
            "@target-uri",
            "content-digest",
            "x-road-client",
            "x-purpose",
        ],
    );
    verify_with_ec_certificate(&keys, signed.as_bytes())
        .assert_refused("signature.component_not_covered");
    let relaxed = datagate(
        &[
            "message",
            "verify",
            "--cert",
            &keys.path("ec.crt"),
            "--require",
            "@method",
            "content-digest",
        ],
        signed.as_bytes(),
    );
    assert!(relaxed.success, "{}", relaxed.stderr);
    let stricter = datagate(
        &[
            "message",
            "verify",
            "--cert",
            &keys.path("ec.crt"),
            "--require",
            "@method",
            "@authority",
        ],
        signed.as_bytes(),
    );
    stricter.assert_refused("signature.component_not_covered");
}

/// A signature past its `expires`, or whose `created` is older than `--max-age`,
/// is refused: `signature.expired`.
#[test]
fn expired_signature_is_refused() {
    let keys = ec_keys();
    let long_ago = (now().unix_timestamp() - 1000).to_string();
    let old = signed_by_ec(&keys, &["--created", &long_ago, "--expires-in", "3600"]);
    verify_with_ec_certificate(&keys, old.as_bytes()).assert_refused("signature.expired");
    let accepted = datagate(
        &[
            "message",
            "verify",
            "--cert",
            &keys.path("ec.crt"),
            "--max-age",
            "2000",
        ],
        old.as_bytes(),
    );
    assert!(accepted.success, "{}", accepted.stderr);

    let recent = (now().unix_timestamp() - 100).to_string();
    let lapsed = signed_by_ec(&keys, &["--created", &recent, "--expires-in", "10"]);
    verify_with_ec_certificate(&keys, lapsed.as_bytes()).assert_refused("signature.expired");
}

/// Checked against another gateway's certificate, the signature does not verify.
#[test]
fn signature_checked_against_another_certificate_is_refused() {
    let keys = ec_keys();
    let signed = signed_by_ec(&keys, &[]);
    datagate(
        &["message", "verify", "--cert", &keys.path("other.crt")],
        signed.as_bytes(),
    )
    .assert_refused("signature.invalid");
    datagate(
        &["message", "verify", "--key", &keys.path("other.pub")],
        signed.as_bytes(),
    )
    .assert_refused("signature.invalid");
}

/// An unsigned message is refused as `signature.missing`; one signed under another
/// label is found with `--label`.
#[test]
fn verify_finds_the_signature_by_label() {
    let keys = ec_keys();
    verify_with_ec_certificate(&keys, &request()).assert_refused("signature.missing");
    let signed = signed_by_ec(&keys, &["--label", "gw"]);
    verify_with_ec_certificate(&keys, signed.as_bytes()).assert_refused("signature.missing");
    let ran = datagate(
        &[
            "message",
            "verify",
            "--cert",
            &keys.path("ec.crt"),
            "--label",
            "gw",
        ],
        signed.as_bytes(),
    );
    assert!(ran.success, "{}", ran.stderr);
}

/// The password comes from the variable `--password-env` names; a wrong one is
/// `key.password_wrong` and neither it nor the key appears on stderr; an unset
/// variable is a usage error.
#[test]
fn key_password_comes_from_the_environment_and_is_never_printed() {
    let keys = ec_keys();
    keys.pkcs12("ec", "ec.p12", false);
    let p12 = keys.path("ec.p12");
    let args = sign_args(&p12, &["--password-env", PASSWORD_VAR]);
    let wrong = run(
        env!("CARGO_BIN_EXE_datagate"),
        &args,
        &request(),
        &[(PASSWORD_VAR, "not the password")],
    );
    wrong.assert_refused("key.password_wrong");
    assert!(!wrong.stderr.contains("not the password"));
    datagate(&args, &request()).assert_refused("usage.invalid");
    datagate(&sign_args(&p12, &[]), &request()).assert_refused("key.password_required");
    let right = datagate_with_password(&args, &request());
    assert!(right.success, "{}", right.stderr);
}

/// More than 16 MiB on stdin is refused, not truncated: `input.too_large`.
#[test]
fn oversized_input_is_refused_not_truncated() {
    let keys = ec_keys();
    let mut big = request_with("");
    big.resize(16 * 1024 * 1024 + 16, b'x');
    let key = keys.path("ec.pem");
    datagate(&sign_args(&key, &[]), &big).assert_refused("input.too_large");
    datagate(&["message", "decrypt", "--key", &key], &big).assert_refused("input.too_large");
}

// ---------------------------------------------------------------------------
// Interoperability of message signatures (http-message-signatures)
// ---------------------------------------------------------------------------

const SIGNATURE_CASES: [(&str, &str, &str); 4] = [
    ("ecdsa-p256-sha256", "EC", "ec"),
    ("rsa-pss-sha512", "RSA", "rsa"),
    ("rsa-v1_5-sha256", "RSA", "rsa"),
    ("ed25519", "ED25519", "ed"),
];

fn signature_keys() -> Keys {
    let keys = Keys::new();
    keys.pkcs8("ec", "EC")
        .pkcs8("rsa", "RSA")
        .pkcs8("ed", "ED25519");
    keys
}

/// What `message sign` writes, the independent Python implementation verifies (its
/// `verify` requires the same components and checks the digest), for the four
/// algorithms; and it refuses a tampered copy, so its "yes" means something.
#[test]
fn signed_request_verifies_with_python_http_message_signatures() {
    if !python_has(
        "http_message_signatures, requests",
        "pip install http-message-signatures requests",
    ) {
        return;
    }
    let script = interop_script("msgsig_interop.py");
    let keys = signature_keys();
    for (alg, _, name) in SIGNATURE_CASES {
        let key = keys.path(&format!("{name}.pem"));
        let signed = datagate(
            &[
                "message",
                "sign",
                "--key",
                &key,
                "--key-id",
                "interop-key",
                "--alg",
                alg,
            ],
            &request(),
        );
        assert!(signed.success, "{alg}: {}", signed.stderr);
        let public = keys.path(&format!("{name}.pub"));
        let python = run(
            "python3",
            &[&script, "verify", alg, &public],
            &signed.stdout,
            &[],
        );
        assert!(
            python.success,
            "{alg}: python refused our signature: {}",
            python.stderr
        );

        let tampered = signed
            .stdout_text()
            .replace("HOUSEHOLD-REGISTRATION", "DIRECT-MARKETING");
        let python = run(
            "python3",
            &[&script, "verify", alg, &public],
            tampered.as_bytes(),
            &[],
        );
        assert!(!python.success, "{alg}: python accepted a tampered message");
    }
}

/// What the independent Python implementation signs, `message verify` accepts, for
/// the four algorithms, with the default required components.
#[test]
fn python_signed_request_verifies_with_message_verify() {
    if !python_has(
        "http_message_signatures, requests",
        "pip install http-message-signatures requests",
    ) {
        return;
    }
    let script = interop_script("msgsig_interop.py");
    let keys = signature_keys();
    let digest = content_digest(BODY.as_bytes(), DigestAlgorithm::Sha256);
    let unsigned = request_with(&format!("Content-Digest: {digest}\r\n"));
    for (alg, _, name) in SIGNATURE_CASES {
        let key = keys.path(&format!("{name}.pem"));
        let python = run("python3", &[&script, "sign", alg, &key], &unsigned, &[]);
        assert!(
            python.success,
            "{alg}: python could not sign: {}",
            python.stderr
        );
        let verified = datagate(
            &[
                "message",
                "verify",
                "--key",
                &keys.path(&format!("{name}.pub")),
            ],
            &python.stdout,
        );
        assert!(verified.success, "{alg}: {}", verified.stderr);
        let report = verified.stdout_text();
        assert!(
            report.starts_with(&format!("ok keyid=interop-key alg={alg} covered=")),
            "{alg}: {report}"
        );

        // Python's signature over an altered body: the digest catches it.
        let tampered = python.stdout_text().replace("079099000123", "079099000124");
        datagate(
            &[
                "message",
                "verify",
                "--key",
                &keys.path(&format!("{name}.pub")),
            ],
            tampered.as_bytes(),
        )
        .assert_refused("digest.mismatch");
    }
}

// ---------------------------------------------------------------------------
// message encrypt / decrypt, and their interoperability (jwcrypto)
// ---------------------------------------------------------------------------

const PLAINTEXT: &str =
    r#"{"so_dinh_danh":"079099000123","ho_ten":"Nguyễn Văn A","ngay_sinh":"1999-01-01"}"#;

/// A payload encrypted to a certificate decrypts with the gateway's PKCS#12 (EC)
/// and legacy PKCS#12 (RSA); the `kid` is the certificate's fingerprint unless
/// `--kid` says otherwise, and `--cty` is carried. The wrong key is
/// `jwe.decryption_failed`.
#[test]
fn payload_encrypted_to_a_certificate_decrypts_with_its_pkcs12() {
    let keys = ec_keys();
    keys.pkcs12("ec", "ec.p12", false)
        .pkcs8("rsa", "RSA")
        .certificate("rsa")
        .pkcs12("rsa", "rsa-legacy.p12", true);
    for (name, p12) in [("ec", "ec.p12"), ("rsa", "rsa-legacy.p12")] {
        let crt = keys.path(&format!("{name}.crt"));
        let encrypted = datagate(
            &[
                "message",
                "encrypt",
                "--to",
                &crt,
                "--cty",
                "application/json",
            ],
            PLAINTEXT.as_bytes(),
        );
        assert!(encrypted.success, "{name}: {}", encrypted.stderr);
        let compact = encrypted.stdout_text();
        assert!(compact.ends_with('\n'));
        let header = datagate::jwe::header(compact.trim()).expect("header");
        let fingerprint = Certificate::from_pem(&std::fs::read(&crt).expect("crt"))
            .expect("certificate")
            .fingerprint_hex();
        assert_eq!(header.kid.as_deref(), Some(fingerprint.as_str()), "{name}");
        assert_eq!(header.cty.as_deref(), Some("application/json"), "{name}");
        assert!(!compact.contains("079099000123"));

        let decrypted = datagate_with_password(
            &[
                "message",
                "decrypt",
                "--key",
                &keys.path(p12),
                "--password-env",
                PASSWORD_VAR,
            ],
            &encrypted.stdout,
        );
        assert!(decrypted.success, "{name}: {}", decrypted.stderr);
        assert_eq!(decrypted.stdout, PLAINTEXT.as_bytes(), "{name}");
    }

    let with_kid = datagate(
        &[
            "message",
            "encrypt",
            "--to",
            &keys.path("ec.crt"),
            "--kid",
            "ss1-enc",
        ],
        PLAINTEXT.as_bytes(),
    );
    let header = datagate::jwe::header(with_kid.stdout_text().trim()).expect("header");
    assert_eq!(header.kid.as_deref(), Some("ss1-enc"));
    datagate(
        &["message", "decrypt", "--key", &keys.path("other.pem")],
        &with_kid.stdout,
    )
    .assert_refused("jwe.decryption_failed");
    datagate(
        &["message", "decrypt", "--key", &keys.path("ec.pem")],
        b"not.a.jwe",
    )
    .assert_refused("jwe.malformed");
}

fn jwe_keys() -> Keys {
    let keys = Keys::new();
    keys.pkcs8("ec", "EC").pkcs8("rsa", "RSA");
    for name in ["ec", "rsa"] {
        let public = keys.public_jwk(name, &format!("{name}-kid"));
        keys.write(
            &format!("{name}.public.json"),
            public.to_string().as_bytes(),
        );
        let private = keys.private_jwk(name);
        keys.write(
            &format!("{name}.private.json"),
            private.to_string().as_bytes(),
        );
    }
    keys
}

/// What `message encrypt --to JWK` writes, Python jwcrypto decrypts (EC P-256 with
/// ECDH-ES+A256KW, RSA with RSA-OAEP-256).
#[test]
fn encrypted_payload_decrypts_with_python_jwcrypto() {
    if !python_has("jwcrypto", "pip install jwcrypto") {
        return;
    }
    let script = interop_script("jwe_interop.py");
    let keys = jwe_keys();
    for (name, alg) in [("ec", "ECDH-ES+A256KW"), ("rsa", "RSA-OAEP-256")] {
        let encrypted = datagate(
            &[
                "message",
                "encrypt",
                "--to",
                &keys.path(&format!("{name}.public.json")),
            ],
            PLAINTEXT.as_bytes(),
        );
        assert!(encrypted.success, "{name}: {}", encrypted.stderr);
        let header = datagate::jwe::header(encrypted.stdout_text().trim()).expect("header");
        assert_eq!(header.alg.name(), alg);
        assert_eq!(header.kid.as_deref(), Some(format!("{name}-kid").as_str()));
        let python = run(
            "python3",
            &[
                &script,
                "decrypt",
                &keys.path(&format!("{name}.private.json")),
            ],
            &encrypted.stdout,
            &[],
        );
        assert!(
            python.success,
            "{name}: jwcrypto refused ours: {}",
            python.stderr
        );
        assert_eq!(python.stdout, PLAINTEXT.as_bytes(), "{name}");
    }
}

/// What Python jwcrypto encrypts to a gateway's JWK, `message decrypt --key PEM`
/// decrypts with the same key as PEM.
#[test]
fn python_encrypted_payload_decrypts_with_message_decrypt() {
    if !python_has("jwcrypto", "pip install jwcrypto") {
        return;
    }
    let script = interop_script("jwe_interop.py");
    let keys = jwe_keys();
    for name in ["ec", "rsa"] {
        let python = run(
            "python3",
            &[
                &script,
                "encrypt",
                &keys.path(&format!("{name}.public.json")),
            ],
            PLAINTEXT.as_bytes(),
            &[],
        );
        assert!(
            python.success,
            "{name}: jwcrypto could not encrypt: {}",
            python.stderr
        );
        let decrypted = datagate(
            &[
                "message",
                "decrypt",
                "--key",
                &keys.path(&format!("{name}.pem")),
            ],
            &python.stdout,
        );
        assert!(decrypted.success, "{name}: {}", decrypted.stderr);
        assert_eq!(decrypted.stdout, PLAINTEXT.as_bytes(), "{name}");
    }
}

// ---------------------------------------------------------------------------
// globalconf sign / verify
// ---------------------------------------------------------------------------

/// A valid document of `version`, issued a day ago and valid for a week from now
/// (the binary verifies at the real time).
fn current_document(keys: &AuthorityKeys, version: u64) -> Vec<u8> {
    let mut doc = document(keys, version);
    let at = |t: OffsetDateTime| Value::String(t.format(&Rfc3339).expect("format"));
    doc["issued_at"] = at(now() - time::Duration::days(1));
    doc["expires_at"] = at(now() + time::Duration::days(7));
    doc.to_string().into_bytes()
}

fn globalconf_sign(keys: &AuthorityKeys, key: &str, payload: &[u8]) -> Vec<u8> {
    let ran = datagate(
        &[
            "globalconf",
            "sign",
            "--key",
            &keys.path(key).display().to_string(),
        ],
        payload,
    );
    assert!(ran.success, "globalconf sign: {}", ran.stderr);
    ran.stdout
}

fn globalconf_verify(keys: &AuthorityKeys, anchor: &str, extra: &[&str], jws: &[u8]) -> Ran {
    let anchor = keys.path(anchor).display().to_string();
    let mut args = vec![
        "globalconf",
        "verify",
        "--anchor",
        &anchor,
        "--instance",
        "VN",
    ];
    args.extend_from_slice(extra);
    datagate(&args, jws)
}

/// A configuration signed by `globalconf sign` (ES256 with an EC key, RS256 with an
/// RSA key, chosen from the key) verifies with `globalconf verify` against the
/// authority's public key or certificate.
#[test]
fn globalconf_signed_with_the_cli_verifies_with_the_cli() {
    let keys = AuthorityKeys::generate();
    let payload = current_document(&keys, 1);
    for (key, anchor, alg) in [
        ("ec.pem", "ec.pub", "ES256"),
        ("ec.pem", "ec.crt", "ES256"),
        ("rsa.pem", "rsa.pub", "RS256"),
    ] {
        let jws = globalconf_sign(&keys, key, &payload);
        let header = String::from_utf8(
            jws.split(|&b| b == b'.')
                .next()
                .map(|h| URL_SAFE_NO_PAD.decode(h).expect("base64url"))
                .expect("header"),
        )
        .expect("utf-8");
        assert!(header.contains(&format!("\"alg\":\"{alg}\"")), "{header}");
        let ran = globalconf_verify(&keys, anchor, &[], &jws);
        assert!(ran.success, "{key} / {anchor}: {}", ran.stderr);
        assert!(
            ran.stdout_text().starts_with("ok version=1 expires_at="),
            "{}",
            ran.stdout_text()
        );
    }
}

/// A configuration signed by another key than the anchor is refused,
/// `globalconf.signature_invalid`; one for another instance,
/// `globalconf.instance_mismatch`.
#[test]
fn globalconf_verify_refuses_another_keys_signature() {
    let keys = AuthorityKeys::generate();
    let jws = globalconf_sign(&keys, "ec2.pem", &current_document(&keys, 1));
    globalconf_verify(&keys, "ec.pub", &[], &jws).assert_refused("globalconf.signature_invalid");
    let anchor = keys.path("ec2.pub").display().to_string();
    datagate(
        &[
            "globalconf",
            "verify",
            "--anchor",
            &anchor,
            "--instance",
            "LA",
        ],
        &jws,
    )
    .assert_refused("globalconf.instance_mismatch");
}

/// With `--held`, a newer version is accepted, the same one is reported unchanged
/// and an older one is refused, `globalconf.stale`.
#[test]
fn globalconf_verify_against_the_held_configuration_refuses_an_older_version() {
    let keys = AuthorityKeys::generate();
    let v1 = globalconf_sign(&keys, "ec.pem", &current_document(&keys, 1));
    let v2 = globalconf_sign(&keys, "ec.pem", &current_document(&keys, 2));
    let dir = tempfile::tempdir().expect("tempdir");
    let held = |jws: &[u8], name: &str| -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, jws).expect("write");
        path
    };
    let (held1, held2) = (held(&v1, "v1.jws"), held(&v2, "v2.jws"));
    let held1 = held1.display().to_string();
    let held2 = held2.display().to_string();

    let newer = globalconf_verify(&keys, "ec.pub", &["--held", &held1], &v2);
    assert!(newer.success, "{}", newer.stderr);
    assert!(newer.stdout_text().starts_with("ok version=2 "));
    let same = globalconf_verify(&keys, "ec.pub", &["--held", &held2], &v2);
    assert!(same.success, "{}", same.stderr);
    assert!(same.stdout_text().trim_end().ends_with(" unchanged"));
    globalconf_verify(&keys, "ec.pub", &["--held", &held2], &v1).assert_refused("globalconf.stale");
    // A held file the anchor did not sign is refused as such.
    globalconf_verify(&keys, "rsa.pub", &["--held", &held1], &v2)
        .assert_refused("globalconf.signature_invalid");
}

/// `globalconf sign` refuses a payload no gateway would accept, naming each problem
/// by its JSON path: `globalconf.invalid`.
#[test]
fn globalconf_sign_refuses_an_invalid_payload() {
    let keys = AuthorityKeys::generate();
    let mut doc: Value = serde_json::from_slice(&current_document(&keys, 1)).expect("json");
    doc["version"] = json!("one");
    let ran = datagate(
        &[
            "globalconf",
            "sign",
            "--key",
            &keys.path("ec.pem").display().to_string(),
        ],
        doc.to_string().as_bytes(),
    );
    ran.assert_refused("globalconf.invalid");
    assert!(ran.stderr.contains("version"), "{}", ran.stderr);
}
