//! The signed global configuration of the federation.
//!
//! The central authority publishes one JSON document, signed as a JWS compact
//! serialisation (`ES256` or `RS256`), that says who is in the federation: the
//! members and their subsystems, their secure servers (address, TLS certificate
//! fingerprints with their registration dates, encryption key), the hubs, the
//! services and how to reach them, the CAs the TLS layer trusts, the identity
//! providers and the public holidays. Every gateway polls it, verifies it against
//! its configured [`Anchor`] (the authority's public key) and swaps it in whole.
//! It replaces the local registry file for trust between gateways (003 Điều 50
//! khoản 2–3: a published catalogue of registered secure servers).
//!
//! ```text
//! bytes ─▶ size ─▶ JWS structure ─▶ alg ∈ {ES256, RS256} ─▶ signature (anchor, or the
//!          announced next anchor once effective) ─▶ payload JSON + validation ─▶
//!          instance ─▶ not expired ─▶ version > held ─▶ GlobalConfiguration
//! ```
//!
//! - [`Verifier::verify`]: the pipeline above, cheapest and most hostile-input checks
//!   first, so that nothing cryptographic runs on a refused algorithm and nothing
//!   is parsed that is not signed;
//! - [`GlobalConfiguration`]: the validated, typed document and its lookups;
//!   [`GlobalConfiguration::authenticate_peer`] decides who an exchange peer is by its
//!   certificate fingerprint, with the 3-working-day notice rule;
//! - [`sign`]: for the central authority, tests and the demo.
//!
//! Owns: the document format, its validation, its signature and its freshness.
//! Does not own: fetching it (the caller polls and persists), the TLS handshake
//! (which uses [`GlobalConfiguration::trusted_cas`]), or reading the clock: every
//! decision takes `now`.

mod document;
mod json;
mod keys;
mod validate;

pub use document::{
    AnchorRotation, CaCertificate, CertificateEntry, CertificateStatus, FORMAT,
    GlobalConfiguration, Hub, IdentityProvider, Member, NOTICE_WORKING_DAYS, SecureServer, Service,
};
pub use json::Problem;
pub use keys::{Anchor, KeyKind, MAX_SIGNED_BYTES, MIN_RSA_BITS, PublicJwk, SigningAlg, sign};
pub use validate::normalise_fingerprint;

/// The JWS compact structure, shared with citizen assertions ([`crate::trust::citizen`]).
pub(crate) mod jws {
    pub(crate) use super::Compact;
}

use crate::identity::MemberId;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use std::cmp::Ordering;
use time::OffsetDateTime;

/// Why a global configuration, or a peer, was refused. Messages name paths and
/// rules, never values of the document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobalConfError {
    /// Too large, not a JWS compact serialisation, or a payload that is not JSON.
    #[error("the global configuration is malformed: {reason}")]
    Malformed {
        /// What is wrong, without quoting the input.
        reason: String,
    },
    /// The payload is JSON but breaks the format; every problem with its path.
    #[error("the global configuration is invalid: {}", join(problems))]
    Invalid {
        /// Every problem found, each with its JSON path.
        problems: Vec<Problem>,
    },
    /// `alg` is not `ES256` or `RS256` (`none`, `HS256`, … are refused before any crypto).
    #[error("the global configuration is signed with an unsupported algorithm")]
    AlgorithmUnsupported,
    /// The signature does not verify against the anchor in force (a bad signature,
    /// or a document signed by another key).
    #[error("the signature of the global configuration does not verify against the anchor")]
    SignatureInvalid,
    /// The document is for another federation instance.
    #[error("the global configuration is for another instance than ours")]
    InstanceMismatch,
    /// The document has expired (`now >= expires_at`).
    #[error("the global configuration expired at {expires_at}")]
    Expired {
        /// When it expired.
        expires_at: OffsetDateTime,
    },
    /// An older version than the held one, or the same version with other content.
    #[error("the global configuration is stale: version {received} received, version {held} held")]
    Stale {
        /// The held version.
        held: u64,
        /// The received version.
        received: u64,
    },
    /// No secure server or hub has this certificate.
    #[error("the certificate is not registered for any secure server or hub")]
    PeerUnknown,
    /// The certificate's registration is not effective yet (its `effective_from`, or
    /// the 3 working days' notice, 003 Điều 50 khoản 2, has not passed).
    #[error("the certificate's registration takes effect only at {from}")]
    PeerNotYetEffective {
        /// From when it will be accepted.
        from: OffsetDateTime,
    },
    /// The certificate's registration has ended (`effective_until` has passed).
    #[error("the certificate's registration ended at {at}")]
    PeerRegistrationEnded {
        /// When it ended.
        at: OffsetDateTime,
    },
    /// A key given to this module by its own operator (an anchor, a signing key) is
    /// unusable. Never the outcome of verifying a received document.
    #[error("unusable key: {reason}")]
    KeyInvalid {
        /// What is wrong with it.
        reason: &'static str,
    },
}

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl GlobalConfError {
    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            GlobalConfError::Malformed { .. } => "globalconf.malformed",
            GlobalConfError::Invalid { .. } => "globalconf.invalid",
            GlobalConfError::AlgorithmUnsupported => "globalconf.algorithm_unsupported",
            GlobalConfError::SignatureInvalid => "globalconf.signature_invalid",
            GlobalConfError::InstanceMismatch => "globalconf.instance_mismatch",
            GlobalConfError::Expired { .. } => "globalconf.expired",
            GlobalConfError::Stale { .. } => "globalconf.stale",
            GlobalConfError::PeerUnknown => "globalconf.peer_unknown",
            GlobalConfError::PeerNotYetEffective { .. } => "globalconf.peer_not_yet_effective",
            GlobalConfError::PeerRegistrationEnded { .. } => "globalconf.peer_registration_ended",
            GlobalConfError::KeyInvalid { .. } => "globalconf.key_invalid",
        }
    }
}

