//! HTTP Message Signatures (RFC 9421) and Content-Digest (RFC 9530).
//!
//! The gateway signs what it sends and verifies what it receives at the message
//! level, on top of mTLS: a signature survives TLS-terminating hops and binds
//! the X-Road headers, the target and the body digest to a key.
//!
//! - [`digest`]: `Content-Digest` values, whole-body and streaming checks;
//! - [`base`]: covered components, signature parameters, the message view
//!   ([`HttpMessage`]) and the signature base (§2.5);
//! - [`keys`]: signing and verifying keys (PKCS#8, SEC1, PKCS#1, SPKI, X.509);
//! - [`signature`]: [`sign`], [`verify`], coverage checks and freshness;
//! - [`http1`]: an HTTP/1.1 request reader/writer for the operator tools.
//!
//! The module never reads the clock: the caller passes `created`/`expires` when
//! signing and `now` to [`check_freshness`] when verifying.
//!
//! Errors carry stable dotted codes ([`SignatureError::code`]) and never a
//! header *value*: values may carry personal data, so messages name fields,
//! components and labels only.

pub mod base;
pub mod digest;
pub mod http1;
pub mod keys;
pub mod signature;

mod der;

use std::fmt;
use std::str::FromStr;

pub use base::{
    Component, HttpMessage, Message, ResponseWithRequest, SignatureParams, signature_base,
};
pub use digest::{
    DigestAlgorithm, DigestVerifier, content_digest, verify_content_digest,
    verify_message_content_digest,
};
pub use http1::{ParsedMessage, parse_http1_request, parse_http1_response};
pub use keys::{SigningKey, VerifyingKey};
pub use signature::{SignedHeaders, Verified, check_freshness, sign, verify};

/// An HTTP signature algorithm of the RFC 9421 registry (§6.2.2) that this module
/// implements. HMAC is left out on purpose: the gateway uses asymmetric keys only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `ecdsa-p256-sha256`: ECDSA over P-256 with SHA-256, fixed 64-byte `r || s`.
    EcdsaP256Sha256,
    /// `rsa-pss-sha512`: RSASSA-PSS, SHA-512, MGF1-SHA-512, 64-byte salt.
    RsaPssSha512,
    /// `rsa-v1_5-sha256`: RSASSA-PKCS1-v1_5 with SHA-256.
    RsaV15Sha256,
    /// `ed25519`: EdDSA over edwards25519 (RFC 8032).
    Ed25519,
}

impl Algorithm {
    /// Every algorithm, in registry order.
    pub const ALL: [Algorithm; 4] = [
        Algorithm::RsaPssSha512,
        Algorithm::RsaV15Sha256,
        Algorithm::EcdsaP256Sha256,
        Algorithm::Ed25519,
    ];

    /// The registered name, as carried by the `alg` signature parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            Algorithm::RsaPssSha512 => "rsa-pss-sha512",
            Algorithm::RsaV15Sha256 => "rsa-v1_5-sha256",
            Algorithm::Ed25519 => "ed25519",
        }
    }

    /// Whether the algorithm is an RSA one.
    pub fn is_rsa(self) -> bool {
        matches!(self, Algorithm::RsaPssSha512 | Algorithm::RsaV15Sha256)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = SignatureError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or(SignatureError::AlgorithmUnsupported)
    }
}

