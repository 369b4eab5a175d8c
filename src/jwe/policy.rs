//! What a receiver accepts.

use super::compact::{Curve, Parsed};
use super::{ContentEncryption, JweError, KeyManagement};

/// The default bound on a compact JWE's length (16 MiB), checked before
/// anything is decoded. Change it per policy with [`Policy::with_max_bytes`].
pub const DEFAULT_MAX_BYTES: usize = 16 * 1024 * 1024;

/// The bound on the base64url protected header (8 KiB), for [`super::decrypt`]
/// and [`super::header`] alike.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// The algorithms, curves and size a receiver accepts. Decryption refuses
/// anything outside it with `jwe.algorithm_unsupported` before any key
/// operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    key_management: Vec<KeyManagement>,
    content_encryption: Vec<ContentEncryption>,
    p384: bool,
    max_bytes: usize,
}

impl Policy {
    /// The production set: `ECDH-ES+A256KW` (P-256) and `RSA-OAEP-256`, with
    /// `A256GCM`; at most [`DEFAULT_MAX_BYTES`].
    pub fn production() -> Policy {
        Policy {
            key_management: vec![KeyManagement::EcdhEsA256kw, KeyManagement::RsaOaep256],
            content_encryption: vec![ContentEncryption::A256gcm],
            p384: false,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }

    /// **Tests only.** The production set plus what RFC 7520's examples use:
    /// `RSA-OAEP` (SHA-1), `ECDH-ES+A128KW`, `A128GCM` and the P-384 curve.
    /// Nothing in the gateway's runtime may construct this policy; it exists so
    /// that the RFC's published vectors can be decrypted in tests.
    pub fn dangerous_rfc7520_examples() -> Policy {
        Policy {
            key_management: vec![
                KeyManagement::EcdhEsA256kw,
                KeyManagement::RsaOaep256,
                KeyManagement::RsaOaep,
                KeyManagement::EcdhEsA128kw,
            ],
            content_encryption: vec![ContentEncryption::A256gcm, ContentEncryption::A128gcm],
            p384: true,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }

    /// The same policy with another bound on the compact JWE's length.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Policy {
        self.max_bytes = max_bytes;
        self
    }

    /// The bound on a compact JWE's length, in bytes.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Whether `alg` is accepted.
    pub fn allows_key_management(&self, alg: KeyManagement) -> bool {
        self.key_management.contains(&alg)
    }

    /// Whether `enc` is accepted.
    pub fn allows_content_encryption(&self, enc: ContentEncryption) -> bool {
        self.content_encryption.contains(&enc)
    }

    /// Refuses a parsed JWE whose algorithms or curve are outside the policy.
    pub(super) fn check(&self, parsed: &Parsed) -> Result<(), JweError> {
        let h = &parsed.header;
        if !self.allows_key_management(h.alg) {
            return Err(JweError::AlgorithmUnsupported(format!(
                "alg {} is not allowed by this policy",
                h.alg.name()
            )));
        }
        if !self.allows_content_encryption(h.enc) {
            return Err(JweError::AlgorithmUnsupported(format!(
                "enc {} is not allowed by this policy",
                h.enc.name()
            )));
        }
        if parsed.epk_curve == Some(Curve::P384) && !self.p384 {
            return Err(JweError::AlgorithmUnsupported(
                "epk curve P-384 is not allowed by this policy".to_owned(),
            ));
        }
        Ok(())
    }
}
