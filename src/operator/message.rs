//! `datagate message sign | verify | encrypt | decrypt`.
//!
//! Sign and verify work on an HTTP/1.1 request as text (`msgsig::http1`): the
//! signer adds `Content-Digest` (SHA-256, unless a matching one is there), then
//! `Signature-Input` and `Signature` under one label; the verifier checks the
//! signature, that it covers what a gateway requires, that it is fresh, and the
//! digest against the body. Encrypt and decrypt wrap `jwe` with the production
//! policy.

use super::{MAX_INPUT_BYTES, OperatorError, read_bounded, read_file, write_all};
use crate::jwe::{self, DEFAULT_MAX_BYTES, Policy};
use crate::keystore::{Certificate, KeyError, KeyKind, MAX_FILE_BYTES, PrivateKey, PublicKey};
use crate::msgsig::{
    self, Algorithm, Component, DigestAlgorithm, HttpMessage, ParsedMessage, SignatureParams,
    SigningKey, VerifyingKey,
};
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::fmt;
use std::io::{Read, Write};
use std::path::PathBuf;
use time::OffsetDateTime;

/// The signature label used when none is given.
pub const DEFAULT_LABEL: &str = "sig1";

/// How long a signature stays valid when `--expires-in` is not given, in seconds.
pub const DEFAULT_EXPIRES_IN_SECS: u32 = 300;

/// The oldest `created` a verifier accepts when `--max-age` is not given, in seconds.
pub const DEFAULT_MAX_AGE_SECS: u32 = 300;

/// How far the signer's clock may run ahead of ours, in seconds.
pub const DEFAULT_MAX_SKEW_SECS: u32 = 30;

/// The components every exchange request is signed over and a verifier requires.
const MINIMUM: [&str; 5] = [
    "@method",
    "@target-uri",
    "content-digest",
    "x-road-client",
    "x-road-id",
];

/// The headers also covered (and required) whenever the message carries them: they
/// say who asks, why and about whom, and must not be altered in transit.
const COVERED_WHEN_PRESENT: [&str; 5] = [
    "x-road-target-server",
    "x-purpose",
    "x-road-userid",
    "x-road-issue",
    "x-citizen-assertion",
];

/// The headers the signer covers by default when present (the minimum's X-Road
/// headers are optional for the signer: it signs what the message has).
const SIGNED_WHEN_PRESENT: [&str; 2] = ["x-road-client", "x-road-id"];

fn header(name: &str) -> Component {
    Component::Header(name.to_owned())
}

fn present(message: &dyn HttpMessage, name: &str) -> bool {
    !message.header_values(name).is_empty()
}

/// What `message sign` covers by default: `@method`, `@target-uri`,
/// `content-digest`, and each X-Road header of the message.
pub fn default_covered(message: &dyn HttpMessage) -> Vec<Component> {
    let mut covered = vec![
        Component::Method,
        Component::TargetUri,
        header("content-digest"),
    ];
    covered.extend(
        SIGNED_WHEN_PRESENT
            .iter()
            .chain(COVERED_WHEN_PRESENT.iter())
            .filter(|name| present(message, name))
            .map(|name| header(name)),
    );
    covered
}

/// What `message verify` requires by default: the minimum (`@method`, `@target-uri`,
/// `content-digest`, `x-road-client`, `x-road-id`) and each optional X-Road header
/// the message carries.
pub fn default_required(message: &dyn HttpMessage) -> Vec<Component> {
    let mut required: Vec<Component> = vec![Component::Method, Component::TargetUri];
    required.extend(MINIMUM[2..].iter().map(|name| header(name)));
    required.extend(
        COVERED_WHEN_PRESENT
            .iter()
            .filter(|name| present(message, name))
            .map(|name| header(name)),
    );
    required
}

/// The options of `message sign`.
pub struct SignOptions {
    /// The private key file (PEM, encrypted PEM or PKCS#12).
    pub key: PathBuf,
    /// The password of an encrypted key or PKCS#12 (from `--password-env`).
    pub password: Option<String>,
    /// The `keyid` parameter (by convention the certificate's SHA-256 fingerprint).
    pub key_id: String,
    /// The algorithm; `None` takes the key's default (`rsa-pss-sha512` for RSA).
    pub alg: Option<Algorithm>,
    /// The signature label (default [`DEFAULT_LABEL`]).
    pub label: String,
    /// `expires` is `created` plus this many seconds (default [`DEFAULT_EXPIRES_IN_SECS`]).
    pub expires_in_secs: u32,
    /// The covered components; `None` takes [`default_covered`].
    pub cover: Option<Vec<Component>>,
    /// `created`, the time of signing.
    pub created: OffsetDateTime,
}

