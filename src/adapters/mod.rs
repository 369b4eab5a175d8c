//! Adapters: how this node reaches the backend systems behind its services.
//!
//! Each backend system is one data file in the top-level `adapters/` folder
//! (kind, address, credentials reference, timeouts, retries, health check,
//! operations with their field mapping). The adapter *kinds* are code here:
//! [`rest`] (REST/JSON) and [`soap`] (SOAP/XML, mapped by [`soap_mapping`]).
//! Both share [`transport`]: hyper's pooled client, per-try deadlines inside
//! the exchange's deadline, retries of idempotent calls, a bulkhead and capped
//! body reads.
//!
//! Adapters know nothing of consumers or contracts: they turn an operation and
//! its parameters into a JSON record, and the gateway decides what leaves.

mod inline;
pub mod rest;
pub mod soap;
pub mod soap_mapping;
pub mod transport;

use crate::base::diagnostics::ConfigError;
use crate::error::{ErrorCode, GatewayError};
use crate::pattern::OperationPattern;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Adapter kinds implemented in code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdapterKind {
    /// REST/JSON over HTTP.
    Rest,
    /// SOAP 1.1 over HTTP.
    Soap,
}

/// An adapter file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdapter {
    /// Unique name; services refer to it.
    pub name: String,
    /// Adapter kind.
    pub kind: AdapterKind,
    /// Free text naming the backend. It is **published**: the open-data catalog (DCAT and
    /// the catalog page) shows it as the description of the services this adapter backs,
    /// so it must not hold internal addresses or anything not meant for the public.
    #[serde(default)]
    pub description: Option<String>,
    /// Base URL of the backend (`http://` or `https://`).
    pub address: String,
    /// Credentials reference: `env:VARIABLE` holding a bearer token. Never the secret itself.
    #[serde(default)]
    pub credentials: Option<String>,
    /// Deadline of one try in milliseconds. Default 5 000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// TCP connect deadline in milliseconds. Default 1 000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Extra tries of idempotent calls after a timeout, connection failure or 5xx. Default 0.
    #[serde(default)]
    pub retries: u32,
    /// Largest accepted response body in bytes. Default 1 MiB.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// Calls in flight to this backend before new ones fail fast (bulkhead). Default 256.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Active health check.
    #[serde(default)]
    pub health: Option<RawHealth>,
    /// Operations offered by the service this adapter backs.
    pub operations: Vec<RawAdapterOperation>,
}

fn default_timeout_ms() -> u64 {
    5_000
}
fn default_connect_timeout_ms() -> u64 {
    1_000
}
fn default_max_response_bytes() -> usize {
    1 << 20
}
fn default_max_in_flight() -> usize {
    256
}

/// `[health]` of an adapter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    /// URL answered with 2xx while the backend is healthy.
    pub url: String,
    /// Interval between checks in milliseconds. Default 5 000.
    #[serde(default = "default_timeout_ms")]
    pub interval_ms: u64,
}

/// One operation as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdapterOperation {
    /// Name for operators and metrics, e.g. `get-citizen`.
    pub name: String,
    /// Method consumers call.
    pub method: String,
    /// Path pattern after the service code, e.g. `/{citizen_id}`.
    pub path: String,
    /// Query parameters consumers may send and the backend receives; any other is
    /// refused (`request.query_not_allowed`). A SOAP operation's `query:NAME`
    /// parameters are declared by their mapping. Default: none.
    #[serde(default)]
    pub query: Vec<String>,
    /// REST mapping (kind = "rest").
    #[serde(default)]
    pub rest: Option<rest::RestMapping>,
    /// SOAP mapping (kind = "soap").
    #[serde(default)]
    pub soap: Option<soap_mapping::SoapOperation>,
}

/// How an operation reaches the backend.
#[derive(Debug, Clone)]
pub enum OperationMapping {
    /// REST/JSON.
    Rest(rest::RestMapping),
    /// SOAP/XML.
    Soap(Box<soap_mapping::SoapOperation>),
}

