//! Data-sharing contracts: deny by default.
//!
//! A contract (YAML in `contracts/`) says that one consumer subsystem may call
//! some operations of one provider service, for listed purposes, under a legal
//! basis, within a validity window and quota, with request and response JSON
//! Schemas and the response fields it may receive. Contracts are parsed
//! ([`RawContract`]), validated completely (every problem with its path) and
//! compiled once ([`CompiledContract`]: schemas, pointers, limiters); the
//! [`ContractSet`] answers, per request, which contract (if any) allows it.
//!
//! This module does not know adapters or TLS; it decides, it does not route.

pub mod form;
pub mod projection;
pub mod quota;

use crate::base::diagnostics::ConfigError;
use crate::error::{ErrorCode, GatewayError, SchemaViolation};
use crate::identity::{ClientId, ServiceId};
use crate::pattern::OperationPattern;
use axum::http::Method;
use projection::Projection;
use quota::{ContractQuota, QuotaRefusal, Rate};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use time::OffsetDateTime;

/// Data classification (004 Điều 26 khoản 2b).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Classification {
    /// Open data.
    Open,
    /// Internal to the state.
    Internal,
    /// Sensitive, e.g. personal data.
    Sensitive,
    /// State secret: never transits this system (003 Điều 44 khoản 3).
    Secret,
}

/// Assurance level a citizen subject must have (003 Điều 9–10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AssuranceLevel {
    /// SMS OTP and above.
    Medium,
    /// USB token or SIM signature.
    High,
}

/// A JSON Schema: a file relative to the contracts directory, or inline.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum SchemaSource {
    /// Path relative to the contracts directory, e.g. `schemas/citizen.json`.
    File(String),
    /// The schema itself.
    Inline(serde_json::Map<String, serde_json::Value>),
}

/// One allowed operation as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawOperation {
    /// HTTP method.
    pub method: String,
    /// Path pattern after the service code, e.g. `/{citizen_id}`.
    pub path: String,
}

/// Quota as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuota {
    /// Sustained rate: `10/s`, `600/min`, `5000/h`.
    #[serde(default)]
    pub rate: Option<String>,
    /// Requests allowed at once above the sustained rate; default: the rate's count.
    #[serde(default)]
    pub burst: Option<u32>,
    /// Requests per calendar day (Vietnam time).
    #[serde(default)]
    pub daily: Option<u64>,
}

/// Cache policy as written (used by the autofill cache).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// Whether answers may be cached at all.
    pub allowed: bool,
    /// How long, in seconds.
    #[serde(default)]
    pub ttl_seconds: u64,
}

/// A contract file as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawContract {
    /// Stable identifier, e.g. `hcm-portal-citizen-2026`.
    pub id: String,
    /// Version, increased on every change.
    pub version: u32,
    /// Free text for people.
    #[serde(default)]
    pub description: Option<String>,
    /// The consumer subsystem: `instance/class/member/subsystem`.
    pub consumer: String,
    /// The provider service: `instance/class/member/subsystem/service`.
    pub service: String,
    /// Allowed operations.
    pub operations: Vec<RawOperation>,
    /// Purpose codes; when not empty, `X-Purpose` must be one of them.
    #[serde(default)]
    pub purposes: Vec<String>,
    /// The legal basis (decision or decree).
    pub legal_basis: String,
    /// Data classification.
    pub classification: Classification,
    /// JSON pointers of the response fields the consumer may receive.
    pub allowed_fields: Vec<String>,
    /// JSON Schema of the request document (`{"path":…, "query":…, "body":…}`).
    #[serde(default)]
    pub request_schema: Option<SchemaSource>,
    /// JSON Schema the provider's answer must satisfy before projection.
    #[serde(default)]
    pub response_schema: Option<SchemaSource>,
    /// Start of validity (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub valid_from: OffsetDateTime,
    /// End of validity (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub valid_until: OffsetDateTime,
    /// Quota; none means unlimited.
    #[serde(default)]
    pub quota: Option<RawQuota>,
    /// Cache policy; none means no caching.
    #[serde(default)]
    pub cache: Option<RawCache>,
    /// Assurance level a citizen subject must have. Refused by `datagate check` until
    /// citizen assertions are verified (it would otherwise be a control that fails open).
    #[serde(default)]
    pub assurance_level: Option<AssuranceLevel>,
    /// The data subject, for the journal's keyed digest: `path:NAME` or `body:/pointer`.
    #[serde(default)]
    pub subject: Option<String>,
    /// Who approved it for the data owner.
    pub approved_by: String,
    /// A law-enforcement embargo, `YYYY-MM-DD` (Vietnam date): before that day the
    /// exchanges under this contract are left out of the data subject's view of who
    /// accessed their data (auditors see them, flagged). None: no embargo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embargo_until: Option<String>,
}