impl fmt::Debug for SignOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignOptions")
            .field("key", &self.key)
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .field("key_id", &self.key_id)
            .field("alg", &self.alg)
            .field("label", &self.label)
            .field("expires_in_secs", &self.expires_in_secs)
            .field("cover", &self.cover)
            .field("created", &self.created)
            .finish()
    }
}

/// A fresh nonce: 16 random bytes, base64url without padding.
fn nonce() -> Result<String, OperatorError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| OperatorError::Signature(msgsig::SignatureError::SigningFailed))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether `message` already has a signature labelled `label`.
fn label_in_use(message: &ParsedMessage, label: &str) -> Result<bool, OperatorError> {
    for field in ["signature-input", "signature"] {
        let lines = message.header_values(field);
        if lines.is_empty() {
            continue;
        }
        let dictionary: sfv::Dictionary = sfv::Parser::new(&lines.join(", "))
            .parse()
            .map_err(|_| msgsig::SignatureError::MalformedField(field))?;
        if dictionary.keys().any(|key| key.as_str() == label) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Reads the signing key: any container [`PrivateKey::load`] reads, then the one
/// algorithm it will sign with.
fn signing_key(options: &SignOptions) -> Result<SigningKey, OperatorError> {
    let key = PrivateKey::load(&options.key, options.password.as_deref())?;
    let mut der = key.to_pkcs8_der();
    let signing = SigningKey::from_pkcs8_der(&der, options.alg);
    // Our copy of the secret, cleared as the keystore clears its own.
    der.fill(0);
    std::hint::black_box(&der);
    Ok(signing?)
}

/// `message sign`: reads an HTTP/1.1 request from `input` and writes it to `output`
/// with `Content-Digest`, `Signature-Input` and `Signature` added.
///
/// A `Content-Digest` already in the message is kept if it matches the body (and
/// refused, `digest.mismatch`, if it does not); otherwise a SHA-256 one is added. A
/// signature already labelled `options.label` is refused (`signature.label_in_use`).
pub fn sign(
    input: impl Read,
    output: impl Write,
    options: &SignOptions,
) -> Result<(), OperatorError> {
    let raw = read_bounded(input, MAX_INPUT_BYTES, "standard input")?;
    let mut message = msgsig::parse_http1_request(&raw)?;
    if label_in_use(&message, &options.label)? {
        return Err(OperatorError::LabelInUse(options.label.clone()));
    }
    let key = signing_key(options)?;
    if present(&message, "content-digest") {
        msgsig::verify_message_content_digest(&message, message.body())?;
    } else {
        let digest = msgsig::content_digest(message.body(), DigestAlgorithm::Sha256);
        message.add_header("Content-Digest", &digest);
    }
    let covered = match &options.cover {
        Some(components) => components.clone(),
        None => default_covered(&message),
    };
    let created = options.created.unix_timestamp();
    let params = SignatureParams {
        created: Some(created),
        expires: Some(created.saturating_add(i64::from(options.expires_in_secs))),
        nonce: Some(nonce()?),
        keyid: Some(options.key_id.clone()),
        alg: Some(key.algorithm()),
        tag: None,
    };
    let signed = msgsig::sign(&options.label, &covered, &params, &message, &key)?;
    message.add_header("Signature-Input", &signed.signature_input);
    message.add_header("Signature", &signed.signature);
    write_all(output, &message.to_http1())
}

/// The public key `message verify` checks against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyKey {
    /// A PEM certificate (`--cert`): its subject public key. The certificate's
    /// chain and dates are not checked here.
    Certificate(PathBuf),
    /// A PEM `PUBLIC KEY` (`--key`).
    PublicKey(PathBuf),
}

/// The options of `message verify`.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The key to verify with.
    pub key: VerifyKey,
    /// The one algorithm accepted; `None` accepts the key type's algorithm, and for
    /// an RSA key the RSA algorithm the signature's `alg` names.
    pub alg: Option<Algorithm>,
    /// The signature label (default [`DEFAULT_LABEL`]).
    pub label: String,
    /// The oldest `created` accepted, in seconds before `now`.
    pub max_age_secs: u32,
    /// How far `created` may lie ahead of `now` (and `expires` behind it), in seconds.
    pub max_skew_secs: u32,
    /// The components that must be covered; `None` takes [`default_required`].
    pub require: Option<Vec<Component>>,
    /// The time of verification.
    pub now: OffsetDateTime,
}