/// A validated operation.
#[derive(Debug, Clone)]
pub struct AdapterOperation {
    /// Operation name.
    pub name: String,
    /// Consumer-facing pattern.
    pub pattern: OperationPattern,
    /// Query parameter names the operation accepts.
    pub query: Vec<String>,
    /// Backend mapping.
    pub mapping: OperationMapping,
}

impl AdapterOperation {
    /// Whether consumers may send the query parameter `name`.
    pub fn declares_query(&self, name: &str) -> bool {
        self.query.iter().any(|declared| declared == name)
    }
}

/// The largest bulkhead or in-flight limit accepted (far below the semaphore's own limit).
pub const MAX_IN_FLIGHT_LIMIT: usize = 1_000_000;

/// A validated adapter file.
#[derive(Debug, Clone)]
pub struct AdapterSpec {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: AdapterKind,
    /// The file's free text, published in the open-data catalog as the description of
    /// the services it backs.
    pub description: Option<String>,
    /// Base URL.
    pub address: url::Url,
    /// Environment variable holding the bearer token, if any.
    pub credentials_env: Option<String>,
    /// Per-try deadline.
    pub timeout: Duration,
    /// Connect deadline.
    pub connect_timeout: Duration,
    /// Extra tries for idempotent calls.
    pub retries: u32,
    /// Response body cap.
    pub max_response_bytes: usize,
    /// Bulkhead size.
    pub max_in_flight: usize,
    /// Health check URL and interval.
    pub health: Option<(url::Url, Duration)>,
    /// Operations.
    pub operations: Vec<Arc<AdapterOperation>>,
}

fn parse_http_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        _ => Err("must be an http:// or https:// URL".into()),
    }
}