/// Why a signature or a digest was not produced or not accepted.
///
/// [`SignatureError::code`] is the stable identifier for logs, metrics and problem
/// documents; the `Display` text is for people and never contains a header value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The message has no `Signature-Input` or no `Signature` field.
    #[error("the message has no {0} field")]
    FieldMissing(&'static str),
    /// The `Signature-Input` or `Signature` field has no member with the label.
    #[error("no signature labelled {0} in the message")]
    LabelMissing(String),
    /// `Signature-Input` or `Signature` is not a valid structured-field dictionary.
    #[error("the {0} field is not a valid structured-field dictionary")]
    MalformedField(&'static str),
    /// The signature's member has the wrong shape or a parameter has the wrong type.
    #[error("signature {label} is malformed: {reason}")]
    MalformedSignature {
        /// The signature label.
        label: String,
        /// What is wrong, in fixed words.
        reason: &'static str,
    },
    /// A signature parameter given to the signer cannot be serialised (a string that is
    /// not printable ASCII, a label that is not a structured-field key).
    #[error("signature parameter {0} cannot be serialised")]
    InvalidParameter(&'static str),
    /// A component identifier is listed twice in the covered components.
    #[error("component {0} is covered more than once")]
    DuplicateComponent(String),
    /// A component identifier that this module does not know or refuses (`;bs`, `;tr`,
    /// unknown derived components, unknown parameters).
    #[error("component {0} is not supported")]
    UnsupportedComponent(String),
    /// A covered component is absent from the message (or from its related request).
    #[error("covered component {0} is absent from the message")]
    ComponentMissing(String),
    /// A component that the caller requires is not in the covered set.
    #[error("required component {0} is not covered by the signature")]
    ComponentNotCovered(String),
    /// The signature bytes do not verify.
    #[error("the signature does not verify")]
    InvalidSignature,
    /// The `alg` parameter names an algorithm that this module does not implement.
    #[error("the signature algorithm is not supported")]
    AlgorithmUnsupported,
    /// The key resolver knows no key for the signature.
    #[error("no key is known for the signature")]
    KeyUnknown,
    /// The algorithm (from `alg` or from the caller) does not fit the key's type.
    #[error("algorithm {0} does not fit the key")]
    KeyMismatch(Algorithm),
    /// Key material could not be read.
    #[error("the key could not be read: {0}")]
    KeyInvalid(&'static str),
    /// The crypto library refused to sign.
    #[error("signing failed")]
    SigningFailed,
    /// `expires` is in the past, or `created` is older than the allowed age.
    #[error("the signature has expired")]
    Expired,
    /// `created` lies in the future beyond the allowed skew.
    #[error("the signature is not yet valid")]
    NotYetValid,
    /// The signature has no `created` parameter, which freshness checks need.
    #[error("the signature has no created parameter")]
    CreatedMissing,
    /// The message has no `Content-Digest` field.
    #[error("the message has no content-digest field")]
    DigestMissing,
    /// `Content-Digest` is not a dictionary of byte sequences.
    #[error("the content-digest field is malformed")]
    DigestMalformed,
    /// A known digest in `Content-Digest` does not match the body.
    #[error("the content-digest does not match the body")]
    DigestMismatch,
    /// `Content-Digest` names no algorithm that this module knows.
    #[error("the content-digest names no supported algorithm")]
    DigestAlgorithmUnsupported,
    /// An HTTP/1.1 message could not be read.
    #[error("the HTTP/1.1 message is malformed: {0}")]
    MessageMalformed(&'static str),
}

impl SignatureError {
    /// The stable dotted code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::FieldMissing(_) | SignatureError::LabelMissing(_) => {
                "signature.missing"
            }
            SignatureError::MalformedField(_)
            | SignatureError::MalformedSignature { .. }
            | SignatureError::InvalidParameter(_)
            | SignatureError::DuplicateComponent(_)
            | SignatureError::UnsupportedComponent(_) => "signature.malformed",
            SignatureError::ComponentMissing(_) => "signature.component_missing",
            SignatureError::ComponentNotCovered(_) => "signature.component_not_covered",
            SignatureError::InvalidSignature => "signature.invalid",
            SignatureError::AlgorithmUnsupported => "signature.algorithm_unsupported",
            SignatureError::KeyUnknown => "signature.key_unknown",
            SignatureError::KeyMismatch(_) => "signature.key_mismatch",
            SignatureError::KeyInvalid(_) => "signature.key_invalid",
            SignatureError::SigningFailed => "signature.signing_failed",
            SignatureError::Expired => "signature.expired",
            SignatureError::NotYetValid => "signature.not_yet_valid",
            SignatureError::CreatedMissing => "signature.created_missing",
            SignatureError::DigestMissing => "digest.missing",
            SignatureError::DigestMalformed => "digest.malformed",
            SignatureError::DigestMismatch => "digest.mismatch",
            SignatureError::DigestAlgorithmUnsupported => "digest.algorithm_unsupported",
            SignatureError::MessageMalformed(_) => "message.malformed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_round_trip() {
        for alg in Algorithm::ALL {
            assert_eq!(alg.as_str().parse::<Algorithm>(), Ok(alg));
            assert_eq!(alg.to_string(), alg.as_str());
        }
        let err = "hmac-sha256".parse::<Algorithm>().err();
        assert_eq!(
            err.map(|e| e.code()),
            Some("signature.algorithm_unsupported")
        );
    }

    #[test]
    fn codes_are_dotted_and_messages_carry_no_values() {
        let e = SignatureError::ComponentMissing("x-road-client".into());
        assert_eq!(e.code(), "signature.component_missing");
        assert_eq!(
            e.to_string(),
            "covered component x-road-client is absent from the message"
        );
        assert_eq!(SignatureError::DigestMismatch.code(), "digest.mismatch");
    }
}
