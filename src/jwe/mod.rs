//! Payload encryption between gateways: JWE (RFC 7516), compact serialisation.
//!
//! One sender encrypts a payload to one receiving gateway's public key; the
//! receiver decrypts with its private key. The production algorithms:
//!
//! | recipient key     | `alg` (key management) | `enc` (content) |
//! |-------------------|------------------------|-----------------|
//! | EC P-256          | `ECDH-ES+A256KW`       | `A256GCM`       |
//! | RSA ≥ 2048 bits   | `RSA-OAEP-256`         | `A256GCM`       |
//!
//! The protected header carries `kid` (by convention the SHA-256 fingerprint
//! of the recipient's certificate, [`crate::keystore::Certificate::fingerprint_hex`])
//! and `cty`. Decryption is governed by a [`Policy`]: anything outside it is
//! refused as `jwe.algorithm_unsupported` before any key is touched; `dir`,
//! `none`, compression (`zip`) and critical extensions (`crit`) are never
//! accepted. Every failure of the cryptography itself (wrong key, altered
//! encrypted key, IV, ciphertext, tag or header) is one code,
//! `jwe.decryption_failed`, so a caller cannot learn which part failed.
//!
//! The JOSE library underneath (josekit) is an implementation detail: none of
//! its types appear here.

mod backend;
mod compact;
mod policy;

pub use policy::{DEFAULT_MAX_BYTES, MAX_HEADER_BYTES, Policy};

use crate::keystore::{KeyKind, PrivateKey, PublicKey};

/// Key management algorithms (`alg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyManagement {
    /// `ECDH-ES+A256KW`: ephemeral-static ECDH, Concat KDF, AES-256 key wrap.
    EcdhEsA256kw,
    /// `RSA-OAEP-256`: RSAES-OAEP with SHA-256 and MGF1-SHA-256.
    RsaOaep256,
    /// `RSA-OAEP` (SHA-1). Only for RFC 7520's examples: accepted by
    /// [`Policy::dangerous_rfc7520_examples`] alone, never produced.
    RsaOaep,
    /// `ECDH-ES+A128KW`. Only for RFC 7520's examples: accepted by
    /// [`Policy::dangerous_rfc7520_examples`] alone, never produced.
    EcdhEsA128kw,
}

impl KeyManagement {
    /// The registered name (RFC 7518).
    pub fn name(self) -> &'static str {
        match self {
            KeyManagement::EcdhEsA256kw => "ECDH-ES+A256KW",
            KeyManagement::RsaOaep256 => "RSA-OAEP-256",
            KeyManagement::RsaOaep => "RSA-OAEP",
            KeyManagement::EcdhEsA128kw => "ECDH-ES+A128KW",
        }
    }

    fn from_name(name: &str) -> Option<KeyManagement> {
        [
            KeyManagement::EcdhEsA256kw,
            KeyManagement::RsaOaep256,
            KeyManagement::RsaOaep,
            KeyManagement::EcdhEsA128kw,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }

    fn is_ecdh(self) -> bool {
        matches!(
            self,
            KeyManagement::EcdhEsA256kw | KeyManagement::EcdhEsA128kw
        )
    }
}

/// Content encryption algorithms (`enc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentEncryption {
    /// `A256GCM`: AES-256-GCM, 96-bit IV, 128-bit tag.
    A256gcm,
    /// `A128GCM`. Only for RFC 7520's examples: accepted by
    /// [`Policy::dangerous_rfc7520_examples`] alone, never produced.
    A128gcm,
}

impl ContentEncryption {
    /// The registered name (RFC 7518).
    pub fn name(self) -> &'static str {
        match self {
            ContentEncryption::A256gcm => "A256GCM",
            ContentEncryption::A128gcm => "A128GCM",
        }
    }

    fn from_name(name: &str) -> Option<ContentEncryption> {
        [ContentEncryption::A256gcm, ContentEncryption::A128gcm]
            .into_iter()
            .find(|c| c.name() == name)
    }
}

/// The parts of a JWE's protected header that callers use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JweHeader {
    /// Key management algorithm.
    pub alg: KeyManagement,
    /// Content encryption algorithm.
    pub enc: ContentEncryption,
    /// Key id of the recipient key, if the sender named one.
    pub kid: Option<String>,
    /// Content type of the plaintext, if the sender named one.
    pub cty: Option<String>,
}