impl AdapterSpec {
    /// Validates an adapter file, returning every problem.
    pub fn validate(raw: RawAdapter, file: &Path) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut error =
            |path: &str, message: String| errors.push(ConfigError::new(file, path, message));
        let name_ok = !raw.name.is_empty()
            && raw.name.len() <= 64
            && raw
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
        if !name_ok {
            error("name", "1-64 characters of A-Z a-z 0-9 - _".into());
        }
        let address = parse_http_url(&raw.address)
            .map_err(|m| error("address", m))
            .ok();
        let credentials_env = match raw.credentials.as_deref() {
            None => None,
            Some(reference) => match reference.strip_prefix("env:") {
                Some(var) if !var.is_empty() => Some(var.to_owned()),
                _ => {
                    error("credentials", "must be a reference such as env:POPULATION_DB_TOKEN, never the secret itself".into());
                    None
                }
            },
        };
        if raw.timeout_ms == 0 {
            error("timeout_ms", "must be positive".into());
        }
        if raw.connect_timeout_ms == 0 {
            error("connect_timeout_ms", "must be positive".into());
        }
        if raw.max_response_bytes == 0 {
            error("max_response_bytes", "must be positive".into());
        }
        if raw.max_in_flight == 0 || raw.max_in_flight > MAX_IN_FLIGHT_LIMIT {
            error(
                "max_in_flight",
                format!("must be between 1 and {MAX_IN_FLIGHT_LIMIT}"),
            );
        }
        // Fail here, where `datagate check` sees it, not only when the node starts.
        if let Some(var) = &credentials_env
            && std::env::var_os(var).is_none()
        {
            error(
                "credentials",
                format!("the environment variable {var} (the credentials) is not set"),
            );
        }
        let health = raw.health.as_ref().and_then(|h| {
            parse_http_url(&h.url)
                .map_err(|m| error("health.url", m))
                .ok()
                .map(|url| (url, Duration::from_millis(h.interval_ms.max(100))))
        });
        if raw.operations.is_empty() {
            error("operations", "at least one operation is required".into());
        }
        let mut operations = Vec::new();
        for (i, op) in raw.operations.iter().enumerate() {
            let at = |field: &str| format!("operations[{i}].{field}");
            let pattern = match OperationPattern::parse(&op.method, &op.path) {
                Ok(pattern) => Some(pattern),
                Err(message) => {
                    error(&at("path"), message);
                    None
                }
            };
            let mapping = match (raw.kind, &op.rest, &op.soap) {
                (AdapterKind::Rest, Some(mapping), None) => {
                    for problem in mapping.validate(pattern.as_ref()) {
                        error(&at("rest"), problem);
                    }
                    Some(OperationMapping::Rest(mapping.clone()))
                }
                (AdapterKind::Soap, None, Some(mapping)) => {
                    for problem in mapping.validate() {
                        error(&at("soap"), problem);
                    }
                    if let Some(pattern) = &pattern {
                        for param in &mapping.params {
                            if let soap_mapping::ParamSource::Path(name) = param.source()
                                && !pattern.param_names().any(|p| p == name)
                            {
                                error(
                                    &at("soap.params"),
                                    format!(
                                        "path parameter {name:?} is not in the operation's path pattern"
                                    ),
                                );
                            }
                        }
                    }
                    Some(OperationMapping::Soap(Box::new(mapping.clone())))
                }
                (AdapterKind::Rest, _, _) => {
                    error(&at("rest"), "a rest adapter's operation needs a [operations.rest] table and no soap table".into());
                    None
                }
                (AdapterKind::Soap, _, _) => {
                    error(&at("soap"), "a soap adapter's operation needs a [operations.soap] table and no rest table".into());
                    None
                }
            };
            let mut query = Vec::new();
            for (q, name) in op.query.iter().enumerate() {
                let ok = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
                if !ok {
                    error(
                        &format!("operations[{i}].query[{q}]"),
                        "query parameter names are 1-64 characters of A-Z a-z 0-9 - _ .".into(),
                    );
                } else if query.contains(name) {
                    error(
                        &format!("operations[{i}].query[{q}]"),
                        "listed twice".into(),
                    );
                } else {
                    query.push(name.clone());
                }
            }
            if let Some(OperationMapping::Soap(soap)) = &mapping {
                for param in &soap.params {
                    if let soap_mapping::ParamSource::Query(name) = param.source()
                        && !query.iter().any(|q| q == name)
                    {
                        query.push(name.to_owned());
                    }
                }
            }
            if let (Some(pattern), Some(mapping)) = (pattern, mapping) {
                operations.push(Arc::new(AdapterOperation {
                    name: op.name.clone(),
                    pattern,
                    query,
                    mapping,
                }));
            }
        }
        match address {
            Some(address) if errors.is_empty() => Ok(AdapterSpec {
                name: raw.name,
                kind: raw.kind,
                description: raw.description.filter(|text| !text.trim().is_empty()),
                address,
                credentials_env,
                timeout: Duration::from_millis(raw.timeout_ms),
                connect_timeout: Duration::from_millis(raw.connect_timeout_ms),
                retries: raw.retries,
                max_response_bytes: raw.max_response_bytes,
                max_in_flight: raw.max_in_flight,
                health,
                operations,
            }),
            _ => Err(errors),
        }
    }

    /// Finds the operation a request addresses, with its path parameters.
    pub fn route(
        &self,
        method: &axum::http::Method,
        path: &str,
    ) -> Option<(Arc<AdapterOperation>, BTreeMap<String, String>)> {
        self.operations.iter().find_map(|op| {
            op.pattern
                .matches(method, path)
                .map(|params| (op.clone(), params))
        })
    }
}

