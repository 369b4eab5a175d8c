//! Node configuration: parsed, then validated completely, then built.
//!
//! 1. [`raw`]: serde types with `deny_unknown_fields`, read from TOML (node,
//!    registry, adapters) and YAML (contracts).
//! 2. [`load`]: pure validation of everything, returning **every** problem with
//!    its file and path, so `datagate check` can list them all at once.
//! 3. [`crate::gateway::Runtime::build`]: the I/O part (HTTP clients, TLS).
//!
//! Reload runs the very same [`load`]; a set with any error never replaces the
//! running one.

pub mod admin;
pub mod federation;
pub mod identity;
pub mod journal;
pub mod opendata;
pub mod raw;

pub use crate::base::diagnostics::ConfigError;

use crate::adapters::AdapterSpec;
use crate::contract::form::{self, Form, FormSet, RawForm};
use crate::contract::{self, CompiledContract, ContractSet, RawContract};
use crate::identity::{MemberId, ServiceId};
use crate::trust::calendar::WorkingCalendar;
use crate::trust::registry::{RawRegistry, SecureServerRegistry};
use crate::trust::tls::TlsFiles;
use raw::RawNodeConfig;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Limits applied to every request of the consumer listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted request body.
    pub request_body_bytes: usize,
    /// Deadline of one exchange, adapters included.
    pub request_timeout: Duration,
    /// Requests in flight before new ones are shed with 503.
    pub max_concurrent_requests: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Exchanges one authenticated consumer may have in flight.
    pub max_in_flight_per_consumer: usize,
    /// Deadline for receiving a request's headers and body.
    pub request_receive_timeout: Duration,
    /// TLS handshake deadline.
    pub handshake_timeout: Duration,
    /// Idle connection timeout, from accept or the last request.
    pub idle_timeout: Duration,
    /// Open connections of the consumer listener.
    pub max_connections: usize,
    /// Open connections per IP address.
    pub max_connections_per_ip: usize,
    /// Open connections per client certificate.
    pub max_connections_per_certificate: usize,
    /// New connections per IP per second (0: no rate).
    pub max_new_connections_per_ip_per_second: u32,
    /// Connections still in their TLS handshake.
    pub max_pending_handshakes: usize,
    /// Longest request target.
    pub max_uri_bytes: usize,
    /// Most header fields.
    pub max_headers: usize,
    /// Largest header section.
    pub max_header_bytes: usize,
}

impl Limits {
    /// Validates the raw limits, reporting each problem against `file`.
    pub fn build(raw: &raw::RawLimits, file: &Path, errors: &mut Vec<ConfigError>) -> Self {
        let mut positive = |name: &str, value: u64| {
            if value == 0 {
                errors.push(ConfigError::new(
                    file,
                    &format!("limits.{name}"),
                    "must be positive".into(),
                ));
            }
        };
        positive("request_timeout_ms", raw.request_timeout_ms);
        positive("request_receive_timeout_ms", raw.request_receive_timeout_ms);
        positive("handshake_timeout_ms", raw.handshake_timeout_ms);
        positive("idle_timeout_ms", raw.idle_timeout_ms);
        positive("max_connections", raw.max_connections as u64);
        positive("max_connections_per_ip", raw.max_connections_per_ip as u64);
        positive(
            "max_connections_per_certificate",
            raw.max_connections_per_certificate as u64,
        );
        positive("max_pending_handshakes", raw.max_pending_handshakes as u64);
        let share = raw
            .max_in_flight_per_consumer
            .unwrap_or((raw.max_concurrent_requests / 4).max(1));
        let mut bounded = |name: &str, value: usize, low: usize, high: usize| {
            if !(low..=high).contains(&value) {
                errors.push(ConfigError::new(
                    file,
                    &format!("limits.{name}"),
                    format!("must be between {low} and {high}"),
                ));
            }
        };
        let in_flight_cap = crate::adapters::MAX_IN_FLIGHT_LIMIT;
        bounded(
            "max_concurrent_requests",
            raw.max_concurrent_requests,
            1,
            in_flight_cap,
        );
        bounded(
            "max_in_flight_per_consumer",
            share,
            1,
            raw.max_concurrent_requests.max(1),
        );
        // hyper's own limits sit above these (see gateway::server), so our layer answers first.
        bounded("max_uri_bytes", raw.max_uri_bytes, 256, 60_000);
        bounded("max_headers", raw.max_headers, 8, 256);
        bounded("max_header_bytes", raw.max_header_bytes, 1_024, 60_000);
        Limits {
            request_body_bytes: raw.request_body_bytes,
            request_timeout: Duration::from_millis(raw.request_timeout_ms),
            max_concurrent_requests: raw.max_concurrent_requests,
            shutdown_grace: Duration::from_millis(raw.shutdown_grace_ms),
            max_in_flight_per_consumer: share,
            request_receive_timeout: Duration::from_millis(raw.request_receive_timeout_ms),
            handshake_timeout: Duration::from_millis(raw.handshake_timeout_ms),
            idle_timeout: Duration::from_millis(raw.idle_timeout_ms),
            max_connections: raw.max_connections,
            max_connections_per_ip: raw.max_connections_per_ip,
            max_connections_per_certificate: raw.max_connections_per_certificate,
            max_new_connections_per_ip_per_second: raw.max_new_connections_per_ip_per_second,
            max_pending_handshakes: raw.max_pending_handshakes,
            max_uri_bytes: raw.max_uri_bytes,
            max_headers: raw.max_headers,
            max_header_bytes: raw.max_header_bytes,
        }
    }
}