/// Who an exchange peer is, by its certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Peer {
    /// A secure server of a member.
    SecureServer {
        /// The member that runs it.
        member: MemberId,
        /// Its name.
        name: String,
    },
    /// A hub.
    Hub {
        /// Its name.
        name: String,
        /// The member that runs it.
        member: MemberId,
    },
}

/// A newer global configuration, verified.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The configuration, to swap in whole.
    pub config: GlobalConfiguration,
    /// The next anchor this configuration announces, and from when it counts.
    pub next_anchor: Option<(Anchor, OffsetDateTime)>,
    /// The anchor whose signature was verified.
    pub signed_by: Anchor,
    /// Whether `signed_by` is the next anchor the held configuration announced, not
    /// the verifier's own: the rotation has happened, and the caller should persist
    /// `signed_by` as its anchor (e.g. [`Anchor::to_pem`]).
    pub anchor_rotated: bool,
}

/// The outcome of a successful verification.
#[derive(Debug, Clone)]
pub enum Verification {
    /// A newer version: apply it.
    Accepted(Box<Accepted>),
    /// The held version again, byte for byte (payload): nothing to do.
    Unchanged,
}

/// Verifies global configurations for one instance against one anchor.
#[derive(Debug, Clone)]
pub struct Verifier {
    anchor: Anchor,
    instance: String,
}

/// Header parameters we accept; everything else (`crit`, `b64`, `jwk`, `jku`, `x5u`,
/// `x5c`, …) is refused, so no header can redirect trust or change the signing input.
const HEADER_PARAMETERS: &[&str] = &["alg", "kid", "typ", "cty"];

/// A JWS compact serialisation, split and decoded, its algorithm checked (`ES256` or
/// `RS256` only, before any key is touched); also what citizen assertions are.
pub(crate) struct Compact<'a> {
    pub(crate) alg: SigningAlg,
    pub(crate) kid: Option<String>,
    pub(crate) signing_input: &'a [u8],
    pub(crate) payload: Vec<u8>,
    pub(crate) signature: Vec<u8>,
}

fn malformed(reason: &str) -> GlobalConfError {
    GlobalConfError::Malformed {
        reason: reason.to_owned(),
    }
}

