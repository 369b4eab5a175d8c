//! RFC 3161 time-stamps of journal seals (`src/journal/tsa.rs`) against an independent
//! implementation: `openssl ts` is the TSA behind a small HTTP server, and `openssl ts
//! -verify` / `openssl ts -query -text` check what we make. The PKI (a root CA, a TSA
//! certificate with `extendedKeyUsage = critical,timeStamping`, a web server certificate
//! of the same CA, another root) is made with the `openssl` command line in a temporary
//! directory. Skipped with a notice when `openssl` is not installed, unless
//! `DATAGATE_REQUIRE_INTEROP=1`, which turns the skip into a failure.

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use datagate::journal::tsa::{
    MAX_REPLY_BYTES, TsaError, request_der, stamp, token_digest_and_time, verify_token,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use time::{Duration, OffsetDateTime};

const DIGEST: [u8; 32] = *b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff\
                             datagate seal #1";
const OTHER_DIGEST: [u8; 32] = [0x5a; 32];

/// The `openssl` configuration: certificate extensions, the TSA sections `openssl ts
/// -reply` runs (whole seconds; milliseconds; a short-lived certificate; SHA-512 only) and
/// the `openssl ca` section that issues the short-lived certificate.
const CONFIG: &str = r#"
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder

[ca_ext]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash

[tsa_ext]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[web_ext]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth

[tsa]
default_tsa = tsa_config1

# Whole seconds.
[tsa_config1]
dir = .
serial = $dir/serial
signer_cert = $dir/tsa.pem
signer_key = $dir/tsa.key
certs = $dir/tsa.pem
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256
accuracy = secs:1, millisecs:500
ess_cert_id_alg = sha256

# Milliseconds in genTime (RFC 3161 allows fractional seconds).
[tsa_ms]
dir = .
serial = $dir/serial
signer_cert = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256
clock_precision_digits = 3
ess_cert_id_alg = sha256

# The TSA certificate that expires seconds after it is made (`openssl ca`, which takes
# exact dates).
[tsa_short]
dir = .
serial = $dir/serial
signer_cert = $dir/short-tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256
ess_cert_id_alg = sha256

[ca]
default_ca = test_ca
[test_ca]
dir = .
database = $dir/index.txt
new_certs_dir = $dir
serial = $dir/ca-serial
default_md = sha256
policy = any_name
unique_subject = no
copy_extensions = none
[any_name]
commonName = supplied

# Accepts no SHA-256 imprint: answers status rejection, failInfo badAlg.
[tsa_sha512_only]
dir = .
serial = $dir/serial
signer_cert = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha512
ess_cert_id_alg = sha256
"#;

/// Whether the `openssl` command can be used; panics instead of skipping when required.
fn openssl_available() -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let required = std::env::var("DATAGATE_REQUIRE_INTEROP").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "DATAGATE_REQUIRE_INTEROP=1 but the openssl command is not available"
        );
        eprintln!("NOTICE: RFC 3161 interop test skipped: the openssl command is not installed");
    }
    ok
}

/// Runs `openssl` in `dir` with the arguments of `line` (split at whitespace).
fn openssl(dir: &Path, line: &str) -> Output {
    Command::new("openssl")
        .current_dir(dir)
        .args(line.split_whitespace())
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs")
}

/// `openssl ts -verify` of the token in `file` for `digest` under `ca.pem`.
fn openssl_ts_verify(dir: &Path, digest: &[u8; 32], file: &str) -> Output {
    let digest = hex(digest);
    openssl(
        dir,
        &format!("ts -verify -digest {digest} -in {file} -token_in -CAfile ca.pem"),
    )
}