/// The answer cache's bound when `[cache] max_bytes` is not set: 64 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// A validated node configuration with its contracts, registry and adapters.
#[derive(Debug)]
pub struct NodeConfig {
    /// The file it came from.
    pub file: PathBuf,
    /// This node's member.
    pub member: MemberId,
    /// Operator-facing node name.
    pub name: String,
    /// Consumer listener address.
    pub consumer_listener: SocketAddr,
    /// Ops listener address (plain HTTP; keep it on loopback or a management network).
    pub ops_listener: SocketAddr,
    /// Exchange listener address, when this node takes federated exchanges.
    pub exchange_listener: Option<SocketAddr>,
    /// TLS files of the consumer listener.
    pub tls: TlsFiles,
    /// The rustls configuration built from those files while validating them.
    pub tls_config: std::sync::Arc<rustls::ServerConfig>,
    /// Secure-server registry.
    pub registry: SecureServerRegistry,
    /// Compiled contracts.
    pub contracts: ContractSet,
    /// Adapter specifications by name.
    pub adapters: BTreeMap<String, AdapterSpec>,
    /// Service → adapter name.
    pub services: BTreeMap<ServiceId, String>,
    /// The journal: store, key, reserve, archiving, time-stamping.
    pub journal: journal::JournalSettings,
    /// Request limits.
    pub limits: Limits,
    /// `[dangerous] disable_journal`: exchanges are not journaled.
    pub dangerous_disable_journal: bool,
    /// `[federation]`, when this node exchanges with other gateways.
    pub federation: Option<federation::FederationSettings>,
    /// `[admin]`, when this node serves the journal admin API.
    pub admin: Option<admin::AdminSettings>,
    /// `[[identity_providers]]`: whose citizen assertions this node accepts.
    pub identity_providers: Vec<crate::trust::global::IdentityProvider>,
    /// Once-only forms, checked against the contracts behind their sources.
    pub forms: crate::contract::form::FormSet,
    /// `[cache] max_bytes`: the answer cache's bound.
    pub cache_max_bytes: u64,
    /// The public listener's address, when open data is published to everyone.
    pub public_listener: Option<SocketAddr>,
    /// `[public]` and the datasets.
    pub opendata: opendata::OpenDataSettings,
}

fn read_text(path: &Path, errors: &mut Vec<ConfigError>) -> Option<String> {
    std::fs::read_to_string(path)
        .map_err(|e| errors.push(ConfigError::new(path, "", format!("cannot read: {e}"))))
        .ok()
}

fn files_with_extensions(
    dir: &Path,
    extensions: &[&str],
    errors: &mut Vec<ConfigError>,
) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(ConfigError::new(
                dir,
                "",
                format!("cannot read directory: {e}"),
            ));
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| extensions.contains(&e))
        })
        .collect();
    files.sort();
    files
}