/// A decrypted JWE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The plaintext.
    pub plaintext: Vec<u8>,
    /// The protected header it came with (authenticated).
    pub header: JweHeader,
}

/// Why a JWE could not be produced or opened. Messages never contain key
/// material or plaintext; header values are shown only when short and plain.
#[derive(Debug, thiserror::Error)]
pub enum JweError {
    /// Not a well-formed compact JWE: not five parts, bad base64url, a header
    /// that is not a JSON object (or repeats a member), missing `alg`/`enc`,
    /// parts of the wrong length (truncated).
    #[error("malformed JWE: {0}")]
    Malformed(String),
    /// Larger than the policy's bound; refused before decoding.
    #[error("JWE of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The input's length in bytes.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// An algorithm, or a header feature (`zip`, `crit`), outside the policy.
    #[error("unsupported JWE algorithm or feature: {0}")]
    AlgorithmUnsupported(String),
    /// The cryptography failed: wrong key, or any part altered.
    #[error("JWE decryption failed")]
    DecryptionFailed,
    /// The key cannot be used with this algorithm or policy (kind, curve, size).
    #[error("key unsupported for JWE: {0}")]
    KeyUnsupported(String),
    /// Encryption itself failed (should not happen with a valid key).
    #[error("JWE encryption failed")]
    EncryptionFailed,
}

impl JweError {
    /// The stable machine code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            JweError::Malformed(_) => "jwe.malformed",
            JweError::TooLarge { .. } => "jwe.too_large",
            JweError::AlgorithmUnsupported(_) => "jwe.algorithm_unsupported",
            JweError::DecryptionFailed => "jwe.decryption_failed",
            JweError::KeyUnsupported(_) => "jwe.key_unsupported",
            JweError::EncryptionFailed => "jwe.encryption_failed",
        }
    }
}

/// The smallest RSA modulus used or accepted, in bits.
pub const MIN_RSA_BITS: u32 = 2048;

/// Encrypts `plaintext` to `recipient`: `ECDH-ES+A256KW` for an EC P-256 key,
/// `RSA-OAEP-256` for an RSA key of at least [`MIN_RSA_BITS`], always
/// `A256GCM`; `kid` and `cty` go into the protected header. Returns the
/// compact serialisation (RFC 7516 §7.1).
///
/// Refuses (`jwe.key_unsupported`) other keys, and (`jwe.too_large`) a
/// plaintext whose JWE would exceed [`DEFAULT_MAX_BYTES`], which a receiver
/// with the default policy would refuse.
pub fn encrypt(
    plaintext: &[u8],
    recipient: &PublicKey,
    kid: Option<&str>,
    content_type: Option<&str>,
) -> Result<String, JweError> {
    Recipient::new(recipient)?.encrypt(plaintext, kid, content_type)
}

/// The production key-management algorithm for a key of `kind`: `ECDH-ES+A256KW` for EC
/// P-256, `RSA-OAEP-256` for RSA of at least [`MIN_RSA_BITS`]; `None` for anything else.
fn production_algorithm(kind: KeyKind) -> Option<KeyManagement> {
    match kind {
        KeyKind::EcP256 => Some(KeyManagement::EcdhEsA256kw),
        KeyKind::Rsa { bits } if bits >= MIN_RSA_BITS => Some(KeyManagement::RsaOaep256),
        _ => None,
    }
}

/// Decrypts a compact JWE with `key`, under `policy`.
///
/// In order: the length bound ([`Policy::max_bytes`], `jwe.too_large`), the
/// structure and header (`jwe.malformed`), the algorithms and header features
/// against the policy (`jwe.algorithm_unsupported`), the key against the
/// algorithm (`jwe.key_unsupported`), and only then the key operation
/// (`jwe.decryption_failed` for any cryptographic failure).
pub fn decrypt(compact: &str, key: &PrivateKey, policy: &Policy) -> Result<Decrypted, JweError> {
    let parsed = compact::parse(compact, policy.max_bytes())?;
    policy.check(&parsed)?;
    compact::check_key(&parsed, key)?;
    let plaintext = backend::PreparedDecrypter::new(key, parsed.header.alg)?.decrypt(compact)?;
    Ok(Decrypted {
        plaintext,
        header: parsed.header,
    })
}