/// Why a backend call failed. Carries no payload values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    /// No answer within the deadline.
    #[error("the backend did not answer in time")]
    Timeout,
    /// Could not connect or the connection broke; the cause is for the log.
    #[error("the backend is unreachable: {0}")]
    Unavailable(TransportCause),
    /// The bulkhead is full.
    #[error("too many calls in flight to the backend")]
    Saturated,
    /// An unexpected HTTP status.
    #[error("the backend answered with HTTP status {0}")]
    Status(u16),
    /// The answer is larger than allowed.
    #[error("the backend's answer exceeds {0} bytes")]
    BodyTooLarge(usize),
    /// The answer is not well-formed JSON/XML or lacks the mapped record.
    #[error("the backend's answer is malformed: {0}")]
    Malformed(String),
    /// The backend has no such record.
    #[error("the backend has no such record")]
    NotFound,
    /// A SOAP fault with its (sanitised) code.
    #[error("the backend answered with SOAP fault {0}")]
    Fault(String),
}

impl AdapterError {
    /// Whether another try of an idempotent call may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            AdapterError::Timeout | AdapterError::Unavailable(_) => true,
            // A 4xx is the backend refusing this very request: the same again is refused again.
            AdapterError::Status(status) => *status >= 500,
            AdapterError::Saturated
            | AdapterError::BodyTooLarge(_)
            | AdapterError::Malformed(_)
            | AdapterError::NotFound
            | AdapterError::Fault(_) => false,
        }
    }

    /// The consumer-facing error. The detail names the failure, not the data.
    pub fn to_gateway_error(&self) -> GatewayError {
        let code = match self {
            AdapterError::Timeout => ErrorCode::UpstreamTimeout,
            AdapterError::Unavailable(_) | AdapterError::Saturated => {
                ErrorCode::UpstreamUnavailable
            }
            AdapterError::Status(status) if (400..500).contains(status) => {
                ErrorCode::UpstreamRejected
            }
            AdapterError::Status(_) => ErrorCode::UpstreamStatus,
            AdapterError::BodyTooLarge(_) => ErrorCode::UpstreamBodyTooLarge,
            AdapterError::Malformed(_) => ErrorCode::UpstreamMalformed,
            AdapterError::NotFound => ErrorCode::UpstreamNotFound,
            AdapterError::Fault(_) => ErrorCode::UpstreamFault,
        };
        let detail = match self {
            // Connection details stay in the log.
            AdapterError::Unavailable(_) => "the backend is unreachable".to_owned(),
            other => other.to_string(),
        };
        GatewayError::new(code, detail)
    }
}

/// Why a backend could not be reached: kept for the log, so an operator can
/// tell a name that does not resolve from a refused connection or a TLS failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportCause {
    /// The backend's name did not resolve.
    Dns,
    /// The connection was refused.
    Refused,
    /// The TCP connect timed out.
    ConnectTimeout,
    /// The TLS handshake with the backend failed.
    Tls,
    /// The connection was reset or closed early.
    Reset,
    /// The answer's body was cut off or undecodable.
    Body,
    /// Anything else the HTTP client reported.
    Other,
}

impl TransportCause {
    /// A stable name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportCause::Dns => "dns",
            TransportCause::Refused => "connection_refused",
            TransportCause::ConnectTimeout => "connect_timeout",
            TransportCause::Tls => "tls",
            TransportCause::Reset => "connection_reset",
            TransportCause::Body => "body_cut_off",
            TransportCause::Other => "other",
        }
    }
}

impl std::fmt::Display for TransportCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One call of an operation.
#[derive(Debug)]
pub struct AdapterRequest<'a> {
    /// The operation.
    pub operation: &'a AdapterOperation,
    /// Path parameters named by the operation's pattern.
    pub params: &'a BTreeMap<String, String>,
    /// The query parameters, decoded, each declared by the operation, sorted.
    pub query: &'a [(String, String)],
    /// The JSON body, if any.
    pub body: Option<&'a serde_json::Value>,
    /// The exchange's message id, forwarded as `X-Road-Id`.
    pub message_id: &'a str,
    /// The exchange's deadline.
    pub deadline: tokio::time::Instant,
}

