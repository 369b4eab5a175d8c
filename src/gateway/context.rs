//! The typed context of one exchange: built once from the request head, owned by
//! the exchange's task, passed by reference to every phase.
//!
//! Owns: what the edge parsed ([`ExchangeContext`]'s head fields), who the peer is
//! once authenticated ([`Peer`]), which leg of a federated exchange this node plays
//! ([`Leg`]), and what the phases learned on the way ([`Trail`]), which is what the
//! journal record and the metrics are made of.
//!
//! Does not own: parsing (that is [`crate::protocol`]), deciding (contracts, trust),
//! or rendering errors (one place: [`super::exchange`]).

use crate::identity::{ClientId, MemberId};
use crate::protocol::{Purpose, Target};
use crate::trust::registry::Authenticated;
use axum::http::Method;
use time::OffsetDateTime;
use tokio::time::Instant;

/// The authenticated peer of a request.
#[derive(Debug, Clone)]
pub enum Peer {
    /// Consumer listener: an information system whose certificate the registry binds
    /// to the subsystems it may claim.
    InformationSystem(std::sync::Arc<Authenticated>),
    /// Exchange listener: a secure server registered in the global configuration for
    /// `member`, identified by its certificate (the message signature's key id).
    SecureServer {
        /// The member the server belongs to.
        member: MemberId,
        /// The server's name in the global configuration.
        name: String,
        /// Lowercase hex SHA-256 of its certificate: the signature's `keyid`.
        key_id: String,
    },
    /// Exchange listener: a hub of the federation relaying for another member's server.
    Hub {
        /// The hub's name in the global configuration.
        name: String,
        /// Lowercase hex SHA-256 of its certificate.
        key_id: String,
    },
}

impl Peer {
    /// The key id (certificate fingerprint) of a gateway peer; none for an information system.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Peer::InformationSystem(_) => None,
            Peer::SecureServer { key_id, .. } | Peer::Hub { key_id, .. } => Some(key_id),
        }
    }
}

/// Which part of a (possibly federated) exchange this node plays; journaled so the
/// consumer's, the hub's and the provider's records of one `X-Road-Id` can be matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// A consumer system called this node, which answered from a local adapter.
    Local,
    /// A consumer system called this node, which forwarded to a provider's gateway.
    ConsumerSide,
    /// A hub relayed between two gateways.
    Hub,
    /// Another gateway (or a hub) called this node's exchange listener.
    ProviderSide,
    /// A consumer system called this node, which answered from its answer cache (every
    /// authorisation phase ran; no provider was asked).
    Cache,
}

impl Leg {
    /// The leg's slot among the metric handles a contract keeps (below
    /// [`crate::observe::LEGS`]), with its name.
    pub fn metric_slot(self) -> (usize, &'static str) {
        (self as usize, self.as_str())
    }

    /// The stable name, for the journal and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Leg::Local => "local",
            Leg::ConsumerSide => "consumer",
            Leg::Hub => "hub",
            Leg::ProviderSide => "provider",
            Leg::Cache => "cache",
        }
    }
}

/// What the phases learned, in the order they learn it; the journal record and the
/// metric labels are made from it once the answer is known.
#[derive(Debug, Default)]
pub struct Trail {
    /// The contract that allowed the exchange.
    pub contract: Option<std::sync::Arc<crate::contract::CompiledContract>>,
    /// The adapter operation (local provider).
    pub operation: Option<String>,
    /// `/r1/{service}{path}[?{sorted query}]`: what the digests cover.
    pub canonical_target: Option<String>,
    /// The request body as received (the journal's keyed digest covers it).
    pub request_body: bytes::Bytes,
    /// Keyed digest of the data subject's identifier.
    pub subject_digest: Option<String>,
    /// When the request left for the provider (backend or remote gateway).
    pub request_out_at: Option<OffsetDateTime>,
    /// When the provider's answer came back.
    pub response_in_at: Option<OffsetDateTime>,
    /// The message signature of this leg's request (`Signature` header value), when the
    /// exchange crossed gateways.
    pub request_signature: Option<String>,
    /// The key id of the gateway at the other end of this leg.
    pub remote_key_id: Option<String>,
    /// Provider side: the verified request's method, target and signature, which the
    /// answer's signature covers (`;req`).
    pub bound_request: Option<crate::msgsig::Message>,
}

/// One exchange as the edge parsed it, with its peer once authenticated.
#[derive(Debug)]
pub struct ExchangeContext {
    /// `X-Road-Id`, the caller's or ours.
    pub message_id: String,
    /// The method.
    pub method: Method,
    /// The addressed service and the canonical path after it.
    pub target: Target,
    /// The raw query string; checked once the provider is known.
    pub query: Option<String>,
    /// The subsystem in `X-Road-Client`: claimed until [`ExchangeContext::peer`] is set,
    /// then vouched for (by the registry, or by a verified message signature).
    pub client: ClientId,
    /// The purpose code, if sent.
    pub purpose: Option<Purpose>,
    /// `X-Road-UserId`, forwarded between gateways, never journaled in clear.
    pub user_id: Option<String>,
    /// `X-Road-Issue`, forwarded between gateways.
    pub issue: Option<String>,
    /// `X-Citizen-Assertion`, forwarded between gateways (covered by the signature) so
    /// that the data owner checks it too; never journaled nor logged.
    pub citizen_assertion: Option<Redacted>,
    /// `citizen_assertion`, already verified inside the node for this very token.
    pub verified_citizen: Option<VerifiedAssertion>,
    /// When the whole exchange must be over.
    pub deadline: Instant,
    /// When the request's body must have arrived.
    pub receive_deadline: Instant,
    /// The authenticated peer; `None` until identity has run.
    pub peer: Option<Peer>,
    /// The part this node plays.
    pub leg: Leg,
    /// What the phases learned.
    pub trail: Trail,
}

impl ExchangeContext {
    /// The authenticated client, once identity has run.
    pub fn authenticated_client(&self) -> Option<&ClientId> {
        self.peer.as_ref().map(|_| &self.client)
    }
}

/// A deadline set by a caller inside the node (autofill's per-source deadline): an
/// exchange carrying it ends at the earlier of it and the node's own. Request extensions
/// never come off the wire, so no client can set it.
#[derive(Debug, Clone, Copy)]
pub struct InnerDeadline(pub Instant);

/// A citizen assertion a caller inside the node has already verified (autofill verifies the
/// citizen's assertion once for the form, then sends each source request with it): the
/// pipeline takes it instead of verifying the JWS again when `X-Citizen-Assertion` is the
/// very token (compared by digest). An in-process request extension: no client can set it.
#[derive(Clone)]
pub struct VerifiedAssertion {
    /// SHA-256 of the token it was verified from.
    pub token_digest: [u8; 32],
    /// What the token said.
    pub assertion: crate::trust::citizen::Assertion,
}

impl VerifiedAssertion {
    /// SHA-256 of a token.
    pub fn digest(token: &str) -> [u8; 32] {
        let mut digest = [0u8; 32];
        digest.copy_from_slice(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref(),
        );
        digest
    }
}

impl std::fmt::Debug for VerifiedAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifiedAssertion(<redacted>)")
    }
}

/// A value never printed, even in debug output: a citizen's assertion carries their
/// personal id.
#[derive(Clone)]
pub struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}
