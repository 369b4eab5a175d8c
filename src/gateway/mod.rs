//! The running node: its swappable [`Runtime`] (contracts, registry, adapters),
//! the journal, health state, and the routers of its listeners.
//!
//! - [`exchange`]: the exchange pipeline, one ordered function per phase;
//! - [`context`]: the typed context of one exchange, its peer and what the phases learned;
//! - [`provider`]: the seam after authorisation: a local adapter or a remote gateway;
//! - [`remote`]: the consumer side of the federation (sign, encrypt, forward, verify);
//! - [`inbound`]: the provider side (verify, decrypt, seal the answer);
//! - [`hub`]: the relay of a hub (verify the sender, countersign, stream, never decrypt);
//! - [`federation`]: the global configuration held, the signing identity, replay memory;
//! - [`publication`]: contracts travel with the federation (the owner publishes, consumers keep verified copies);
//! - [`cache`]: answers a contract lets the portal's gateway keep, in memory, single-flight;
//! - [`autofill`]: once-only forms: preview, fan-out through the pipeline, provenance, the citizen's access view;
//! - [`admission`]: the in-flight cap and each authenticated consumer's share of it;
//! - [`connections`]: connection caps in all, per IP and per certificate;
//! - [`listener`]: listeners as data (name, address, TLS mode, router, caps) and the accept loop;
//! - [`proxy_protocol`]: the PROXY protocol v2 header a trusted load balancer sends first on the public listener;
//! - [`server`]: the node: its listeners, graceful shutdown, reload;
//! - [`opendata`]: open data: the public listener's CKAN API and downloads, per-client limits;
//! - [`openapi`]: OpenAPI 3.1 documents generated from the configuration (public and per member);
//! - [`head_limits`]: the request head's size limits, for every route of the consumer and public listeners;
//! - [`metaservices`]: on the consumer listener, the caller's OpenAPI document and X-Road's service metadata (listMethods, allowedMethods, getOpenAPI);
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics`, `/status/v1/federation`, `/status/v1/journal/{id}`;
//! - [`admin`]: the journal admin API (`/admin/v1/…`) for operators and auditors, by certificate.

pub mod admin;
pub mod admission;
pub mod autofill;
pub mod cache;
pub mod connections;
pub mod context;
pub mod dcat;
pub mod exchange;
pub mod federation;
pub mod head_limits;
pub mod hub;
pub mod inbound;
pub mod listener;
pub mod metaservices;
pub mod openapi;
pub mod opendata;
pub mod opendata_page;
pub mod ops;
pub mod provider;
pub mod proxy_protocol;
pub mod publication;
pub mod remote;
pub mod server;

use crate::base::clock::{Clock, SystemClock};

use crate::adapters::Adapter;
use crate::config::{Limits, NodeConfig};
use crate::contract::ContractSet;
use crate::identity::{MemberId, ServiceId};
use crate::journal::Journal;
use crate::trust::registry::SecureServerRegistry;
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// An adapter with its last health-check outcome.
#[derive(Debug)]
pub struct Backend {
    /// The adapter.
    pub adapter: Adapter,
    /// Whether the last health check passed (false until the first one runs).
    pub healthy: AtomicBool,
}

/// Everything a reload replaces at once.
#[derive(Debug)]
pub struct Runtime {
    /// This node's member.
    pub member: MemberId,
    /// Secure-server registry.
    pub registry: SecureServerRegistry,
    /// Compiled contracts.
    pub contracts: ContractSet,
    /// Service → backend.
    pub services: foldhash::HashMap<ServiceId, Arc<Backend>>,
    /// All backends by adapter name.
    pub backends: foldhash::HashMap<String, Arc<Backend>>,
    /// Request limits.
    pub limits: Limits,
    /// Who may call the admin listener, by certificate (empty without `[admin]`).
    pub admin_clients: crate::config::admin::AdminClients,
    /// Identity providers whose citizen assertions are accepted (besides the global
    /// configuration's).
    pub identity_providers: Vec<crate::trust::global::IdentityProvider>,
    /// Once-only forms.
    pub forms: crate::contract::form::FormSet,
}

impl Runtime {
    /// Builds the runtime from a validated configuration (HTTP clients: I/O).
    pub fn build(config: &mut NodeConfig) -> Result<Self, String> {
        let mut backends = foldhash::HashMap::default();
        for (name, spec) in std::mem::take(&mut config.adapters) {
            let adapter = Adapter::build(spec)?;
            backends.insert(
                name,
                Arc::new(Backend {
                    adapter,
                    healthy: AtomicBool::new(false),
                }),
            );
        }
        let mut services = foldhash::HashMap::default();
        for (service, adapter) in &config.services {
            let backend = backends
                .get(adapter)
                .ok_or_else(|| format!("service {service}: adapter {adapter} is missing"))?;
            services.insert(service.clone(), backend.clone());
        }
        Ok(Runtime {
            member: config.member.clone(),
            registry: std::mem::take(&mut config.registry),
            contracts: std::mem::take(&mut config.contracts),
            services,
            backends,
            limits: config.limits,
            admin_clients: config
                .admin
                .as_ref()
                .map(|admin| admin.clients.clone())
                .unwrap_or_default(),
            identity_providers: std::mem::take(&mut config.identity_providers),
            forms: std::mem::take(&mut config.forms),
        })
    }

    /// How often backends are checked: the shortest interval any adapter asks for (5 s if none).
    pub fn health_interval(&self) -> std::time::Duration {
        self.backends
            .values()
            .filter_map(|b| b.adapter.spec.health.as_ref().map(|(_, every)| *every))
            .min()
            .unwrap_or(std::time::Duration::from_secs(5))
    }

    /// Whether every backend passed its last health check.
    pub fn ready(&self) -> bool {
        self.backends
            .values()
            .all(|backend| backend.healthy.load(Ordering::Relaxed))
    }
}

/// Shared state of a running node.
#[derive(Debug)]
pub struct Gateway {
    runtime: ArcSwap<Runtime>,
    journal: Journal,
    admission: Arc<admission::Admission>,
    connections: Arc<connections::Connections>,
    clock: Arc<dyn Clock>,
    federation: std::sync::OnceLock<Arc<federation::Federation>>,
    cache: std::sync::OnceLock<cache::AnswerCache>,
    /// The opened open-data tables.
    catalog: ArcSwap<opendata::Catalog>,
    /// Daily summaries of open-data reads (kept across reloads).
    opendata_usage: opendata::Usage,
    /// The `(id, revision)` of every contract at the last sweep of the cache.
    swept: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
}

impl Gateway {
    /// A gateway over a runtime and a journal, on the system clock.
    pub fn new(runtime: Runtime, journal: Journal) -> Arc<Self> {
        Gateway::with_clock(runtime, journal, Arc::new(SystemClock))
    }

    /// A gateway that reads wall-clock time from `clock` (tests set the time).
    pub fn with_clock(runtime: Runtime, journal: Journal, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Gateway {
            runtime: ArcSwap::from_pointee(runtime),
            journal,
            admission: admission::Admission::new(),
            connections: connections::Connections::new(),
            clock,
            federation: std::sync::OnceLock::new(),
            cache: std::sync::OnceLock::new(),
            swept: Default::default(),
            catalog: ArcSwap::from_pointee(opendata::Catalog::default()),
            opendata_usage: opendata::Usage::default(),
        })
    }

    /// The wall clock decisions are made by.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// The federation this node is part of, if any.
    pub fn federation(&self) -> Option<&Arc<federation::Federation>> {
        self.federation.get()
    }

    /// Joins the node to a federation (once, at start).
    pub fn join_federation(&self, federation: Arc<federation::Federation>) {
        let _ = self.federation.set(federation);
    }

    /// The answer cache (bounded by [`crate::config::DEFAULT_CACHE_BYTES`] unless
    /// [`Gateway::configure_cache`] ran first).
    pub fn cache(&self) -> &cache::AnswerCache {
        self.cache
            .get_or_init(|| cache::AnswerCache::new(crate::config::DEFAULT_CACHE_BYTES))
    }

    /// Sizes the answer cache (once, at start; later calls change nothing).
    pub fn configure_cache(&self, max_bytes: u64) {
        let _ = self.cache.set(cache::AnswerCache::new(max_bytes));
    }

    /// Drops the cached answers of every contract that changed or went: after a reload
    /// and after the owners' published copies were refreshed.
    pub fn sweep_cache(&self) {
        let runtime = self.runtime();
        let mut current: std::collections::HashSet<(String, String)> = runtime
            .contracts
            .iter()
            .map(|contract| (contract.id.clone(), contract.revision.clone()))
            .collect();
        if let Some(federation) = self.federation() {
            let copies = federation.copies();
            current.extend(
                copies
                    .all()
                    .map(|contract| (contract.id.clone(), contract.revision.clone())),
            );
        }
        // Unchanged contracts (most copy refreshes): nothing to sweep.
        let mut swept = self
            .swept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *swept != current {
            *swept = current.clone();
            self.cache().retain_contracts(current);
        }
    }

    /// The open datasets, with their tables.
    pub fn catalog(&self) -> Arc<opendata::Catalog> {
        self.catalog.load_full()
    }

    /// The daily summaries of open-data reads.
    pub fn opendata_usage(&self) -> &opendata::Usage {
        &self.opendata_usage
    }

    /// Replaces the open datasets (at start and after a reload opened them).
    pub fn replace_catalog(&self, catalog: opendata::Catalog) {
        self.catalog.store(Arc::new(catalog));
    }

    /// The in-flight count and shares.
    pub fn admission(&self) -> &Arc<admission::Admission> {
        &self.admission
    }

    /// The consumer listener's open connections.
    pub fn connections(&self) -> &Arc<connections::Connections> {
        &self.connections
    }

    /// The current runtime snapshot; hold it for the whole request.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Replaces the runtime atomically (after a successful reload); cached answers of
    /// contracts that changed are dropped.
    pub fn replace_runtime(&self, runtime: Runtime) {
        self.runtime.store(Arc::new(runtime));
        self.sweep_cache();
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Runs every backend's health check once, now.
    pub async fn check_backends(&self) {
        let runtime = self.runtime();
        let checks = runtime.backends.iter().map(|(name, backend)| async move {
            let healthy = backend.adapter.check_health().await;
            let was = backend.healthy.swap(healthy, Ordering::Relaxed);
            if was != healthy {
                if healthy {
                    tracing::info!(adapter = %name, "backend is healthy");
                } else {
                    tracing::warn!(adapter = %name, "backend failed its health check");
                }
            }
            metrics::gauge!("datagate_backend_up", "adapter" => name.clone()).set(if healthy {
                1.0
            } else {
                0.0
            });
        });
        futures_util::future::join_all(checks).await;
    }

    /// Keeps checking backends every `interval` until the gateway is dropped.
    pub fn spawn_health_checks(self: &Arc<Self>, interval: std::time::Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            loop {
                ticker.tick().await;
                let Some(gateway) = weak.upgrade() else { break };
                gateway.check_backends().await;
            }
        });
    }
}