/// Runs `openssl` in `dir` and requires success; returns stdout.
fn openssl_ok(dir: &Path, line: &str) -> String {
    let out = openssl(dir, line);
    assert!(
        out.status.success(),
        "openssl {line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The test PKI, in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca_der: Vec<u8>,
    other_ca_der: Vec<u8>,
    tsa_der: Vec<u8>,
}

impl Pki {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("openssl.cnf"), CONFIG).expect("write config");
        std::fs::write(d.join("serial"), "01\n").expect("write serial");
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
        for (name, cn) in [
            ("ca", "Datagate-Test-TSA-Root"),
            ("other-ca", "Another-Root"),
        ] {
            openssl_ok(
                d,
                &format!(
                    "req -x509 -config openssl.cnf {ec} -keyout {name}.key -out {name}.pem \
                     -days 30 -subj /CN={cn} -extensions ca_ext"
                ),
            );
        }
        for (name, cn, ext) in [
            ("tsa", "Datagate-Test-TSA", "tsa_ext"),
            ("web", "Not-a-TSA", "web_ext"),
        ] {
            openssl_ok(
                d,
                &format!(
                    "req -new -config openssl.cnf {ec} -keyout {name}.key -out {name}.csr \
                     -subj /CN={cn}"
                ),
            );
            openssl_ok(
                d,
                &format!(
                    "x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
                     -out {name}.pem -days 30 -extfile openssl.cnf -extensions {ext}"
                ),
            );
        }
        let der = |pem: &str| {
            let out = format!("{pem}.der");
            openssl_ok(d, &format!("x509 -in {pem} -outform DER -out {out}"));
            std::fs::read(d.join(out)).expect("read DER")
        };
        Pki {
            ca_der: der("ca.pem"),
            other_ca_der: der("other-ca.pem"),
            tsa_der: der("tsa.pem"),
            dir,
        }
    }

    /// Issues `short-tsa.pem` (the TSA's key, the timeStamping extensions), valid from an
    /// hour ago until `not_after`.
    fn issue_short_lived_tsa(&self, not_after: OffsetDateTime) {
        let d = self.path();
        std::fs::write(d.join("index.txt"), "").expect("write index");
        std::fs::write(d.join("ca-serial"), "1000\n").expect("write serial");
        let format = time::macros::format_description!("[year][month][day][hour][minute][second]Z");
        let start = (OffsetDateTime::now_utc() - Duration::hours(1))
            .format(format)
            .expect("formats");
        let end = not_after.format(format).expect("formats");
        openssl_ok(
            d,
            &format!(
                "ca -batch -config openssl.cnf -cert ca.pem -keyfile ca.key -in tsa.csr \
                 -out short-tsa.pem -startdate {start} -enddate {end} -extensions tsa_ext -notext"
            ),
        );
    }
}

/// The HTTP face of the TSA: `POST /{mode}`.
struct Tsa {
    dir: PathBuf,
    counter: AtomicU64,
    /// The last reply `openssl ts` made, for `/replay`.
    last_reply: Mutex<Option<Vec<u8>>>,
}

/// `openssl ts -reply` for the query in `body`, with the TSA section `section`.
fn openssl_reply(dir: &Path, n: u64, section: &str, body: &[u8]) -> Result<Vec<u8>, String> {
    let (query, reply) = (format!("query-{n}.tsq"), format!("reply-{n}.tsr"));
    std::fs::write(dir.join(&query), body).map_err(|e| e.to_string())?;
    let out = openssl(
        dir,
        &format!(
            "ts -reply -config openssl.cnf -section {section} -queryfile {query} -out {reply}"
        ),
    );
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    std::fs::read(dir.join(reply)).map_err(|e| e.to_string())
}