/// A backend's record: mapped to a JSON value, or the backend's own JSON bytes, kept
/// unparsed until someone needs the tree (a pass-through contract never does).
#[derive(Debug)]
pub enum Record {
    /// Mapped or parsed JSON.
    Value(serde_json::Value),
    /// The backend's JSON document as received.
    Json(bytes::Bytes),
}

fn not_json(error: &serde_json::Error) -> AdapterError {
    AdapterError::Malformed(format!(
        "not JSON (line {}, column {})",
        error.line(),
        error.column()
    ))
}

impl Record {
    /// The record as a JSON tree.
    pub fn into_value(self) -> Result<serde_json::Value, AdapterError> {
        match self {
            Record::Value(value) => Ok(value),
            Record::Json(bytes) => serde_json::from_slice(&bytes).map_err(|e| not_json(&e)),
        }
    }

    /// The record as JSON bytes; raw bytes are checked to be well-formed JSON without
    /// building a tree.
    pub fn into_json_bytes(self) -> Result<bytes::Bytes, AdapterError> {
        match self {
            Record::Value(value) => serde_json::to_vec(&value)
                .map(bytes::Bytes::from)
                .map_err(|e| not_json(&e)),
            Record::Json(bytes) => {
                // JSON exchanged between systems is UTF-8 (RFC 8259 §8.1), and serde_json's
                // skip over bytes does not check the inside of strings: check the encoding
                // first, then the grammar over the `str`.
                let text = simdutf8::compat::from_utf8(&bytes).map_err(|e| {
                    AdapterError::Malformed(format!(
                        "not JSON: not UTF-8 (at byte {})",
                        e.valid_up_to()
                    ))
                })?;
                serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| not_json(&e))?;
                Ok(bytes)
            }
        }
    }
}

/// What a backend answered.
#[derive(Debug)]
pub struct AdapterResponse {
    /// The record (or document).
    pub record: Record,
    /// Bytes received from the backend.
    pub bytes: usize,
}

/// A ready adapter: its spec and its transport.
#[derive(Debug)]
pub struct Adapter {
    /// The validated spec.
    pub spec: AdapterSpec,
    transport: transport::Transport,
    /// `datagate_upstream_duration_seconds{adapter}`, registered on first use and kept.
    upstream_duration: std::sync::OnceLock<metrics::Histogram>,
    /// The "backend unreachable" warning, at most once a second for this backend.
    unreachable: crate::observe::Throttled,
}

impl Adapter {
    /// Builds the HTTP client; fails when a credentials variable is unset.
    pub fn build(spec: AdapterSpec) -> Result<Self, String> {
        let transport = transport::Transport::new(&spec)?;
        Ok(Adapter {
            spec,
            transport,
            upstream_duration: std::sync::OnceLock::new(),
            unreachable: crate::observe::Throttled::new(),
        })
    }

    /// The histogram of this backend's call durations.
    pub fn upstream_duration(&self) -> &metrics::Histogram {
        self.upstream_duration.get_or_init(|| {
            metrics::histogram!("datagate_upstream_duration_seconds", "adapter" => self.spec.name.clone())
        })
    }

    /// One failure to reach this backend: `Some(n)` when it is to be logged, standing for
    /// `n` failures (see [`crate::observe::Throttled`]).
    pub fn unreachable_warning(&self) -> Option<u64> {
        self.unreachable.occurrence()
    }

    /// Calls the backend.
    pub async fn call(&self, request: AdapterRequest<'_>) -> Result<AdapterResponse, AdapterError> {
        match &request.operation.mapping {
            OperationMapping::Rest(mapping) => rest::call(&self.transport, mapping, &request).await,
            OperationMapping::Soap(mapping) => soap::call(&self.transport, mapping, &request).await,
        }
    }

    /// Runs the health check once; adapters without one are healthy.
    pub async fn check_health(&self) -> bool {
        self.transport.probe().await
    }
}