/// Where the data subject's identifier is found in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectRef {
    /// A path parameter.
    Path(String),
    /// A JSON pointer into the request body.
    Body(String),
}

/// A contract ready to enforce.
#[derive(Debug)]
pub struct CompiledContract {
    /// Identifier.
    pub id: String,
    /// Version.
    pub version: u32,
    /// Consumer subsystem.
    pub consumer: ClientId,
    /// Provider service.
    pub service: ServiceId,
    /// Allowed operations.
    pub operations: Vec<OperationPattern>,
    /// Allowed purposes (empty: no purpose required).
    pub purposes: foldhash::HashSet<String>,
    /// Legal basis.
    pub legal_basis: String,
    /// Classification.
    pub classification: Classification,
    /// Response projection.
    pub projection: Projection,
    /// Request schema.
    pub request_schema: Option<jsonschema::Validator>,
    /// Response schema.
    pub response_schema: Option<jsonschema::Validator>,
    /// Validity start.
    pub valid_from: OffsetDateTime,
    /// Validity end.
    pub valid_until: OffsetDateTime,
    /// Rate and daily limits.
    pub quota: Arc<ContractQuota>,
    /// Cache TTL if caching is allowed.
    pub cache_ttl: Option<std::time::Duration>,
    /// Required assurance level.
    pub assurance_level: Option<AssuranceLevel>,
    /// The data subject reference.
    pub subject: Option<SubjectRef>,
    /// The embargo's end (Vietnam date), if the exchanges are embargoed.
    pub embargo_until: Option<time::Date>,
    /// Lowercase hex SHA-256 of the published contract: which text of the contract this
    /// is. Cached answers are keyed on it, so a changed contract never serves them.
    pub revision: String,
    /// The contract as written, schemas inline: what the owner's gateway publishes to
    /// the consumer member's gateway.
    pub published: RawContract,
    /// The exchange metrics of its (service, consumer) pair, registered once.
    pub metrics: crate::observe::ExchangeMetrics,
}

/// The maximum number of schema violations reported in one answer.
const MAX_VIOLATIONS: usize = 20;

fn validate_against(
    validator: &jsonschema::Validator,
    instance: &serde_json::Value,
) -> Vec<SchemaViolation> {
    validator
        .iter_errors(instance)
        .take(MAX_VIOLATIONS)
        .map(|error| {
            let mut path = error.instance_path().to_string();
            // A missing property is named by the schema, not by the payload: safe to show.
            if let jsonschema::error::ValidationErrorKind::Required { property } = error.kind()
                && let Some(name) = property.as_str()
            {
                path = format!("{path}/{}", name.replace('~', "~0").replace('/', "~1"));
            }
            SchemaViolation {
                path,
                rule: error.kind().keyword().to_owned(),
            }
        })
        .collect()
}