/// Reads and compiles every contract in `dir` (`*.yaml`, `*.yml`).
pub fn load_contracts(dir: &Path) -> (Vec<(CompiledContract, PathBuf)>, Vec<ConfigError>) {
    let mut errors = Vec::new();
    let mut compiled = Vec::new();
    for file in files_with_extensions(dir, &["yaml", "yml"], &mut errors) {
        let Some(text) = read_text(&file, &mut errors) else {
            continue;
        };
        match yaml_serde::from_str::<RawContract>(&text) {
            Ok(raw) => match contract::compile(&raw, &file, dir) {
                Ok(contract) => compiled.push((contract, file)),
                Err(mut problems) => errors.append(&mut problems),
            },
            Err(e) => errors.push(ConfigError::new(&file, "", e.to_string())),
        }
    }
    (compiled, errors)
}

/// Reads and compiles every form in `dir` (`*.yaml`, `*.yml`).
pub fn load_forms(dir: &Path) -> (Vec<(Form, PathBuf)>, Vec<ConfigError>) {
    let mut errors = Vec::new();
    let mut compiled = Vec::new();
    for file in files_with_extensions(dir, &["yaml", "yml"], &mut errors) {
        let Some(text) = read_text(&file, &mut errors) else {
            continue;
        };
        match yaml_serde::from_str::<RawForm>(&text) {
            Ok(raw) => match form::compile(&raw, &file) {
                Ok(form) => compiled.push((form, file)),
                Err(mut problems) => errors.append(&mut problems),
            },
            Err(e) => errors.push(ConfigError::new(&file, "", e.to_string())),
        }
    }
    (compiled, errors)
}

/// Reads and validates every adapter in `dir` (`*.toml`).
pub fn load_adapters(dir: &Path) -> (BTreeMap<String, AdapterSpec>, Vec<ConfigError>) {
    let mut errors = Vec::new();
    let mut adapters = BTreeMap::new();
    for file in files_with_extensions(dir, &["toml"], &mut errors) {
        let Some(text) = read_text(&file, &mut errors) else {
            continue;
        };
        match toml::from_str::<crate::adapters::RawAdapter>(&text) {
            Ok(raw) => match AdapterSpec::validate(raw, &file) {
                Ok(spec) => {
                    if adapters.contains_key(&spec.name) {
                        errors.push(ConfigError::new(
                            &file,
                            "name",
                            "another adapter has the same name".into(),
                        ));
                    } else {
                        adapters.insert(spec.name.clone(), spec);
                    }
                }
                Err(mut problems) => errors.append(&mut problems),
            },
            Err(e) => errors.push(ConfigError::new(&file, "", e.message().to_owned())),
        }
    }
    (adapters, errors)
}

