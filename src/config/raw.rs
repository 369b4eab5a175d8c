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
    /// The federation: exchange with other gateways (absent: local adapters only).
    #[serde(default)]
    pub federation: Option<RawFederation>,
    /// The journal admin API (absent: no admin listener).
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    /// Identity providers whose citizen assertions this node accepts (besides those of
    /// the global configuration).
    #[serde(default)]
    pub identity_providers: Vec<RawIdentityProvider>,
    /// Once-only forms (absent: `forms/` under the contracts directory, when it exists).
    #[serde(default)]
    pub forms: Option<RawDir>,
    /// The answer cache.
    #[serde(default)]
    pub cache: Option<RawCacheSettings>,
    /// The public listener's settings (with `[listeners] public`).
    #[serde(default)]
    pub public: Option<RawPublic>,
    /// Open datasets (absent: `datasets/` under the contracts directory, when it exists).
    #[serde(default)]
    pub datasets: Option<RawDatasets>,
}

/// `[public]`: the public listener (open data for everyone).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPublic {
    /// Serve TLS (server-only, the `[tls]` certificate); false: plain HTTP behind the
    /// operator's own TLS terminator.
    #[serde(default)]
    pub tls: bool,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` is believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Every connection begins with a PROXY protocol v2 header from a load balancer listed
    /// in `trusted_proxies`, naming the client (default false).
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Requests per second per client on routes that name no dataset (default 20).
    #[serde(default)]
    pub per_second: Option<u32>,
    /// Their burst (default 40).
    #[serde(default)]
    pub burst: Option<u32>,
    /// The listener's public URL (`https://data.example.gov.vn`, an `http` or `https` URL
    /// with no query or fragment): the base of the absolute IRIs in the DCAT catalog.
    /// Absent: built from each request's `Host` header (`http://`, or `https://` with
    /// `tls = true`), which a shared cache could mix up; set it in production.
    #[serde(default)]
    pub base_url: Option<String>,
}

/// `[datasets]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatasets {
    /// The dataset files (`*.yaml`).
    pub dir: PathBuf,
    /// Where CSV sources are imported (default `opendata/` beside the configuration file).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// The open-data PostgreSQL database (`postgres://…`) of datasets with
    /// `source.kind: postgres`.
    #[serde(default)]
    pub postgres_url: Option<String>,
}

/// `[cache]`: the answer cache of autofill and cached lookups.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCacheSettings {
    /// The most bytes of answers held in memory (bodies plus a fixed overhead each).
    pub max_bytes: u64,
}

/// `[[identity_providers]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentityProvider {
    /// Its issuer (`iss`), exactly as its assertions write it.
    pub issuer: String,
    /// Its signing keys: a JWKS file (`{"keys": [...]}`, each key with a `kid`).
    pub jwks_file: PathBuf,
}

/// `[federation]`: this node as a secure server of the federation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFederation {
    /// The federation instance (`VN`); the global configuration must name it.
    pub instance: String,
    /// The central authority's public key (PEM `PUBLIC KEY` or `CERTIFICATE`): the trust
    /// anchor the global configuration is verified against.
    pub anchor: PathBuf,
    /// Where the signed global configuration comes from: an `https://` URL (fetched over
    /// mTLS with this node's certificate) or a file.
    pub global_configuration: String,
    /// Seconds between polls of the global configuration. Default 60.
    #[serde(default = "default_refresh_seconds")]
    pub refresh_seconds: u64,
    /// This node's secure-server name in the global configuration.
    pub server_name: String,
    /// The signing identity: a PKCS#12 file or a PEM file holding key and certificate.
    /// Default: the `[tls]` certificate and key (the registered secure-server certificate).
    #[serde(default)]
    pub identity: Option<PathBuf>,
    /// The environment variable holding the identity file's password, if it has one.
    #[serde(default)]
    pub identity_password_env: Option<String>,
    /// The private key whose public half the global configuration publishes as this
    /// server's `encryption_key` (PEM or PKCS#12).
    pub encryption_key: PathBuf,
    /// The environment variable holding the encryption key file's password, if any.
    #[serde(default)]
    pub encryption_key_password_env: Option<String>,
    /// The signature algorithm for an RSA identity: `rsa-pss-sha512` (default for RSA) or
    /// `rsa-v1_5-sha256`. EC P-256 keys sign `ecdsa-p256-sha256`, Ed25519 `ed25519`.
    #[serde(default)]
    pub signature_algorithm: Option<String>,
    /// Oldest accepted `created`, in seconds. Default 300.
    #[serde(default = "default_signature_age")]
    pub max_signature_age_seconds: u64,
    /// Tolerated clock difference between gateways, in seconds. Default 30.
    #[serde(default = "default_clock_skew")]
    pub max_clock_skew_seconds: u64,
    /// Nonces remembered to refuse replays (bounded; see docs/PROTOCOL.md). Default 100000.
    #[serde(default = "default_nonce_memory")]
    pub nonce_memory: usize,
    /// Whether this node relays between gateways as a hub of the federation.
    #[serde(default)]
    pub hub: bool,
    /// Central mode: serve this signed global configuration (JWS file) on the exchange
    /// listener at `/exchange/v1/globalconf`.
    #[serde(default)]
    pub serve_global_configuration: Option<PathBuf>,
}