impl CompiledContract {
    /// Checks the request document against the request schema.
    pub fn validate_request(&self, document: &serde_json::Value) -> Result<(), GatewayError> {
        let Some(validator) = &self.request_schema else {
            return Ok(());
        };
        let violations = validate_against(validator, document);
        if violations.is_empty() {
            Ok(())
        } else {
            Err(GatewayError::new(
                ErrorCode::RequestSchemaInvalid,
                "the request does not satisfy the contract's request schema",
            )
            .with_violations(violations))
        }
    }

    /// Checks the provider's answer against the response schema.
    pub fn validate_response(&self, document: &serde_json::Value) -> Result<(), GatewayError> {
        let Some(validator) = &self.response_schema else {
            return Ok(());
        };
        let violations = validate_against(validator, document);
        if violations.is_empty() {
            Ok(())
        } else {
            // The violations describe the provider's data: they go to the log, not the consumer.
            tracing::warn!(
                contract = %self.id,
                violations = ?violations,
                "upstream answer breaks the contract's response schema"
            );
            Err(GatewayError::new(
                ErrorCode::UpstreamResponseInvalid,
                "the provider's answer does not satisfy the contract's response schema",
            ))
        }
    }

    /// Takes one request from the contract's quota.
    pub fn take_quota(&self, now: OffsetDateTime) -> Result<(), GatewayError> {
        self.quota.check(now).map_err(|refusal| match refusal {
            QuotaRefusal::Rate(wait) => GatewayError::new(
                ErrorCode::RateLimitExceeded,
                "the contract's rate limit is exceeded",
            )
            .with_retry_after(wait),
            QuotaRefusal::Daily(wait) => GatewayError::new(
                ErrorCode::DailyQuotaExceeded,
                "the contract's daily quota is used up",
            )
            .with_retry_after(wait),
        })
    }
}

/// Loads a schema source into a compiled validator, with the schema itself (what a
/// published copy of the contract carries inline).
fn compile_schema(
    source: &SchemaSource,
    contracts_dir: &Path,
) -> Result<(jsonschema::Validator, serde_json::Value), String> {
    let schema = match source {
        SchemaSource::Inline(map) => serde_json::Value::Object(map.clone()),
        SchemaSource::File(relative) => {
            let path = contracts_dir.join(relative);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            serde_json::from_str(&text)
                .map_err(|e| format!("{} is not JSON: {e}", path.display()))?
        }
    };
    // No retriever is configured (jsonschema's default features are off), so a
    // remote `$ref` fails here instead of fetching over the network.
    jsonschema::validator_for(&schema)
        .map(|validator| (validator, schema))
        .map_err(|e| format!("invalid JSON Schema: {e}"))
}

/// The digest of a contract's published text (see [`CompiledContract::revision`]).
fn revision(published: &RawContract) -> String {
    let text = serde_json::to_vec(published).unwrap_or_default();
    crate::base::hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &text).as_ref())
}

