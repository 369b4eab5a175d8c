//! Who may talk to this node.
//!
//! - [`tls`]: the rustls server configuration: TLS 1.3 (1.2 with AEAD suites only),
//!   client certificates required, chains to the configured CAs, CRLs checked.
//!   A certificate that is unknown, expired, not yet valid or revoked never
//!   completes the handshake.
//! - [`registry`]: the registry of secure servers (máy chủ bảo mật): which
//!   certificate fingerprint belongs to which member, from when.
//! - [`global`]: the federation's signed global configuration: verified against the
//!   anchor, never older than the one held, its secure servers under the notice rule;
//! - [`calendar`]: Vietnamese working days, for the 3-working-day notice rule
//!   (003 Điều 50 khoản 2).
//! - [`PeerCertificate`]: what the accept loop learned about the peer, attached
//!   to every request of the connection.

pub mod calendar;
pub mod citizen;
pub mod global;
pub mod registry;
pub mod tls;

/// The verified client certificate of a connection, attached as a request extension.
///
/// The chain was verified during the handshake; what is left to decide per request
/// is whether the registry binds this fingerprint to the member the request claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// Lowercase hex SHA-256 of the leaf certificate's DER.
    pub fingerprint_sha256: String,
}

/// Lowercase hex SHA-256 of a certificate's DER encoding.
pub fn fingerprint_sha256(der: &[u8]) -> String {
    crate::base::hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der).as_ref())
}