fn default_refresh_seconds() -> u64 {
    60
}
fn default_signature_age() -> u64 {
    300
}
fn default_clock_skew() -> u64 {
    30
}
fn default_nonce_memory() -> usize {
    100_000
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
    /// mTLS listener for the federation's gateways and hubs (none: this node takes no
    /// federated exchanges).
    #[serde(default)]
    pub exchange: Option<SocketAddr>,
    /// The public listener: open data for everyone, no client certificate.
    #[serde(default)]
    pub public: Option<SocketAddr>,
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
    /// `sqlite` (the embedded default) or `postgres` (shared by a node's replicas).
    #[serde(default)]
    pub backend: RawJournalBackend,
    /// SQLite database file; created when missing (sqlite only).
    pub path: Option<PathBuf>,
    /// `postgres://` URL (postgres only).
    pub url: Option<String>,
    /// Schema of the journal's tables (postgres only; default `datagate`).
    pub schema: Option<String>,
    /// This process's chain (postgres only; one per replica).
    pub chain: Option<String>,
    /// File holding the key of the journal's keyed digests (HMAC-SHA256), at least 32
    /// bytes. Required and never generated by `serve`: a citizen's records are found by
    /// digests under this key, so every start and every replica of a node must use the same
    /// one (`datagate certs` and the demo write one).
    pub hmac_key_file: PathBuf,
    /// Free space (MiB) kept on the journal's file system: below it new exchanges are
    /// refused (sqlite only; default 64).
    pub min_free_mb: Option<u64>,
    /// Where sealed batches are archived (gzip files that still verify).
    pub archive_dir: Option<PathBuf>,
    /// Sealed batches older than this many days are archived (default 30).
    pub archive_after_days: Option<f64>,
    /// Records (and archive files) older than this many days are deleted.
    pub retention_days: Option<f64>,
    /// How often archiving, retention and the free-space check run (default 60 s).
    pub maintenance_interval_secs: Option<u64>,
    /// Microseconds the writer waits after a batch's first record for more to commit
    /// with it (default 0; at most 10 000): fewer commits for a bounded added latency.
    pub commit_window_us: Option<u64>,
    /// RFC 3161 time-stamping authority that stamps every seal.
    pub tsa_url: Option<String>,
    /// CA certificates (PEM) the TSA's certificate must chain to.
    pub tsa_ca_file: Option<PathBuf>,
}

/// `[journal] backend`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawJournalBackend {
    /// The embedded SQLite file.
    #[default]
    Sqlite,
    /// A PostgreSQL schema.
    Postgres,
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
    /// Exchanges one authenticated consumer (subsystem) may have in flight at once, so one
    /// tenant can never take the whole node. Default: a quarter of
    /// `max_concurrent_requests` (at least 1).
    pub max_in_flight_per_consumer: Option<usize>,
    /// Deadline for receiving a request's headers and its body, in milliseconds, separate
    /// from (and shorter than) the exchange deadline; a slow sender gets 408. Default 5 000.
    pub request_receive_timeout_ms: u64,
    /// TLS handshake deadline in milliseconds. Default 5 000.
    pub handshake_timeout_ms: u64,
    /// A connection with no request in flight for this long is closed, counted from the
    /// moment the connection is accepted; HTTP/2 pings do not reset it. Milliseconds.
    /// Default 30 000.
    pub idle_timeout_ms: u64,
    /// Open connections of the consumer listener. Default 8 192.
    pub max_connections: usize,
    /// Open connections from one IP address, checked before the TLS handshake. Default 256.
    pub max_connections_per_ip: usize,
    /// Open connections per client certificate, checked after the handshake. Default 64.
    pub max_connections_per_certificate: usize,
    /// New connections one IP address may open per second (burst: as many), checked
    /// before the handshake; 0 switches the rate off. Default 200.
    pub max_new_connections_per_ip_per_second: u32,
    /// Connections still in their TLS handshake, so sockets that never speak TLS cannot
    /// fill `max_connections`; past half of it, handshakes get at most 1 s. Default 1 024.
    pub max_pending_handshakes: usize,
    /// Longest request target (path and query) in bytes; longer gets 414. Default 8 192.
    pub max_uri_bytes: usize,
    /// Most header fields in one request; more gets 431. Default 64.
    pub max_headers: usize,
    /// Largest total size of a request's header fields in bytes; more gets 431. Default 16 384.
    pub max_header_bytes: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            request_body_bytes: 1 << 20,
            request_timeout_ms: 15_000,
            max_concurrent_requests: 1024,
            shutdown_grace_ms: 10_000,
            max_in_flight_per_consumer: None,
            request_receive_timeout_ms: 5_000,
            handshake_timeout_ms: 5_000,
            idle_timeout_ms: 30_000,
            max_connections: 8_192,
            max_connections_per_ip: 256,
            max_connections_per_certificate: 64,
            max_new_connections_per_ip_per_second: 200,
            max_pending_handshakes: 1_024,
            max_uri_bytes: 8_192,
            max_headers: 64,
            max_header_bytes: 16_384,
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

/// `[admin]`: the journal admin API's listener and the certificates that may call it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// mTLS listener of the admin API (the `[tls]` certificate and trusted CAs).
    pub listen: SocketAddr,
    /// The client certificates allowed, each with a role. Default none (every caller
    /// refused).
    #[serde(default)]
    pub clients: Vec<RawAdminClient>,
}

/// `[[admin.clients]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdminClient {
    /// SHA-256 of the client certificate's DER: 64 hex digits (case and `:` ignored).
    pub fingerprint: String,
    /// `auditor` or `operator`.
    pub role: String,
    /// Who holds it, as the journal of admin queries names them (default: the fingerprint).
    #[serde(default)]
    pub name: Option<String>,
}