/// Validates and compiles one contract, returning every problem found.
pub fn compile(
    raw: &RawContract,
    file: &Path,
    contracts_dir: &Path,
) -> Result<CompiledContract, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut error = |path: &str, message: String| {
        errors.push(ConfigError::new(file, path, message));
    };

    let id_ok = !raw.id.is_empty()
        && raw.id.len() <= 128
        && raw
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !id_ok {
        error("id", "must be 1-128 characters of A-Z a-z 0-9 - _ .".into());
    }
    let consumer = raw
        .consumer
        .parse::<ClientId>()
        .map_err(|e| error("consumer", e.to_string()))
        .ok();
    let service = raw
        .service
        .parse::<ServiceId>()
        .map_err(|e| error("service", e.to_string()))
        .ok();
    if raw.operations.is_empty() {
        error("operations", "at least one operation is required".into());
    }
    let mut operations = Vec::new();
    for (i, op) in raw.operations.iter().enumerate() {
        match OperationPattern::parse(&op.method, &op.path) {
            Ok(pattern) => operations.push(pattern),
            Err(message) => error(&format!("operations[{i}]"), message),
        }
    }
    for (i, purpose) in raw.purposes.iter().enumerate() {
        let ok = !purpose.is_empty()
            && purpose.len() <= 64
            && purpose
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            error(
                &format!("purposes[{i}]"),
                "purpose codes are 1-64 characters of A-Z a-z 0-9 - _ .".into(),
            );
        }
    }
    if raw.legal_basis.trim().is_empty() {
        error("legal_basis", "a contract needs a legal basis".into());
    }
    if raw.approved_by.trim().is_empty() {
        error(
            "approved_by",
            "a contract needs the data owner's approver".into(),
        );
    }
    if raw.classification == Classification::Secret {
        error(
            "classification",
            "secret data never transits this system (003 Điều 44 khoản 3)".into(),
        );
    }
    if raw.allowed_fields.is_empty() {
        error(
            "allowed_fields",
            "list the response fields the consumer may receive (\"\" for the whole answer)".into(),
        );
    }
    let projection = match Projection::compile(&raw.allowed_fields) {
        Ok(projection) => Some(projection),
        Err(bad) => {
            for index in bad {
                error(
                    &format!("allowed_fields[{index}]"),
                    "must be a JSON pointer such as /full_name".into(),
                );
            }
            None
        }
    };
    // The contract as the owner publishes it to the consumer's gateway: schemas inline.
    let mut published = raw.clone();
    let mut schema = |name: &str, source: &Option<SchemaSource>| {
        source
            .as_ref()
            .and_then(|source| match compile_schema(source, contracts_dir) {
                Ok((validator, schema)) => Some((validator, schema)),
                Err(message) => {
                    error(name, message);
                    None
                }
            })
    };
    let inline = |schema: serde_json::Value| match schema {
        serde_json::Value::Object(map) => Some(SchemaSource::Inline(map)),
        _ => None,
    };
    let request_schema =
        schema("request_schema", &raw.request_schema).map(|(validator, schema)| {
            published.request_schema = inline(schema);
            validator
        });
    let response_schema =
        schema("response_schema", &raw.response_schema).map(|(validator, schema)| {
            published.response_schema = inline(schema);
            validator
        });
    if raw.valid_until <= raw.valid_from {
        error("valid_until", "must be later than valid_from".into());
    }
    let mut rate = None;
    let mut burst = None;
    let mut daily = None;
    if let Some(quota) = &raw.quota {
        if let Some(text) = &quota.rate {
            match text.parse::<Rate>() {
                Ok(parsed) => rate = Some(parsed),
                Err(message) => error("quota.rate", message),
            }
        }
        if let Some(value) = quota.burst {
            match NonZeroU32::new(value) {
                // The limiter counts the burst as burst × interval in nanoseconds: past a
                // u64 it would overflow (a panic in debug builds, a wrong limit in release).
                Some(value)
                    if rate.is_some_and(|rate| {
                        (rate.per / rate.requests.get()).as_nanos() * u128::from(value.get())
                            > u128::from(u64::MAX)
                    }) =>
                {
                    error(
                        "quota.burst",
                        "too large for the rate: burst × interval must stay within 500 years"
                            .into(),
                    )
                }
                Some(value) if quota.rate.is_some() => burst = Some(value),
                Some(_) => error("quota.burst", "a burst needs a rate".into()),
                None => error("quota.burst", "must be positive".into()),
            }
        }
        if let Some(value) = quota.daily {
            if value == 0 {
                error("quota.daily", "must be positive".into());
            }
            daily = Some(value);
        }
    }
    // An assurance level binds the request to the citizen the assertion names: without
    // a subject there is nothing to bind, and the level could not be honoured.
    if raw.assurance_level.is_some() && raw.subject.is_none() {
        error(
            "assurance_level",
            "needs `subject` (path:NAME or body:/pointer): the citizen assertion's subject \
             must be the request's"
                .into(),
        );
    }
    let cache_ttl = match &raw.cache {
        Some(cache) if cache.allowed => {
            if cache.ttl_seconds == 0 {
                error(
                    "cache.ttl_seconds",
                    "a cache that is allowed needs a TTL".into(),
                );
            }
            Some(std::time::Duration::from_secs(cache.ttl_seconds))
        }
        _ => None,
    };
    let subject = match raw.subject.as_deref() {
        None => None,
        Some(text) => {
            if let Some(name) = text.strip_prefix("path:") {
                if !operations
                    .iter()
                    .all(|op| op.param_names().any(|p| p == name))
                {
                    error(
                        "subject",
                        "the path parameter must appear in every operation".into(),
                    );
                }
                Some(SubjectRef::Path(name.to_owned()))
            } else if let Some(pointer) = text.strip_prefix("body:") {
                if crate::base::json_pointer::pointer_tokens(pointer).is_none() {
                    error("subject", "body: must be followed by a JSON pointer".into());
                }
                Some(SubjectRef::Body(pointer.to_owned()))
            } else {
                error("subject", "must be path:NAME or body:/pointer".into());
                None
            }
        }
    };

    let embargo_until = raw.embargo_until.as_deref().and_then(|text| {
        time::Date::parse(
            text,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .map_err(|_| error("embargo_until", "must be a date YYYY-MM-DD".into()))
        .ok()
    });

    match (consumer, service, projection) {
        (Some(consumer), Some(service), Some(projection)) if errors.is_empty() => {
            Ok(CompiledContract {
                metrics: crate::observe::ExchangeMetrics::new(
                    &service.to_string(),
                    &consumer.to_string(),
                ),
                id: raw.id.clone(),
                version: raw.version,
                consumer,
                service,
                operations,
                purposes: raw.purposes.iter().cloned().collect(),
                legal_basis: raw.legal_basis.clone(),
                classification: raw.classification,
                projection,
                request_schema,
                response_schema,
                valid_from: raw.valid_from,
                valid_until: raw.valid_until,
                quota: Arc::new(ContractQuota::new(rate, burst, daily)),
                cache_ttl,
                assurance_level: raw.assurance_level,
                subject,
                embargo_until,
                revision: revision(&published),
                published,
            })
        }
        _ => Err(errors),
    }
}