/// A message that verified: printed as `ok keyid=… alg=… covered=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The `keyid` parameter, if any.
    pub keyid: Option<String>,
    /// The algorithm the signature verified with.
    pub algorithm: Algorithm,
    /// The covered components, in signed order.
    pub covered: Vec<Component>,
}

/// A component as the report shows it: `@method`, `x-road-id`,
/// `@query-param;name="id"` (the identifier without the quotes around the name).
fn shown(component: &Component) -> String {
    let identifier = component.to_string();
    match identifier
        .strip_prefix('"')
        .and_then(|rest| rest.split_once('"'))
    {
        Some((name, params)) => format!("{name}{params}"),
        None => identifier,
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let covered: Vec<String> = self.covered.iter().map(shown).collect();
        write!(
            f,
            "ok keyid={} alg={} covered={}",
            self.keyid.as_deref().unwrap_or("-"),
            self.algorithm,
            covered.join(",")
        )
    }
}

/// The public key of `key`.
fn public_key(key: &VerifyKey) -> Result<PublicKey, OperatorError> {
    let public = match key {
        VerifyKey::Certificate(path) => Certificate::from_pem(&read_file(path, file_bound())?)
            .and_then(|certificate| certificate.public_key())
            .map_err(|e| e.in_file(path)),
        VerifyKey::PublicKey(path) => {
            PublicKey::from_pem(&read_file(path, file_bound())?).map_err(|e| e.in_file(path))
        }
    };
    Ok(public?)
}

/// The keystore's bound on a key or certificate file.
fn file_bound() -> usize {
    usize::try_from(MAX_FILE_BYTES).unwrap_or(usize::MAX)
}

/// `message verify`: reads a signed HTTP/1.1 request from `input` and checks, in
/// order, the signature labelled `options.label`, that it covers the required
/// components, that `created`/`expires` are fresh at `options.now`, and the
/// `Content-Digest` against the body.
pub fn verify(input: impl Read, options: &VerifyOptions) -> Result<VerifyReport, OperatorError> {
    let raw = read_bounded(input, MAX_INPUT_BYTES, "standard input")?;
    let message = msgsig::parse_http1_request(&raw)?;
    let public = public_key(&options.key)?;
    let is_rsa = matches!(public.kind(), KeyKind::Rsa { .. });
    let verified = msgsig::verify(&options.label, &message, |params| {
        let key = VerifyingKey::from_spki_der(public.spki_der(), options.alg)?;
        match (options.alg, params.alg) {
            // An RSA key verifies either RSA padding the signer declared; the
            // declared algorithm is part of the signed base.
            (None, Some(declared)) if is_rsa && declared.is_rsa() => key.allow(declared),
            _ => Ok(key),
        }
    })?;
    let required = match &options.require {
        Some(components) => components.clone(),
        None => default_required(&message),
    };
    verified.require_covered(&required)?;
    msgsig::check_freshness(
        &verified.params,
        options.now.unix_timestamp(),
        i64::from(options.max_age_secs),
        i64::from(options.max_skew_secs),
    )?;
    msgsig::verify_message_content_digest(&message, message.body())?;
    Ok(VerifyReport {
        keyid: verified.params.keyid.clone(),
        algorithm: verified.algorithm,
        covered: verified.components,
    })
}

/// The options of `message encrypt`.
#[derive(Debug, Clone)]
pub struct EncryptOptions {
    /// The recipient: a PEM certificate or `PUBLIC KEY`, or a public JWK (JSON),
    /// told apart by content.
    pub to: PathBuf,
    /// The `kid` header; by default the certificate's SHA-256 fingerprint, or the
    /// JWK's `kid`.
    pub kid: Option<String>,
    /// The `cty` header, if any.
    pub content_type: Option<String>,
}

