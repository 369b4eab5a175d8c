//! The node configuration file as written (TOML). Paths are relative to the file.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `datagate.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNodeConfig {
    /// Who this node is.
    pub node: RawNode,
    /// Where it listens.
    pub listeners: RawListeners,
    /// Its certificate and whom it trusts.
    pub tls: RawTls,
    /// The secure-server registry.
    pub registry: RawRegistryRef,
    /// Working-day calendar.
    #[serde(default)]
    pub calendar: RawCalendar,
    /// Where contracts are.
    pub contracts: RawDir,
    /// Where adapters are.
    pub adapters: RawDir,
    /// The journal.
    pub journal: RawJournal,
    /// Request limits.
    #[serde(default)]
    pub limits: RawLimits,
    /// Services this node provides, each backed by an adapter.
    #[serde(default)]
    pub services: Vec<RawService>,
    /// Switches that weaken the node's guarantees. Each logs a warning at start.
    #[serde(default)]
    pub dangerous: RawDangerous,
}

/// `[dangerous]`: never in production.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDangerous {
    /// Do not journal exchanges (breaks invariant 3: every exchange journaled before it is
    /// acknowledged). Exists to measure the proxy path alone in benchmarks. Default false.
    #[serde(default)]
    pub disable_journal: bool,
}

/// `[node]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    /// This node's member, `instance/class/code`.
    pub member: String,
    /// Operator-facing name of this secure server.
    pub name: String,
}

/// `[listeners]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListeners {
    /// mTLS listener for this member's information systems.
    pub consumer: SocketAddr,
    /// Plain-HTTP listener for `/healthz`, `/readyz`, `/metrics`.
    pub ops: SocketAddr,
}

/// `[tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain of this node.
    pub certificate: PathBuf,
    /// PEM private key of this node.
    pub key: PathBuf,
    /// PEM CA certificates peers must chain to.
    pub trusted_cas: Vec<PathBuf>,
    /// CRLs of those CAs (PEM or DER).
    #[serde(default)]
    pub crls: Vec<PathBuf>,
}

/// `[registry]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistryRef {
    /// The registry file (TOML, `[[secure_servers]]`).
    pub file: PathBuf,
}

/// `[calendar]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCalendar {
    /// Public holidays, `YYYY-MM-DD`.
    #[serde(default)]
    pub holidays: Vec<String>,
}

/// A directory reference.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDir {
    /// The directory.
    pub dir: PathBuf,
}

/// `[journal]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJournal {
    /// SQLite database file; created when missing.
    pub path: PathBuf,
    /// File holding the key of the journal's keyed digests (HMAC-SHA256). Created when missing.
    #[serde(default)]
    pub hmac_key_file: Option<PathBuf>,
}

/// `[limits]`, each with its default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// Largest request body in bytes. Default 1 MiB.
    pub request_body_bytes: usize,
    /// Deadline of one exchange in milliseconds. Default 15 000.
    pub request_timeout_ms: u64,
    /// Requests in flight before shedding. Default 1024.
    pub max_concurrent_requests: usize,
    /// Grace period for in-flight requests at shutdown, in milliseconds. Default 10 000.
    pub shutdown_grace_ms: u64,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            request_body_bytes: 1 << 20,
            request_timeout_ms: 15_000,
            max_concurrent_requests: 1024,
            shutdown_grace_ms: 10_000,
        }
    }
}

/// `[[services]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// Service id: `instance/class/member/subsystem/service`.
    pub id: String,
    /// Name of the adapter (file in the adapters directory) that backs it.
    pub adapter: String,
}