impl<'a> Compact<'a> {
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, GlobalConfError> {
        // A trailing newline from a file or an HTTP body is not part of the JWS.
        let bytes = bytes.trim_ascii();
        let parts: Vec<&[u8]> = bytes.split(|&b| b == b'.').collect();
        let [header, payload, signature] = parts[..] else {
            return Err(malformed(
                "not a JWS compact serialisation (three '.'-separated parts)",
            ));
        };
        let decode = |part: &[u8], what: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| malformed(&format!("the {what} is not unpadded base64url")))
        };
        let header_json = decode(header, "protected header")?;
        let header_value = json::parse_strict(&header_json)
            .map_err(|_| malformed("the protected header is not a JSON object"))?;
        let Value::Object(header_map) = header_value else {
            return Err(malformed("the protected header is not a JSON object"));
        };
        let Some(Value::String(alg)) = header_map.get("alg") else {
            return Err(malformed("the protected header has no alg"));
        };
        // Before any crypto: only our two algorithms, whatever key they would use.
        let alg = SigningAlg::from_header(alg).ok_or(GlobalConfError::AlgorithmUnsupported)?;
        if header_map
            .keys()
            .any(|key| !HEADER_PARAMETERS.contains(&key.as_str()))
        {
            return Err(malformed(
                "the protected header has a parameter other than alg, kid, typ, cty",
            ));
        }
        if ["kid", "typ", "cty"]
            .iter()
            .any(|key| header_map.get(*key).is_some_and(|v| !v.is_string()))
        {
            return Err(malformed("kid, typ and cty must be strings"));
        }
        let payload = decode(payload, "payload")?;
        let signature = decode(signature, "signature")?;
        if signature.is_empty() {
            return Err(malformed("the signature is empty"));
        }
        let signing_input_len = header.len() + 1 + parts[1].len();
        let kid = header_map
            .get("kid")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(Compact {
            alg,
            kid,
            signing_input: &bytes[..signing_input_len],
            payload,
            signature,
        })
    }
}

impl Verifier {
    /// A verifier for `instance` (e.g. `VN`) trusting `anchor`.
    pub fn new(anchor: Anchor, instance: impl Into<String>) -> Self {
        Verifier {
            anchor,
            instance: instance.into(),
        }
    }

    /// The anchor configured.
    pub fn anchor(&self) -> &Anchor {
        &self.anchor
    }

    /// Verifies a signed global configuration received at `now`, given the one held
    /// (if any). Checks, in order: size (at most [`MAX_SIGNED_BYTES`]), JWS structure,
    /// `alg` (`ES256` or `RS256` only), signature, payload and its validation,
    /// instance, expiry, version.
    ///
    /// The signature must verify against the verifier's anchor, or, once the held
    /// configuration's announced next anchor is in force (`now >= effective_from`),
    /// against that next anchor only: from then on a document signed only by the
    /// old anchor is refused.
    pub fn verify(
        &self,
        jws_compact: &[u8],
        held: Option<&GlobalConfiguration>,
        now: OffsetDateTime,
    ) -> Result<Verification, GlobalConfError> {
        if jws_compact.len() > MAX_SIGNED_BYTES {
            return Err(malformed("larger than 4 MiB"));
        }
        let compact = Compact::parse(jws_compact)?;

        let anchor = held
            .and_then(GlobalConfiguration::anchor_rotation)
            .filter(|rotation| now >= rotation.effective_from)
            .map_or(&self.anchor, |rotation| &rotation.next_anchor);
        if !anchor.verifies(compact.alg, compact.signing_input, &compact.signature) {
            return Err(GlobalConfError::SignatureInvalid);
        }

        let config = GlobalConfiguration::parse_unverified(&compact.payload)?;
        if config.instance() != self.instance {
            return Err(GlobalConfError::InstanceMismatch);
        }
        if config.is_expired(now) {
            return Err(GlobalConfError::Expired {
                expires_at: config.expires_at(),
            });
        }
        if let Some(held) = held {
            let stale = GlobalConfError::Stale {
                held: held.version(),
                received: config.version(),
            };
            match config.version().cmp(&held.version()) {
                Ordering::Less => return Err(stale),
                Ordering::Equal if config.raw_json() == held.raw_json() => {
                    return Ok(Verification::Unchanged);
                }
                Ordering::Equal => return Err(stale),
                Ordering::Greater => {}
            }
        }
        let next_anchor = config
            .anchor_rotation()
            .map(|rotation| (rotation.next_anchor.clone(), rotation.effective_from));
        Ok(Verification::Accepted(Box::new(Accepted {
            config,
            next_anchor,
            signed_by: anchor.clone(),
            anchor_rotated: anchor != &self.anchor,
        })))
    }
}

#[cfg(test)]
mod tests;