/// The recipient's public key and its default `kid`.
fn recipient(path: &std::path::Path) -> Result<(PublicKey, Option<String>), OperatorError> {
    let data = read_file(path, file_bound())?;
    let named = |e: KeyError| OperatorError::Key(e.in_file(path));
    if data.trim_ascii_start().starts_with(b"{") {
        let jwk: serde_json::Value = serde_json::from_slice(&data).map_err(|_| {
            OperatorError::Key(KeyError::Unreadable("JWK: not JSON".to_owned()).in_file(path))
        })?;
        let kid = jwk
            .get("kid")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        return Ok((PublicKey::from_jwk(&jwk).map_err(named)?, kid));
    }
    let certificates = Certificate::chain_from_pem(&data).map_err(named)?;
    if let Some(certificate) = certificates.first() {
        return Ok((
            certificate.public_key().map_err(named)?,
            Some(certificate.fingerprint_hex()),
        ));
    }
    Ok((PublicKey::from_pem(&data).map_err(named)?, None))
}

/// `message encrypt`: the bytes of `input` as a compact JWE to the recipient,
/// written to `output` with a final newline.
pub fn encrypt(
    input: impl Read,
    output: impl Write,
    options: &EncryptOptions,
) -> Result<(), OperatorError> {
    let plaintext = read_bounded(input, MAX_INPUT_BYTES, "standard input")?;
    let (public, default_kid) = recipient(&options.to)?;
    let kid = options.kid.clone().or(default_kid);
    let mut compact = jwe::encrypt(
        &plaintext,
        &public,
        kid.as_deref(),
        options.content_type.as_deref(),
    )?;
    compact.push('\n');
    write_all(output, compact.as_bytes())
}

/// The options of `message decrypt`.
pub struct DecryptOptions {
    /// The private key file (PEM, encrypted PEM or PKCS#12).
    pub key: PathBuf,
    /// The password of an encrypted key or PKCS#12 (from `--password-env`).
    pub password: Option<String>,
}

impl fmt::Debug for DecryptOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptOptions")
            .field("key", &self.key)
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .finish()
    }
}