/// What authorisation found: the contract and the operation's path parameters.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The contract that allows the request.
    pub contract: Arc<CompiledContract>,
    /// The path parameters its operation pattern named.
    pub params: std::collections::BTreeMap<String, String>,
}

/// All contracts of a node, indexed by (consumer, service).
#[derive(Debug, Default)]
pub struct ContractSet {
    /// consumer → service → contracts; nested so a lookup borrows instead of cloning keys.
    by_pair: foldhash::HashMap<ClientId, foldhash::HashMap<ServiceId, Vec<Arc<CompiledContract>>>>,
    ids: BTreeMap<String, Arc<CompiledContract>>,
}

impl ContractSet {
    /// Builds the set; duplicate contract ids are an error.
    pub fn new(
        contracts: Vec<(CompiledContract, std::path::PathBuf)>,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut set = ContractSet::default();
        let mut errors = Vec::new();
        for (contract, file) in contracts {
            let contract = Arc::new(contract);
            if set
                .ids
                .insert(contract.id.clone(), contract.clone())
                .is_some()
            {
                errors.push(ConfigError::new(
                    &file,
                    "id",
                    "another contract has the same id".into(),
                ));
            }
            set.by_pair
                .entry(contract.consumer.clone())
                .or_default()
                .entry(contract.service.clone())
                .or_default()
                .push(contract);
        }
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(errors)
        }
    }

    /// Carries the quota state of `previous` over to contracts whose id and
    /// quota settings did not change, so a reload does not hand out a fresh burst.
    pub fn inherit_quotas(&mut self, previous: &ContractSet) {
        // Drop the second handle of every contract so each can be changed in place.
        self.ids.clear();
        for contracts in self.by_pair.values_mut().flat_map(|s| s.values_mut()) {
            for contract in contracts.iter_mut() {
                if let Some(old) = previous.ids.get(&contract.id)
                    && old.quota.settings() == contract.quota.settings()
                    && let Some(new) = Arc::get_mut(contract)
                {
                    new.quota = old.quota.clone();
                }
                self.ids.insert(contract.id.clone(), contract.clone());
            }
        }
    }

    /// The number of contracts.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The contract called `id`, if this set holds it.
    pub fn get(&self, id: &str) -> Option<&Arc<CompiledContract>> {
        self.ids.get(id)
    }

    /// The contracts of `client` for `service` (none: an empty slice).
    pub fn for_pair(&self, client: &ClientId, service: &ServiceId) -> &[Arc<CompiledContract>] {
        self.by_pair
            .get(client)
            .and_then(|services| services.get(service))
            .map_or(&[], Vec::as_slice)
    }

    /// All contracts, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<CompiledContract>> {
        self.ids.values()
    }

    /// Decides whether `client` may call `method path` of `service` for `purpose` at `now`.
    ///
    /// Deny by default: with no contract for the pair, the answer is
    /// `contract.not_found`. When several contracts cover the pair, the first
    /// that allows the request wins; otherwise the most specific refusal is given.
    pub fn authorise(
        &self,
        client: &ClientId,
        service: &ServiceId,
        method: &Method,
        path: &str,
        purpose: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Grant, GatewayError> {
        let candidates = self
            .by_pair
            .get(client)
            .and_then(|services| services.get(service))
            .ok_or_else(|| {
                GatewayError::new(
                    ErrorCode::ContractNotFound,
                    "no data-sharing contract allows this client to call this service",
                )
            })?;
        let mut refusal = GatewayError::new(
            ErrorCode::ContractOperationNotAllowed,
            "no contract for this service allows this method and path",
        );
        for contract in candidates {
            let Some(params) = contract
                .operations
                .iter()
                .find_map(|op| op.matches(method, path))
            else {
                continue;
            };
            if now < contract.valid_from || now >= contract.valid_until {
                refusal = GatewayError::new(
                    ErrorCode::ContractOutsideValidity,
                    format!("contract {} is not valid at this time", contract.id),
                );
                continue;
            }
            if !contract.purposes.is_empty() {
                match purpose {
                    None => {
                        refusal = GatewayError::new(
                            ErrorCode::RequestPurposeMissing,
                            format!(
                                "contract {} requires an X-Purpose header with an allowed purpose code",
                                contract.id
                            ),
                        );
                        continue;
                    }
                    Some(code) if !contract.purposes.contains(code) => {
                        refusal = GatewayError::new(
                            ErrorCode::ContractPurposeNotAllowed,
                            format!("contract {} does not allow this purpose", contract.id),
                        );
                        continue;
                    }
                    Some(_) => {}
                }
            }
            return Ok(Grant {
                contract: contract.clone(),
                params,
            });
        }
        Err(refusal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTRACT: &str = r#"
id: test-contract
version: 1
consumer: VN/GOV/000.00.00.H29/dvc-portal
service: VN/GOV/000.00.00.G10/population-db/citizen
operations:
  - { method: GET, path: "/{citizen_id}" }
purposes: [HOUSEHOLD-REGISTRATION]
legal_basis: Nghị định 47/2024/NĐ-CP
classification: sensitive
allowed_fields: [/citizen_id, /full_name]
request_schema:
  type: object
  properties:
    path:
      type: object
      properties:
        citizen_id: { type: string, pattern: "^[0-9]{12}$" }
      required: [citizen_id]
valid_from: 2026-01-01T00:00:00+07:00
valid_until: 2027-01-01T00:00:00+07:00
quota: { rate: 10/s, burst: 20, daily: 1000 }
subject: path:citizen_id
approved_by: Cục Cảnh sát QLHC về TTXH
"#;

    fn compiled(text: &str) -> Result<CompiledContract, Vec<ConfigError>> {
        let raw: RawContract = yaml_serde::from_str(text).expect("valid yaml");
        compile(&raw, Path::new("c.yaml"), Path::new("."))
    }

    /// 004 Điều 3, Điều 6 khoản 2, Điều 69 khoản 3: no contract, no data; only listed operations, within validity, for an allowed purpose.
    #[test]
    fn compiles_and_authorises() {
        let set = ContractSet::new(vec![(compiled(CONTRACT).expect("valid"), "c.yaml".into())])
            .expect("set");
        let client: ClientId = "VN/GOV/000.00.00.H29/dvc-portal".parse().expect("id");
        let service: ServiceId = "VN/GOV/000.00.00.G10/population-db/citizen"
            .parse()
            .expect("id");
        let now = time::macros::datetime!(2026-06-01 00:00 +7);
        let ok = set.authorise(
            &client,
            &service,
            &Method::GET,
            "/001085012345",
            Some("HOUSEHOLD-REGISTRATION"),
            now,
        );
        assert_eq!(ok.expect("allowed").contract.id, "test-contract");
        let code = |r: Result<Grant, GatewayError>| r.expect_err("denied").code();
        assert_eq!(
            code(set.authorise(
                &client,
                &service,
                &Method::POST,
                "/x",
                Some("HOUSEHOLD-REGISTRATION"),
                now
            )),
            ErrorCode::ContractOperationNotAllowed
        );
        assert_eq!(
            code(set.authorise(&client, &service, &Method::GET, "/1", None, now)),
            ErrorCode::RequestPurposeMissing
        );
        assert_eq!(
            code(set.authorise(
                &client,
                &service,
                &Method::GET,
                "/1",
                Some("MARKETING"),
                now
            )),
            ErrorCode::ContractPurposeNotAllowed
        );
        let later = time::macros::datetime!(2027-06-01 00:00 +7);
        assert_eq!(
            code(set.authorise(
                &client,
                &service,
                &Method::GET,
                "/1",
                Some("HOUSEHOLD-REGISTRATION"),
                later
            )),
            ErrorCode::ContractOutsideValidity
        );
        let stranger: ClientId = "VN/GOV/000.00.00.H30/dvc-portal".parse().expect("id");
        assert_eq!(
            code(set.authorise(&stranger, &service, &Method::GET, "/1", None, now)),
            ErrorCode::ContractNotFound
        );
    }

    /// 002 Điều 26 khoản 1: schema errors name paths, never personal data.
    #[test]
    fn schema_errors_name_paths_never_values() {
        let contract = compiled(CONTRACT).expect("valid");
        let doc = serde_json::json!({"path": {"citizen_id": "Nguyễn Văn A"}});
        let error = contract.validate_request(&doc).expect_err("invalid");
        let rendered = format!("{error:?}");
        assert!(!rendered.contains("Nguyễn"), "{rendered}");
        let missing = contract
            .validate_request(&serde_json::json!({"path": {}}))
            .expect_err("missing");
        let body = format!("{missing:?}");
        assert!(body.contains("/path/citizen_id"), "{body}");
    }

    /// Found by the property tests of issue 7: a burst whose window overflows the limiter's
    /// nanosecond count is refused at load instead of panicking.
    #[test]
    fn refuses_a_burst_the_limiter_cannot_count() {
        let huge = CONTRACT.replace("rate: 10/s, burst: 20", "rate: 1/h, burst: 5124097");
        assert_ne!(huge, CONTRACT, "the test contract has a rate to change");
        let errors = compiled(&huge).expect_err("overflowing burst");
        assert!(errors.iter().any(|e| e.path == "quota.burst"), "{errors:?}");
        let fine = CONTRACT.replace("rate: 10/s, burst: 20", "rate: 1/h, burst: 1000");
        assert!(compiled(&fine).is_ok());
    }

    /// 003 Điều 9–11 (assurance levels): a contract may require `medium` or `high`, but
    /// only with a `subject` the citizen assertion is bound to.
    #[test]
    fn an_assurance_level_needs_a_subject() {
        let without_subject = format!(
            "{}assurance_level: medium\n",
            CONTRACT.replace("subject: path:citizen_id\n", "")
        );
        let errors = compiled(&without_subject).expect_err("no subject to bind");
        assert!(
            errors.iter().any(|e| e.path == "assurance_level"),
            "{errors:?}"
        );
        let with_subject = format!("{CONTRACT}assurance_level: high\n");
        assert_eq!(
            compiled(&with_subject).expect("compiles").assurance_level,
            Some(AssuranceLevel::High)
        );
    }

    /// 003 Điều 44 khoản 3, 004 Điều 55 khoản 1: a secret contract is refused; design §10 invariant 5: every problem is reported.
    #[test]
    fn reports_every_problem_of_a_contract() {
        let broken = CONTRACT
            .replace(
                "consumer: VN/GOV/000.00.00.H29/dvc-portal",
                "consumer: nobody",
            )
            .replace("classification: sensitive", "classification: secret")
            .replace(
                "allowed_fields: [/citizen_id, /full_name]",
                "allowed_fields: [citizen_id]",
            )
            .replace("rate: 10/s", "rate: fast")
            .replace("subject: path:citizen_id", "subject: path:other");
        let errors = compiled(&broken).expect_err("broken");
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        for expected in [
            "consumer",
            "classification",
            "allowed_fields[0]",
            "quota.rate",
            "subject",
        ] {
            assert!(
                paths.contains(&expected),
                "{expected} missing from {paths:?}"
            );
        }
    }

    /// Design §5 (no article): a reload does not reset a contract's quota.
    #[test]
    fn reload_keeps_the_quota_state_of_unchanged_contracts() {
        let tight = CONTRACT.replace(
            "quota: { rate: 10/s, burst: 20, daily: 1000 }",
            "quota: { rate: 1/min, burst: 1 }",
        );
        let set = |text: &str| {
            ContractSet::new(vec![(compiled(text).expect("valid"), "c.yaml".into())]).expect("set")
        };
        let now = time::macros::datetime!(2026-06-01 00:00 +7);
        let old = set(&tight);
        let contract = old.iter().next().expect("one").clone();
        assert!(contract.take_quota(now).is_ok());
        assert!(contract.take_quota(now).is_err(), "burst of one is used");

        let mut same = set(&tight);
        same.inherit_quotas(&old);
        let reloaded = same.iter().next().expect("one").clone();
        assert!(
            reloaded.take_quota(now).is_err(),
            "the used burst survives the reload"
        );

        let mut changed = set(&tight.replace("burst: 1", "burst: 2"));
        changed.inherit_quotas(&old);
        let fresh = changed.iter().next().expect("one").clone();
        assert!(
            fresh.take_quota(now).is_ok(),
            "a changed quota starts afresh"
        );
    }

    /// Issue 9 (embargo): a contract may carry a law-enforcement embargo date; it is
    /// compiled as a date, travels in the published copy, and anything but a date is
    /// refused at its path.
    #[test]
    fn embargo_is_a_date_or_refused() {
        let embargoed = format!("{CONTRACT}embargo_until: 2027-06-30\n");
        let contract = compiled(&embargoed).expect("valid");
        assert_eq!(
            contract.embargo_until,
            Some(time::macros::date!(2027 - 06 - 30))
        );
        assert_eq!(
            contract.published.embargo_until.as_deref(),
            Some("2027-06-30")
        );
        assert_eq!(compiled(CONTRACT).expect("valid").embargo_until, None);
        let errors = compiled(&format!("{CONTRACT}embargo_until: soon\n")).expect_err("broken");
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["embargo_until"]);
    }
}