async fn tsa_endpoint(
    State(tsa): State<Arc<Tsa>>,
    UrlPath(mode): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        != Some("application/timestamp-query")
    {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "not a timestamp-query").into_response();
    }
    let section = match mode.as_str() {
        "tsa" => "tsa_config1",
        "ms" => "tsa_ms",
        "sha512-only" => "tsa_sha512_only",
        "short" => "tsa_short",
        "replay" => {
            let last = tsa.last_reply.lock().expect("lock").clone();
            return reply(last.expect("a reply to replay"));
        }
        "garbage" => return reply(b"this is not DER".to_vec()),
        "huge" => return reply(vec![0x30; MAX_REPLY_BYTES + 1]),
        "http-500" => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        // TimeStampResp { PKIStatusInfo { rejection, failInfo systemFailure (bit 25) } }:
        // a failure bit beyond the 16 that cmpv2 0.2's PKIFailureInfo can hold.
        "system-failure" => {
            return reply(vec![
                0x30, 0x0c, 0x30, 0x0a, 0x02, 0x01, 0x02, 0x03, 0x05, 0x06, 0x00, 0x00, 0x00, 0x40,
            ]);
        }
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let n = tsa.counter.fetch_add(1, Ordering::Relaxed);
    let dir = tsa.dir.clone();
    let body = body.to_vec();
    let made = tokio::task::spawn_blocking(move || openssl_reply(&dir, n, section, &body))
        .await
        .expect("openssl task");
    match made {
        Ok(bytes) => {
            *tsa.last_reply.lock().expect("lock") = Some(bytes.clone());
            reply(bytes)
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

fn reply(bytes: Vec<u8>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/timestamp-reply")],
        bytes,
    )
        .into_response()
}

/// A PKI and its TSA listening on a local port.
struct Fixture {
    pki: Pki,
    base: String,
    client: reqwest::Client,
}

impl Fixture {
    /// `None` when `openssl` is missing (and not required).
    async fn start() -> Option<Fixture> {
        if !openssl_available() {
            return None;
        }
        let pki = tokio::task::spawn_blocking(Pki::new).await.expect("PKI");
        let tsa = Arc::new(Tsa {
            dir: pki.path().to_path_buf(),
            counter: AtomicU64::new(0),
            last_reply: Mutex::new(None),
        });
        let router = axum::Router::new()
            .route("/{mode}", axum::routing::post(tsa_endpoint))
            .with_state(tsa);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("client");
        Some(Fixture { pki, base, client })
    }

    fn url(&self, mode: &str) -> String {
        format!("{}/{mode}", self.base)
    }

    async fn stamp(&self, mode: &str, digest: &[u8; 32], nonce: u64) -> Result<Vec<u8>, TsaError> {
        stamp(&self.client, &self.url(mode), digest, nonce).await
    }

    fn roots(&self) -> Vec<Vec<u8>> {
        vec![self.pki.ca_der.clone()]
    }

    /// Writes `bytes` to a file of the PKI's directory; returns its name.
    fn write(&self, name: &str, bytes: &[u8]) -> String {
        std::fs::write(self.pki.path().join(name), bytes).expect("write");
        name.to_owned()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The TSA's `genTime` must be the real time of stamping, give or take the TSA's clock.
fn assert_now(gen_time: OffsetDateTime, before: OffsetDateTime, after: OffsetDateTime) {
    let slack = Duration::seconds(2);
    assert!(
        before - slack <= gen_time && gen_time <= after + slack,
        "genTime {gen_time} outside [{before}, {after}]"
    );
}

/// RFC 3161 §2.4: our TimeStampReq, stamped by `openssl ts -reply` over HTTP, comes back
/// as a token that our verifier accepts under the TSA's root, with the TSA's `genTime`
/// (now); parsing alone reads the same digest and time. A TSA writing milliseconds in
/// `genTime` (fractional seconds, which RFC 3161 allows) is read to the millisecond.
#[tokio::test]
async fn a_token_from_openssl_ts_verifies_and_gives_the_stamping_time() {
    let Some(fx) = Fixture::start().await else {
        return;
    };
    let before = OffsetDateTime::now_utc();
    // A nonce with its top bit set: a positive INTEGER needs a leading zero byte.
    let token = fx
        .stamp("tsa", &DIGEST, 0xf000_0000_0000_0042)
        .await
        .expect("stamped");
    let after = OffsetDateTime::now_utc();
    let gen_time = verify_token(&token, &DIGEST, &fx.roots()).expect("verifies");
    assert_now(gen_time, before, after);
    assert_eq!(gen_time.nanosecond(), 0, "whole seconds from tsa_config1");
    assert_eq!(
        token_digest_and_time(&token).expect("parses"),
        (DIGEST, gen_time)
    );

    // Milliseconds: openssl drops a fraction of .000, so a few tries find one.
    let mut fractional = None;
    for nonce in 1..=5 {
        let token = fx.stamp("ms", &DIGEST, nonce).await.expect("stamped");
        let gen_time = verify_token(&token, &DIGEST, &fx.roots()).expect("verifies");
        assert_eq!(gen_time.nanosecond() % 1_000_000, 0, "milliseconds only");
        if gen_time.nanosecond() != 0 {
            fractional = Some((token, gen_time));
            break;
        }
    }
    let (token, gen_time) = fractional.expect("a genTime with a fraction of a second");
    // openssl's own reading of the same token shows the same milliseconds.
    let file = fx.write("ms-token.der", &token);
    let text = openssl_ok(
        fx.pki.path(),
        &format!("ts -reply -in {file} -token_in -text"),
    );
    // openssl prints the fraction without trailing zeros (.6 for 600 ms).
    let millis = format!(
        ".{} ",
        format!("{:03}", gen_time.millisecond()).trim_end_matches('0')
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("Time stamp:") && l.contains(&millis)),
        "openssl shows {millis} in:\n{text}"
    );
}

/// RFC 3161 §2.4, the other direction: `openssl ts -verify` accepts the token we obtained
/// (saved as a file) for our digest under the CA, and refuses it for another digest;
/// `openssl ts -query` reads our DER TimeStampReq: SHA-256, our hash, our nonce (one with
/// its top bit set, so it must be encoded as a positive INTEGER), certificate requested.
#[tokio::test]
async fn openssl_verifies_our_token_and_reads_our_request() {
    let Some(fx) = Fixture::start().await else {
        return;
    };
    let dir = fx.pki.path();
    let token = fx.stamp("tsa", &DIGEST, 7).await.expect("stamped");
    let file = fx.write("token.der", &token);
    let verify = |digest: &[u8; 32]| openssl_ts_verify(dir, digest, &file);
    let ok = verify(&DIGEST);
    assert!(
        ok.status.success() && String::from_utf8_lossy(&ok.stdout).contains("Verification: OK"),
        "openssl ts -verify: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        !verify(&OTHER_DIGEST).status.success(),
        "openssl refuses another digest"
    );

    let nonce = 0x8000_0000_0000_0001;
    let file = fx.write("request.tsq", &request_der(&DIGEST, nonce));
    let text = openssl_ok(dir, &format!("ts -query -in {file} -text"));
    for expected in [
        "Version: 1",
        "Hash Algorithm: sha256",
        "Nonce: 0x8000000000000001",
        "Certificate required: yes",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }
    // openssl prints the hash as a hex dump: "0000 - 00 11 … 77-88 … ff   …".
    for (row, bytes) in DIGEST.chunks(16).enumerate() {
        let half = |h: &[u8]| {
            h.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let line = format!(
            "{:04x} - {}-{}",
            row * 16,
            half(&bytes[..8]),
            half(&bytes[8..])
        );
        assert!(text.contains(&line), "{line:?} in:\n{text}");
    }
}

/// RFC 3161 §2.4.2: a genuine token proves its own imprint only. Checked against another
/// digest it is an Imprint error; under another CA's root, or no root, the signer is
/// Untrusted.
#[tokio::test]
async fn a_token_for_another_digest_or_under_other_roots_is_refused() {
    let Some(fx) = Fixture::start().await else {
        return;
    };
    let token = fx.stamp("tsa", &DIGEST, 1).await.expect("stamped");
    assert!(matches!(
        verify_token(&token, &OTHER_DIGEST, &fx.roots()),
        Err(TsaError::Imprint(_))
    ));
    let other = vec![fx.pki.other_ca_der.clone()];
    assert!(matches!(
        verify_token(&token, &DIGEST, &other),
        Err(TsaError::Untrusted(_))
    ));
    assert!(matches!(
        verify_token(&token, &DIGEST, &[]),
        Err(TsaError::Untrusted(_))
    ));
    assert!(matches!(
        verify_token(&token, &DIGEST, &[b"not a certificate".to_vec()]),
        Err(TsaError::Untrusted(_))
    ));
    // Both roots given: the right one is enough.
    let both = vec![fx.pki.other_ca_der.clone(), fx.pki.ca_der.clone()];
    verify_token(&token, &DIGEST, &both).expect("verifies with one of the roots");
}

/// RFC 3161 §2.4.2: the token is a signed whole. Every single-byte change anywhere in a
/// token (each position, two flips per position) is refused, including in the parts of
/// the CMS structure that the signature does not cover (the `digestAlgorithms` hint, the
/// SignerInfo's version, digest and signature algorithm parameters); a change inside the
/// TSTInfo (the signed time or hash) or inside the signature is a Signature error. One
/// exception, in a token whose certificate set holds the signer's certificate twice
/// (`openssl ts` with `certs` repeating the signer): a change inside the copy OpenSSL does
/// not use changes nothing proven, and the token still gives the same time.
#[tokio::test]
async fn a_token_with_any_byte_flipped_is_refused() {
    let Some(fx) = Fixture::start().await else {
        return;
    };
    let roots = fx.roots();
    let accepted_flips = |token: &[u8]| {
        let mut accepted = Vec::new();
        for position in 0..token.len() {
            for flip in [0x01, 0xff] {
                let mut changed = token.to_vec();
                changed[position] ^= flip;
                if let Ok(time) = verify_token(&changed, &DIGEST, &roots) {
                    accepted.push((position, flip, time));
                }
            }
        }
        accepted
    };

    // The signer's certificate once (tsa_ms has no `certs`).
    let token = fx.stamp("ms", &DIGEST, 1).await.expect("stamped");
    verify_token(&token, &DIGEST, &roots).expect("the original verifies");
    let accepted = accepted_flips(&token);
    assert!(accepted.is_empty(), "changed tokens accepted: {accepted:?}");

    // The signer's certificate twice (tsa_config1): only flips inside a copy pass.
    let token = fx.stamp("tsa", &DIGEST, 1).await.expect("stamped");
    let gen_time = verify_token(&token, &DIGEST, &roots).expect("the original verifies");
    let cert = &fx.pki.tsa_der;
    let copies: Vec<usize> = (0..token.len() - cert.len())
        .filter(|&i| token[i..].starts_with(cert))
        .collect();
    assert_eq!(copies.len(), 2, "the certificate twice");
    for (position, flip, time) in accepted_flips(&token) {
        assert!(
            copies
                .iter()
                .any(|&c| (c..c + cert.len()).contains(&position)),
            "flip {flip:#x} at {position}, outside the certificate copies, accepted"
        );
        assert_eq!(time, gen_time);
    }

    // Inside the TSTInfo: the genTime's last digit of seconds.
    let tst_at = find(&token, &tst_info_of(&fx, &token)).expect("TSTInfo inside the token");
    let text = gen_time
        .format(time::macros::format_description!(
            "[year][month][day][hour][minute][second]Z"
        ))
        .expect("formats");
    let time_at = tst_at + find(&token[tst_at..], text.as_bytes()).expect("genTime") + 13;
    let mut changed = token.clone();
    changed[time_at] = if changed[time_at] == b'0' { b'1' } else { b'0' };
    let result = verify_token(&changed, &DIGEST, &roots);
    assert!(matches!(result, Err(TsaError::Signature(_))), "{result:?}");
    // Inside the imprint.
    let hash_at = tst_at + find(&token[tst_at..], &DIGEST).expect("hash");
    let mut changed = token.clone();
    changed[hash_at + 31] ^= 0x01;
    let result = verify_token(&changed, &DIGEST, &roots);
    assert!(matches!(result, Err(TsaError::Signature(_))), "{result:?}");
    // Inside the signature: the token ends with the ECDSA signature's last byte (no
    // unsigned attributes).
    let mut changed = token.clone();
    let last = changed.len() - 1;
    changed[last] ^= 0x01;
    let result = verify_token(&changed, &DIGEST, &roots);
    assert!(matches!(result, Err(TsaError::Signature(_))), "{result:?}");
}

/// The TSTInfo a token carries, as `openssl cms` extracts it (no checks).
fn tst_info_of(fx: &Fixture, token: &[u8]) -> Vec<u8> {
    let file = fx.write("extract.der", token);
    openssl_ok(
        fx.pki.path(),
        &format!("cms -verify -noverify -inform DER -in {file} -binary -out tst-info.der"),
    );
    std::fs::read(fx.pki.path().join("tst-info.der")).expect("read TSTInfo")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// RFC 3161 §2.3 and §2.4.1: the signer must be a TSA, named in the token. The same
/// TSTInfo re-signed with `openssl cms -sign -cades` by the TSA verifies (so these tokens
/// are well made), but signed by a certificate of the same CA whose extended key usage is
/// serverAuth, or by the TSA without the ESS signing-certificate attribute, it is
/// Untrusted; `openssl ts -verify` refuses both too.
#[tokio::test]
async fn a_token_signed_by_a_non_tsa_or_without_ess_signing_certificate_is_refused() {
    let Some(fx) = Fixture::start().await else {
        return;
    };
    let dir = fx.pki.path();
    let token = fx.stamp("tsa", &DIGEST, 1).await.expect("stamped");
    fx.write("tst.der", &tst_info_of(&fx, &token));
    let sign = |out: &str, signer: &str, cades: bool| {
        let cades = if cades { "-cades" } else { "" };
        openssl_ok(
            dir,
            &format!(
                "cms -sign -binary -nodetach {cades} -md sha256 \
                 -econtent_type 1.2.840.113549.1.9.16.1.4 -signer {signer}.pem \
                 -inkey {signer}.key -in tst.der -outform DER -out {out}"
            ),
        );
        let their_verdict = openssl_ts_verify(dir, &DIGEST, out).status.success();
        (std::fs::read(dir.join(out)).expect("read"), their_verdict)
    };

    let (resigned, openssl_accepts) = sign("resigned.der", "tsa", true);
    assert!(openssl_accepts);
    let gen_time = verify_token(&resigned, &DIGEST, &fx.roots()).expect("re-signed by the TSA");
    assert_eq!(gen_time, token_digest_and_time(&token).expect("parses").1);

    let (by_web, openssl_accepts) = sign("by-web.der", "web", true);
    assert!(!openssl_accepts);
    let result = verify_token(&by_web, &DIGEST, &fx.roots());
    assert!(
        matches!(&result, Err(TsaError::Untrusted(m)) if m.contains("purpose")),
        "{result:?}"
    );

    let (no_ess, openssl_accepts) = sign("no-ess.der", "tsa", false);
    assert!(!openssl_accepts);
    let result = verify_token(&no_ess, &DIGEST, &fx.roots());
    assert!(
        matches!(&result, Err(TsaError::Untrusted(m)) if m.contains("signing certificate")),
        "{result:?}"
    );
}

/// RFC 3161 §2.4.2: only status granted yields a token, and the token must answer this
/// request. A rejection (`openssl ts` accepting SHA-512 only: badAlg), a rejection with
/// `systemFailure`, garbage, an HTTP 500, an answer over the size cap, no listener, a
/// replayed earlier answer (other nonce) and a replayed answer for another digest are
/// each an error of its kind, never a panic.
#[tokio::test]
async fn a_tsa_that_refuses_or_answers_wrongly_is_an_error() {
    let Some(fx) = Fixture::start().await else {
        return;
    };
    let result = fx.stamp("sha512-only", &DIGEST, 1).await;
    assert_eq!(
        result,
        Err(TsaError::Refused {
            status: 2,
            fail_info: 1 // badAlg
        })
    );
    let result = fx.stamp("system-failure", &DIGEST, 1).await;
    assert_eq!(
        result,
        Err(TsaError::Refused {
            status: 2,
            fail_info: 1 << 25
        })
    );
    let result = fx.stamp("garbage", &DIGEST, 1).await;
    assert!(matches!(result, Err(TsaError::Malformed(_))), "{result:?}");
    let result = fx.stamp("http-500", &DIGEST, 1).await;
    assert!(matches!(result, Err(TsaError::Transport(_))), "{result:?}");
    let result = fx.stamp("huge", &DIGEST, 1).await;
    assert!(
        matches!(&result, Err(TsaError::Transport(m)) if m.contains("larger than")),
        "{result:?}"
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://user:secret@{}/tsa",
        closed.local_addr().expect("addr")
    );
    drop(closed);
    let result = stamp(&fx.client, &url, &DIGEST, 1).await;
    assert!(
        matches!(&result, Err(TsaError::Transport(m)) if !m.contains("secret")),
        "{result:?}"
    );

    fx.stamp("tsa", &DIGEST, 1).await.expect("stamped");
    assert_eq!(fx.stamp("replay", &DIGEST, 2).await, Err(TsaError::Nonce));
    assert!(matches!(
        fx.stamp("replay", &OTHER_DIGEST, 1).await,
        Err(TsaError::Imprint(_))
    ));
}

/// RFC 3161 §2.4.2 and §4.3: a token's chain is checked as of its genTime, so a seal
/// stamped while the TSA's certificate was valid still verifies once that certificate has
/// expired (where `openssl ts -verify`, which checks as of now, refuses it), and a token a
/// TSA signs after its certificate expired is Untrusted.
#[tokio::test]
async fn the_chain_is_checked_as_of_the_gen_time() {
    let Some(fx) = Fixture::start().await else {
        return;
    };
    let not_after = OffsetDateTime::now_utc() + Duration::seconds(3);
    fx.pki.issue_short_lived_tsa(not_after);
    let before_expiry = fx.stamp("short", &DIGEST, 1).await.expect("stamped");
    let gen_time = verify_token(&before_expiry, &DIGEST, &fx.roots()).expect("verifies");
    assert!(gen_time <= not_after);

    let wait = not_after - OffsetDateTime::now_utc() + Duration::seconds(2);
    tokio::time::sleep(wait.try_into().expect("positive")).await;
    assert_eq!(
        verify_token(&before_expiry, &DIGEST, &fx.roots()),
        Ok(gen_time),
        "still verifies after the TSA's certificate expired"
    );
    let file = fx.write("before-expiry.der", &before_expiry);
    let theirs = openssl_ts_verify(fx.pki.path(), &DIGEST, &file);
    assert!(
        !theirs.status.success() && String::from_utf8_lossy(&theirs.stderr).contains("expired"),
        "openssl ts -verify checks as of now"
    );

    let after_expiry = fx.stamp("short", &DIGEST, 2).await.expect("stamped");
    let result = verify_token(&after_expiry, &DIGEST, &fx.roots());
    assert!(
        matches!(&result, Err(TsaError::Untrusted(m)) if m.contains("expired")),
        "{result:?}"
    );
}

/// Issue 9 (time-stamped seals; RFC 3161 §2.4): a journal configured with a TSA sends
/// each new seal's digest to it, attaches the verified token to the seal between batches,
/// and `verify` then checks every token against the TSA's roots; `openssl ts -verify`
/// accepts a stored token for the SHA-256 of its seal's payload (independent check), and
/// under another CA's roots the journal no longer verifies.
#[tokio::test]
async fn journal_seals_are_time_stamped_and_the_tokens_verify_both_ways() {
    use datagate::journal::{self, Journal};
    let Some(fx) = Fixture::start().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("journal.sqlite");
    let key_pem = std::fs::read_to_string(fx.pki.path().join("web.key")).expect("key");
    let cert_der = {
        openssl_ok(fx.pki.path(), "x509 -in web.pem -outform DER -out web.der");
        std::fs::read(fx.pki.path().join("web.der")).expect("DER")
    };
    let sealer = journal::chain::Sealer {
        key: datagate::msgsig::SigningKey::from_pem(&key_pem, None).expect("seal key"),
        certificate: cert_der,
    };
    let stamper = journal::stamper::Stamper::spawn(fx.client.clone(), fx.url("tsa"), fx.roots());
    let store = journal::sqlite::SqliteJournal::open(&path)
        .await
        .expect("open")
        .with_sealer(sealer)
        .with_min_free_bytes(0)
        .with_stamper(stamper);
    let upkeep = journal::Upkeep {
        interval: std::time::Duration::from_millis(100),
        ..journal::Upkeep::default()
    };
    let journal = Journal::start_with(store, &[9; 32], 16, upkeep);
    let at = time::macros::datetime!(2026-12-01 09:00 UTC);
    for n in 0..3 {
        let record = journal::ExchangeRecord {
            message_id: format!("stamped-{n}"),
            client: None,
            service: None,
            method: "GET".into(),
            operation: None,
            purpose: None,
            contract_id: None,
            peer_fingerprint: None,
            status: 200,
            error_code: None,
            request_in_at: at,
            request_out_at: None,
            response_in_at: None,
            response_out_at: at,
            request_bytes: 0,
            response_bytes: 0,
            request_digest: "00".repeat(32),
            response_digest: None,
            subject_digest: None,
            leg: "local",
            signature_digest: None,
            remote_key_id: None,
            key_id: journal.key_id().to_owned(),
        };
        journal.append(record).await.expect("append");
    }
    let locator = journal::store::Locator::Sqlite(path.clone());
    let roots = fx.roots();
    let mut summary = None;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        match journal::verify::verify(&locator, None, None, Some(&roots), &mut |_, _| {})
            .await
            .expect("verify")
        {
            journal::verify::Verification::Intact(s) if s.seals > 0 && s.timestamped == s.seals => {
                summary = Some(s);
                break;
            }
            journal::verify::Verification::Intact(_) => {}
            broken => panic!("{broken:?}"),
        }
    }
    let summary = summary.expect("every seal stamped in time");
    // The three records are sealed together (within the seal's delay), and stamped.
    assert!(summary.seals >= 1, "{summary:?}");
    assert_eq!(summary.chained, 3, "{summary:?}");
    assert_eq!(summary.timestamped, summary.seals, "{summary:?}");

    // Independently: openssl ts -verify on a stored token for its seal's payload digest.
    let bundle = journal::bundle::export(
        &locator,
        &journal::bundle::Selection::MessageId("stamped-1".into()),
    )
    .await
    .expect("export");
    let seal = &bundle.seals[0];
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let parse = |h: &str| {
        let mut out = [0u8; 32];
        for (i, pair) in h.as_bytes().chunks(2).enumerate() {
            out[i] = u8::from_str_radix(std::str::from_utf8(pair).expect("utf8"), 16).expect("hex");
        }
        out
    };
    let payload = journal::chain::seal_payload(
        seal.first_seq,
        seal.last_seq,
        &parse(&seal.merkle_root),
        &parse(&seal.head_hash),
        &seal.sealed_at,
        &b64.decode(&seal.certificate).expect("cert"),
    );
    let digest: [u8; 32] = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &payload)
        .as_ref()
        .try_into()
        .expect("32 bytes");
    let token = b64
        .decode(seal.timestamp.as_deref().expect("a token in the bundle"))
        .expect("base64");
    let name = fx.write("seal-token.der", &token);
    let checked = openssl_ts_verify(fx.pki.path(), &digest, &name);
    assert!(checked.status.success(), "{checked:?}");
    assert!(
        datagate::journal::bundle::verify_bundle(&serde_json::to_vec(&bundle).expect("json"))
            .is_ok()
    );

    // Under another CA's roots the tokens do not verify, and the journal says so.
    let other = vec![fx.pki.other_ca_der.clone()];
    match journal::verify::verify(&locator, None, None, Some(&other), &mut |_, _| {})
        .await
        .expect("verify")
    {
        journal::verify::Verification::Broken { reason, .. } => {
            assert!(reason.contains("time-stamp"), "{reason}")
        }
        intact => panic!("{intact:?}"),
    }
}