/// `message decrypt`: a compact JWE from `input` (surrounding whitespace ignored),
/// decrypted under [`Policy::production`], its plaintext written to `output`.
pub fn decrypt(
    input: impl Read,
    output: impl Write,
    options: &DecryptOptions,
) -> Result<(), OperatorError> {
    // The JWE bound, plus room for a line ending after it.
    let raw = read_bounded(input, DEFAULT_MAX_BYTES + 2, "standard input")?;
    let compact = std::str::from_utf8(&raw)
        .map_err(|_| jwe::JweError::Malformed("not ASCII text".to_owned()))?
        .trim();
    let key = PrivateKey::load(&options.key, options.password.as_deref())?;
    let decrypted = jwe::decrypt(compact, &key, &Policy::production())?;
    write_all(output, &decrypted.plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const ED25519_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n";
    const ED25519_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=\n-----END PUBLIC KEY-----\n";
    const REQUEST: &str = "POST /r1/VN/GOV/000.00.00.G10/population-db/citizen HTTP/1.1\r\nHost: lgsp-b.example\r\nX-Road-Client: VN/GOV/000.00.00.H29/dvc-portal\r\nX-Road-Id: 6f1c2a9e-0d4b-4c5e-9a8f-1b2c3d4e5f60\r\nX-Purpose: HOUSEHOLD-REGISTRATION\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"id\":\"0790990\"}\n";
    const AT: OffsetDateTime = datetime!(2026-12-02 09:00 +7);

    struct Keys {
        dir: tempfile::TempDir,
    }

    impl Keys {
        fn new() -> Keys {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::write(dir.path().join("key.pem"), ED25519_PRIVATE).expect("write");
            std::fs::write(dir.path().join("pub.pem"), ED25519_PUBLIC).expect("write");
            Keys { dir }
        }
        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }
        fn sign(
            &self,
            request: &str,
            cover: Option<Vec<Component>>,
        ) -> Result<Vec<u8>, OperatorError> {
            let mut out = Vec::new();
            sign(
                request.as_bytes(),
                &mut out,
                &SignOptions {
                    key: self.path("key.pem"),
                    password: None,
                    key_id: "node-a".into(),
                    alg: None,
                    label: DEFAULT_LABEL.into(),
                    expires_in_secs: DEFAULT_EXPIRES_IN_SECS,
                    cover,
                    created: AT,
                },
            )?;
            Ok(out)
        }
        fn verify(
            &self,
            signed: &[u8],
            now: OffsetDateTime,
        ) -> Result<VerifyReport, OperatorError> {
            verify(
                signed,
                &VerifyOptions {
                    key: VerifyKey::PublicKey(self.path("pub.pem")),
                    alg: None,
                    label: DEFAULT_LABEL.into(),
                    max_age_secs: DEFAULT_MAX_AGE_SECS,
                    max_skew_secs: DEFAULT_MAX_SKEW_SECS,
                    require: None,
                    now,
                },
            )
        }
    }

    #[test]
    fn signed_request_verifies_and_reports_what_it_covers() -> Result<(), OperatorError> {
        let keys = Keys::new();
        let signed = keys.sign(REQUEST, None)?;
        let text = String::from_utf8_lossy(&signed);
        assert!(text.contains("Content-Digest: sha-256=:"));
        assert!(text.contains("Signature-Input: sig1=(\"@method\" \"@target-uri\" \"content-digest\" \"x-road-client\" \"x-road-id\" \"x-purpose\")"));
        let report = keys.verify(&signed, AT)?;
        assert_eq!(
            report.to_string(),
            "ok keyid=node-a alg=ed25519 covered=@method,@target-uri,content-digest,x-road-client,x-road-id,x-purpose"
        );
        Ok(())
    }

    #[test]
    fn verification_failures_carry_their_codes() -> Result<(), OperatorError> {
        let keys = Keys::new();
        let signed = String::from_utf8(keys.sign(REQUEST, None)?).expect("text");
        let code = |bytes: &str, now| keys.verify(bytes.as_bytes(), now).err().map(|e| e.code());
        assert_eq!(
            code(&signed.replace("0790990", "0790991"), AT),
            Some("digest.mismatch")
        );
        assert_eq!(
            code(&signed.replace("HOUSEHOLD-REGISTRATION", "MARKETING"), AT),
            Some("signature.invalid")
        );
        assert_eq!(
            code(&signed, AT + time::Duration::seconds(301)),
            Some("signature.expired")
        );
        assert_eq!(
            code(&signed, AT - time::Duration::seconds(31)),
            Some("signature.not_yet_valid")
        );
        let narrow = keys.sign(
            REQUEST,
            Some(vec![
                Component::Method,
                Component::TargetUri,
                header("content-digest"),
            ]),
        )?;
        assert_eq!(
            keys.verify(&narrow, AT).err().map(|e| e.code()),
            Some("signature.component_not_covered")
        );
        Ok(())
    }

    #[test]
    fn a_second_signature_under_the_same_label_is_refused() -> Result<(), OperatorError> {
        let keys = Keys::new();
        let signed = String::from_utf8(keys.sign(REQUEST, None)?).expect("text");
        let again = keys.sign(&signed, None).err().map(|e| e.code());
        assert_eq!(again, Some("signature.label_in_use"));
        Ok(())
    }

    #[test]
    fn a_content_digest_that_does_not_match_the_body_is_not_signed() {
        let keys = Keys::new();
        let wrong = REQUEST.replace(
            "Content-Type",
            "Content-Digest: sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:\r\nContent-Type",
        );
        let err = keys.sign(&wrong, None).err().map(|e| e.code());
        assert_eq!(err, Some("digest.mismatch"));
    }

    #[test]
    fn error_messages_carry_no_header_values() -> Result<(), OperatorError> {
        let keys = Keys::new();
        let signed = String::from_utf8(keys.sign(REQUEST, None)?).expect("text");
        let tampered = signed.replace("HOUSEHOLD-REGISTRATION", "MARKETING");
        let err = keys.verify(tampered.as_bytes(), AT).expect_err("refused");
        assert!(!err.to_string().contains("MARKETING"));
        let removed = signed.replace("X-Purpose: HOUSEHOLD-REGISTRATION\r\n", "");
        let err = keys.verify(removed.as_bytes(), AT).expect_err("refused");
        assert_eq!(err.code(), "signature.component_missing");
        assert!(!err.to_string().contains("HOUSEHOLD"));
        Ok(())
    }
}