/// A recipient's public key made ready once for many encryptions (a gateway encrypts
/// to the same few peers all day; parsing their keys each time would cost more than
/// the cryptography).
pub struct Recipient {
    prepared: backend::PreparedEncrypter,
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recipient").finish_non_exhaustive()
    }
}

impl Recipient {
    /// Prepares `recipient` (EC P-256: `ECDH-ES+A256KW`; RSA ≥ [`MIN_RSA_BITS`]:
    /// `RSA-OAEP-256`).
    pub fn new(recipient: &PublicKey) -> Result<Recipient, JweError> {
        let kind = recipient.kind();
        let alg = production_algorithm(kind).ok_or_else(|| {
            JweError::KeyUnsupported(format!(
                "cannot encrypt to a {kind} key (EC P-256 or RSA ≥ {MIN_RSA_BITS})"
            ))
        })?;
        Ok(Recipient {
            prepared: backend::PreparedEncrypter::new(recipient, alg)?,
        })
    }

    /// Encrypts as [`encrypt`] does.
    pub fn encrypt(
        &self,
        plaintext: &[u8],
        kid: Option<&str>,
        content_type: Option<&str>,
    ) -> Result<String, JweError> {
        check_plaintext_size(plaintext, kid, content_type)?;
        self.prepared
            .encrypt(plaintext, ContentEncryption::A256gcm, kid, content_type)
    }
}

/// This node's private key made ready once for decrypting, under the production policy
/// ([`Policy::production`]).
pub struct Opener {
    prepared: backend::PreparedDecrypter,
    alg: KeyManagement,
    policy: Policy,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl Opener {
    /// Prepares `key` for the production algorithm its kind fits.
    pub fn new(key: &PrivateKey) -> Result<Opener, JweError> {
        let kind = key.kind();
        let alg = production_algorithm(kind).ok_or_else(|| {
            JweError::KeyUnsupported(format!("cannot decrypt with a {kind} key in production"))
        })?;
        Ok(Opener {
            prepared: backend::PreparedDecrypter::new(key, alg)?,
            alg,
            policy: Policy::production(),
        })
    }

    /// Decrypts as [`decrypt`] does with [`Policy::production`]; a JWE for another
    /// algorithm than this key's is refused before any key operation.
    pub fn decrypt(&self, compact: &str) -> Result<Decrypted, JweError> {
        let parsed = compact::parse(compact, self.policy.max_bytes())?;
        self.policy.check(&parsed)?;
        if parsed.header.alg != self.alg {
            return Err(JweError::DecryptionFailed);
        }
        let plaintext = self.prepared.decrypt(compact)?;
        Ok(Decrypted {
            plaintext,
            header: parsed.header,
        })
    }
}

/// The size bound [`encrypt`] applies: a JWE a receiver with the default policy
/// would refuse is not produced.
fn check_plaintext_size(
    plaintext: &[u8],
    kid: Option<&str>,
    content_type: Option<&str>,
) -> Result<(), JweError> {
    let estimate = plaintext.len().div_ceil(3) * 4
        + 2048
        + 2 * (kid.map_or(0, str::len) + content_type.map_or(0, str::len));
    if estimate > DEFAULT_MAX_BYTES {
        return Err(JweError::TooLarge {
            len: estimate,
            max: DEFAULT_MAX_BYTES,
        });
    }
    Ok(())
}

/// The protected header of a compact JWE, without decrypting it (a relay reads
/// `kid` to log it). Nothing here is authenticated until decryption succeeds.
///
/// Checks the structure (five parts) and the header as [`decrypt`] does —
/// `dir`, `none`, `zip`, `crit` and unknown algorithms are refused — but not
/// the total length, and not a policy: the test-only algorithms are reported
/// (a policy still refuses them at [`decrypt`]). The header part is bounded by
/// [`MAX_HEADER_BYTES`].
pub fn header(compact: &str) -> Result<JweHeader, JweError> {
    Ok(compact::parse_header_only(compact)?.header)
}