/// Loads and validates a node configuration and everything it refers to.
///
/// Returns every problem found, not just the first.
pub fn load(file: &Path) -> Result<NodeConfig, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let text = read_text(file, &mut errors).ok_or_else(|| errors.clone())?;
    let raw: RawNodeConfig = toml::from_str(&text)
        .map_err(|e| vec![ConfigError::new(file, "", e.message().to_owned())])?;
    let base = file.parent().unwrap_or(Path::new(".")).to_owned();
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_owned()
        } else {
            base.join(p)
        }
    };

    let member = raw
        .node
        .member
        .parse::<MemberId>()
        .map_err(|e| errors.push(ConfigError::new(file, "node.member", e.to_string())))
        .ok();
    let tls = TlsFiles {
        certificate: resolve(&raw.tls.certificate),
        key: resolve(&raw.tls.key),
        trusted_cas: raw.tls.trusted_cas.iter().map(|p| resolve(p)).collect(),
        crls: raw.tls.crls.iter().map(|p| resolve(p)).collect(),
    };
    if tls.trusted_cas.is_empty() {
        errors.push(ConfigError::new(
            file,
            "tls.trusted_cas",
            "at least one trusted CA is required".into(),
        ));
    }
    let tls_config = crate::trust::tls::server_config(&tls)
        .map(std::sync::Arc::new)
        .map_err(|e| errors.push(ConfigError::new(file, "tls", e.to_string())))
        .ok();

    let mut holidays = Vec::new();
    for (i, day) in raw.calendar.holidays.iter().enumerate() {
        match time::Date::parse(
            day,
            time::macros::format_description!("[year]-[month]-[day]"),
        ) {
            Ok(date) => holidays.push(date),
            Err(_) => errors.push(ConfigError::new(
                file,
                &format!("calendar.holidays[{i}]"),
                "must be a date YYYY-MM-DD".into(),
            )),
        }
    }
    let calendar = WorkingCalendar::new(holidays);

    let registry_file = resolve(&raw.registry.file);
    let registry = read_text(&registry_file, &mut errors).and_then(|text| {
        let raw_registry: RawRegistry = toml::from_str(&text)
            .map_err(|e| errors.push(ConfigError::new(&registry_file, "", e.message().to_owned())))
            .ok()?;
        SecureServerRegistry::build(&raw_registry, &calendar)
            .map_err(|problems| {
                errors.extend(
                    problems
                        .into_iter()
                        .map(|(path, message)| ConfigError::new(&registry_file, &path, message)),
                )
            })
            .ok()
    });

    let (compiled, mut contract_errors) = load_contracts(&resolve(&raw.contracts.dir));
    errors.append(&mut contract_errors);
    let (adapters, mut adapter_errors) = load_adapters(&resolve(&raw.adapters.dir));
    errors.append(&mut adapter_errors);

    let mut services = BTreeMap::new();
    for (i, service) in raw.services.iter().enumerate() {
        let at = format!("services[{i}]");
        match service.id.parse::<ServiceId>() {
            Ok(id) => {
                if crate::protocol::METADATA_SERVICE_CODES.contains(&id.code.as_str()) {
                    errors.push(ConfigError::new(
                        file,
                        &format!("{at}.id"),
                        "listMethods, allowedMethods and getOpenAPI are X-Road's metadata \
                         calls (PR-MREST), answered by the node: no service may use them"
                            .into(),
                    ));
                }
                if !adapters.contains_key(&service.adapter) {
                    errors.push(ConfigError::new(
                        file,
                        &format!("{at}.adapter"),
                        format!(
                            "no adapter named {:?} in the adapters directory",
                            service.adapter
                        ),
                    ));
                }
                if services.insert(id, service.adapter.clone()).is_some() {
                    errors.push(ConfigError::new(
                        file,
                        &format!("{at}.id"),
                        "service listed twice".into(),
                    ));
                }
            }
            Err(e) => errors.push(ConfigError::new(file, &format!("{at}.id"), e.to_string())),
        }
    }
    let mut served: HashSet<&ServiceId> = HashSet::new();
    served.extend(services.keys());
    for (contract, path) in &compiled {
        if !served.contains(&contract.service) {
            errors.push(ConfigError::new(path, "service", "this node does not serve that service (see [[services]] in the node configuration)".into()));
            continue;
        }
        // Every operation a contract allows must be one the service's adapter offers,
        // spelled the same (method, literals and parameter names): the request's
        // parameters, the contract's subject and its schema all use the adapter's names.
        let Some(adapter) = services
            .get(&contract.service)
            .and_then(|name| adapters.get(name))
        else {
            continue;
        };
        for (i, operation) in contract.operations.iter().enumerate() {
            if !adapter.operations.iter().any(|op| op.pattern == *operation) {
                errors.push(ConfigError::new(
                    path,
                    &format!("operations[{i}]"),
                    format!(
                        "the adapter {} offers no operation with this method and path \
                         (parameter names must match the adapter's)",
                        adapter.name
                    ),
                ));
            }
        }
    }
    let contracts = match ContractSet::new(compiled) {
        Ok(set) => Some(set),
        Err(mut problems) => {
            errors.append(&mut problems);
            None
        }
    };

    let limits = Limits::build(&raw.limits, file, &mut errors);
    match std::fs::metadata(resolve(&raw.journal.hmac_key_file)) {
        Ok(meta) if meta.len() >= 32 => {}
        Ok(_) => errors.push(ConfigError::new(
            file,
            "journal.hmac_key_file",
            "holds fewer than 32 bytes".into(),
        )),
        Err(_) => errors.push(ConfigError::new(
            file,
            "journal.hmac_key_file",
            "cannot be read: the journal key must exist before the node starts \
             (`datagate certs` writes one; or 32 random bytes)"
                .into(),
        )),
    }
    let journal = journal::build(&raw.journal, file, &resolve, &mut errors);
    let federation = raw
        .federation
        .as_ref()
        .map(|section| federation::build(section, &tls, file, &resolve, &mut errors));
    if raw.federation.is_none() && raw.listeners.exchange.is_some() {
        errors.push(ConfigError::new(
            file,
            "listeners.exchange",
            "an exchange listener needs a [federation] section".into(),
        ));
    }
    if raw.federation.is_some() && raw.listeners.exchange.is_none() {
        errors.push(ConfigError::new(
            file,
            "listeners.exchange",
            "a node with [federation] needs an exchange listener".into(),
        ));
    }

    let identity_providers = identity::build(&raw.identity_providers, file, &resolve, &mut errors);
    // A contract that asks for an assurance level needs assertions to check: from this
    // node's identity providers, or from the federation's global configuration.
    if identity_providers.is_empty()
        && raw.federation.is_none()
        && let Some(contracts) = &contracts
        && let Some(contract) = contracts.iter().find(|c| c.assurance_level.is_some())
    {
        errors.push(ConfigError::new(
            file,
            "identity_providers",
            format!(
                "contract {} requires an assurance level, but no identity provider is \
                 configured (and no [federation] lists any): its requests could never be served",
                contract.id
            ),
        ));
    }
    // Forms: `[forms] dir`, or `forms/` beside the contracts when it exists; each checked
    // against the contracts behind its sources.
    let forms_dir = match &raw.forms {
        Some(forms) => Some(resolve(&forms.dir)),
        None => Some(resolve(&raw.contracts.dir).join("forms")).filter(|dir| dir.is_dir()),
    };
    let forms = match forms_dir {
        None => Some(FormSet::default()),
        Some(dir) => {
            let (compiled, mut form_errors) = load_forms(&dir);
            errors.append(&mut form_errors);
            if let Some(contracts) = &contracts {
                for (form, path) in &compiled {
                    errors.extend(form::check_against(
                        form,
                        path,
                        contracts,
                        &|service| served.contains(service),
                        raw.federation.is_some(),
                    ));
                }
            }
            if identity_providers.is_empty() && raw.federation.is_none() && !compiled.is_empty() {
                errors.push(ConfigError::new(
                    file,
                    "identity_providers",
                    "forms need citizen assertions, but no identity provider is configured \
                     (and no [federation] lists any)"
                        .into(),
                ));
            }
            FormSet::new(compiled)
                .map_err(|mut problems| errors.append(&mut problems))
                .ok()
        }
    };
    let cache_max_bytes = match &raw.cache {
        Some(cache) if cache.max_bytes < 64 * 1024 => {
            errors.push(ConfigError::new(
                file,
                "cache.max_bytes",
                "must be at least 65536 (64 KiB)".into(),
            ));
            0
        }
        Some(cache) => cache.max_bytes,
        None => DEFAULT_CACHE_BYTES,
    };
    let opendata = opendata::build(&raw, file, &resolve, &mut errors);
    let admin = raw.admin.as_ref().map(|section| {
        let mut others = vec![
            ("consumer", raw.listeners.consumer),
            ("ops", raw.listeners.ops),
        ];
        others.extend(raw.listeners.exchange.map(|address| ("exchange", address)));
        others.extend(raw.listeners.public.map(|address| ("public", address)));
        admin::build(section, &others, file, &mut errors)
    });

    match (member, registry, contracts, tls_config, journal, forms) {
        (
            Some(member),
            Some(registry),
            Some(contracts),
            Some(tls_config),
            Some(journal),
            Some(forms),
        ) if errors.is_empty() => Ok(NodeConfig {
            file: file.to_owned(),
            member,
            name: raw.node.name,
            consumer_listener: raw.listeners.consumer,
            ops_listener: raw.listeners.ops,
            exchange_listener: raw.listeners.exchange,
            tls,
            tls_config,
            registry,
            contracts,
            adapters,
            services,
            journal,
            dangerous_disable_journal: raw.dangerous.disable_journal,
            limits,
            federation: federation.flatten(),
            admin: admin.flatten(),
            identity_providers,
            forms,
            cache_max_bytes,
            public_listener: raw.listeners.public,
            opendata,
        }),
        _ => Err(errors),
    }
}
