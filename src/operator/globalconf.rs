//! `datagate globalconf sign | verify`.
//!
//! Sign is the central authority's side: the payload is validated as a global
//! configuration first (a document no gateway would accept is not signed), then
//! signed as a JWS compact serialisation. Verify is a gateway's side: the same
//! [`Verifier`] the node runs, against an anchor, for an instance, optionally
//! against the configuration held.

use super::{MAX_INPUT_BYTES, OperatorError, pkcs8_pem, read_bounded, read_file, write_all};
use crate::keystore::{KeyKind, PrivateKey};
use crate::trust::global::{
    Anchor, GlobalConfError, GlobalConfiguration, MAX_SIGNED_BYTES, SigningAlg, Verification,
    Verifier,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The options of `globalconf sign`.
pub struct SignOptions {
    /// The authority's private key file (PEM, encrypted PEM or PKCS#12): EC P-256
    /// or RSA of at least 2048 bits.
    pub key: PathBuf,
    /// The password of an encrypted key or PKCS#12 (from `--password-env`).
    pub password: Option<String>,
    /// `ES256` or `RS256`; `None` takes the key's (ES256 for EC P-256, RS256 for RSA).
    pub alg: Option<SigningAlg>,
}

impl fmt::Debug for SignOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignOptions")
            .field("key", &self.key)
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .field("alg", &self.alg)
            .finish()
    }
}

fn key_invalid(reason: &'static str) -> OperatorError {
    OperatorError::GlobalConf(GlobalConfError::KeyInvalid { reason })
}

/// `globalconf sign`: the JSON payload on `input`, validated, signed, written to
/// `output` as a JWS compact serialisation with a final newline.
pub fn sign(
    input: impl Read,
    output: impl Write,
    options: &SignOptions,
) -> Result<(), OperatorError> {
    let payload = read_bounded(input, MAX_INPUT_BYTES, "standard input")?;
    // Refuses with every problem and its path; the signature is only worth having
    // on a document gateways accept.
    GlobalConfiguration::parse_unverified(&payload)?;
    let key = PrivateKey::load(&options.key, options.password.as_deref())?;
    let alg = match (options.alg, key.kind()) {
        (Some(alg), _) => alg,
        (None, KeyKind::EcP256) => SigningAlg::Es256,
        (None, KeyKind::Rsa { .. }) => SigningAlg::Rs256,
        (None, _) => return Err(key_invalid("the key must be EC P-256 or RSA")),
    };
    let pem = pkcs8_pem(&key.to_pkcs8_der());
    let mut compact = crate::trust::global::sign(&payload, &pem, alg)?;
    drop(pem);
    compact.push('\n');
    write_all(output, compact.as_bytes())
}

/// The options of `globalconf verify`.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The anchor: a PEM `PUBLIC KEY` or `CERTIFICATE`, or a public JWK (JSON).
    pub anchor: PathBuf,
    /// The federation instance the document must be for (e.g. `VN`).
    pub instance: String,
    /// The signed configuration held (as a gateway persisted it), if any.
    pub held: Option<PathBuf>,
    /// The time of verification.
    pub now: OffsetDateTime,
}

/// A configuration that verified: `ok version=N expires_at=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Its version.
    pub version: u64,
    /// When it expires.
    pub expires_at: OffsetDateTime,
    /// It is the held configuration again (nothing to apply).
    pub unchanged: bool,
    /// It is signed by the next anchor the held configuration announced.
    pub anchor_rotated: bool,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expires = self
            .expires_at
            .format(&Rfc3339)
            .unwrap_or_else(|_| self.expires_at.unix_timestamp().to_string());
        write!(f, "ok version={} expires_at={expires}", self.version)?;
        if self.unchanged {
            f.write_str(" unchanged")?;
        }
        if self.anchor_rotated {
            f.write_str(" anchor_rotated")?;
        }
        Ok(())
    }
}

fn anchor(path: &Path) -> Result<Anchor, OperatorError> {
    let data = read_file(path, 1024 * 1024)?;
    if data.trim_ascii_start().starts_with(b"{") {
        return Ok(Anchor::from_jwk(&data)?);
    }
    let text = std::str::from_utf8(&data)
        .map_err(|_| key_invalid("the anchor is neither PEM nor a JWK"))?;
    Ok(Anchor::from_pem(text)?)
}

/// The issue time a signed configuration claims, read before it is verified (to
/// verify the held one as of when it was issued).
fn claimed_issued_at(jws: &[u8]) -> Result<OffsetDateTime, GlobalConfError> {
    let malformed = || GlobalConfError::Malformed {
        reason: "not a JWS compact serialisation".to_owned(),
    };
    let payload = jws
        .trim_ascii()
        .split(|&b| b == b'.')
        .nth(1)
        .ok_or_else(malformed)?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| malformed())?;
    Ok(GlobalConfiguration::parse_unverified(&payload)?.issued_at())
}

/// The held configuration, verified against the anchor as of its own issue time:
/// it may have expired since, and still be what a newer one must supersede.
fn held(verifier: &Verifier, path: &Path) -> Result<GlobalConfiguration, OperatorError> {
    let jws = read_file(path, MAX_SIGNED_BYTES)?;
    let issued_at = claimed_issued_at(&jws).map_err(OperatorError::HeldGlobalConf)?;
    match verifier.verify(&jws, None, issued_at) {
        Ok(Verification::Accepted(accepted)) => Ok(accepted.config),
        // Without a held configuration there is nothing to be unchanged from.
        Ok(Verification::Unchanged) => {
            Err(OperatorError::HeldGlobalConf(GlobalConfError::Malformed {
                reason: "unexpected outcome".to_owned(),
            }))
        }
        Err(error) => Err(OperatorError::HeldGlobalConf(error)),
    }
}

/// `globalconf verify`: the signed configuration on `input`, verified as a gateway
/// would at `options.now` (signature, payload, instance, expiry, version against
/// the held one).
pub fn verify(input: impl Read, options: &VerifyOptions) -> Result<VerifyReport, OperatorError> {
    let jws = read_bounded(input, MAX_SIGNED_BYTES, "standard input")?;
    let verifier = Verifier::new(anchor(&options.anchor)?, options.instance.clone());
    let held = options
        .held
        .as_deref()
        .map(|path| held(&verifier, path))
        .transpose()?;
    match verifier.verify(&jws, held.as_ref(), options.now)? {
        Verification::Accepted(accepted) => Ok(VerifyReport {
            version: accepted.config.version(),
            expires_at: accepted.config.expires_at(),
            unchanged: false,
            anchor_rotated: accepted.anchor_rotated,
        }),
        Verification::Unchanged => {
            // `Unchanged` is only returned when a held configuration was given.
            let held = held.ok_or(GlobalConfError::Malformed {
                reason: "unchanged without a held configuration".to_owned(),
            })?;
            Ok(VerifyReport {
                version: held.version(),
                expires_at: held.expires_at(),
                unchanged: true,
                anchor_rotated: false,
            })
        }
    }
}
