//! The node: builds the gateway and its listeners from a validated
//! configuration, runs them, drains on shutdown, reloads on SIGHUP.
//!
//! The listeners themselves are data ([`super::listener::Listener`]): the consumer
//! listener (mTLS, the client-facing protocol), the exchange listener (mTLS,
//! gateways and hubs of the federation), the admin listener (mTLS, the journal admin
//! API, when `[admin]` is configured), and the ops listener (plain; loopback or a
//! management network).

use super::listener::{Listener, Routes, TlsMode};
use super::{Gateway, Runtime};
use crate::config::{self, NodeConfig};
use crate::error::{ErrorCode, GatewayError};
use crate::journal::{self, Journal};
use anyhow::Context;
use arc_swap::ArcSwap;
use axum::Router;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Turns a panic of a router's handler into problem+json.
fn catch_panic(router: Router) -> Router {
    router.layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
        GatewayError::new(
            ErrorCode::InternalUnexpected,
            "the node failed unexpectedly",
        )
        .into_problem(None)
    }))
}

/// The consumer router: every path is an exchange; panics become problem+json.
///
/// Invariant: under `/r1/` the only routes are the metadata calls
/// ([`crate::protocol::METADATA_SERVICE_CODES`]); the consumer listener hands every other
/// `/r1/` request to the exchange pipeline without routing
/// ([`super::exchange::routes_to_exchange`]). A route added under `/r1/` must be excluded
/// there too.
pub fn consumer_router(gateway: Arc<Gateway>) -> Router {
    catch_panic(
        Router::new()
            .merge(super::autofill::routes())
            // Before the fallback: `/r1/{provider}/listMethods` and its kin are metadata
            // calls, never service calls.
            .merge(super::metaservices::routes())
            .merge(super::opendata::member_routes())
            .merge(super::opendata_page::member_index())
            // The exchange pipeline checks the head's limits in its own head phase (and
            // journals the refusal); the other routes here, before their handlers.
            .route_layer(axum::middleware::from_fn_with_state(
                gateway.clone(),
                super::head_limits::layer,
            ))
            .fallback(super::exchange::handle)
            .with_state(gateway),
    )
}

/// The exchange router: federated exchanges from other gateways and hubs.
pub fn exchange_router(gateway: Arc<Gateway>) -> Router {
    catch_panic(super::inbound::router(gateway))
}

/// The time-stamper of seals, when `[journal] tsa_url` is set.
fn stamper(
    settings: &crate::config::journal::JournalSettings,
) -> anyhow::Result<Option<journal::stamper::Stamper>> {
    let Some(tsa) = &settings.tsa else {
        return Ok(None);
    };
    let roots = journal::stamper::load_roots(&tsa.roots_file).map_err(anyhow::Error::msg)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("cannot build the TSA client")?;
    Ok(Some(journal::stamper::Stamper::spawn(
        client,
        tsa.url.clone(),
        roots,
    )))
}

/// A node that has bound its listeners.
pub struct Node {
    gateway: Arc<Gateway>,
    tls: Arc<ArcSwap<rustls::ServerConfig>>,
    listeners: Vec<Listener>,
    config_file: PathBuf,
    shutdown_grace: Duration,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("config_file", &self.config_file)
            .field("listeners", &self.listeners)
            .finish_non_exhaustive()
    }
}

async fn bind(name: &str, address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot bind the {name} listener on {address}"))
}

/// Builds a node from a validated configuration: opens the journal, builds the
/// runtime and TLS, binds both listeners.
pub async fn start(mut config: NodeConfig) -> anyhow::Result<Node> {
    // Install the recorder before the first request so no sample is lost.
    if let Some(handle) = crate::observe::metrics_handle() {
        // Histogram samples are buffered until upkeep folds them in; without it they
        // would pile up between scrapes.
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(5));
            loop {
                ticker.tick().await;
                handle.run_upkeep();
            }
        });
    }
    let key = journal::read_key(&config.journal.key_file).with_context(|| {
        format!(
            "cannot read the journal key {}",
            config.journal.key_file.display()
        )
    })?;
    let journal = if config.dangerous_disable_journal {
        tracing::warn!(
            "DANGEROUS: [dangerous] disable_journal is set: exchanges are NOT journaled; \
             never use this outside benchmarks"
        );
        Journal::disabled(&key)
    } else {
        // Batches are sealed with the node's own key (its registered certificate).
        let sealer = journal::chain::Sealer {
            key: crate::msgsig::SigningKey::from_pem(
                &std::fs::read_to_string(&config.tls.key)?,
                None,
            )
            .map_err(|e| anyhow::anyhow!("the [tls] key cannot sign journal seals: {e}"))?,
            certificate: crate::trust::tls::load_certificates(&config.tls.certificate)?
                .first()
                .map(|leaf| leaf.to_vec())
                .ok_or_else(|| anyhow::anyhow!("the [tls] certificate file holds none"))?,
        };
        let settings = &config.journal;
        let upkeep = journal::Upkeep {
            policy: settings.archive.clone(),
            interval: settings.maintenance_interval,
            clock: Arc::new(crate::base::clock::SystemClock),
            commit_window: settings.commit_window,
        };
        let journal = match &settings.locator {
            journal::store::Locator::Sqlite(path) => {
                let store = journal::sqlite::SqliteJournal::open(path)
                    .await
                    .with_context(|| format!("cannot open the journal {}", path.display()))?
                    .with_sealer(sealer)
                    .with_min_free_bytes(settings.min_free_bytes);
                let store = match stamper(settings)? {
                    Some(stamper) => store.with_stamper(stamper),
                    None => store,
                };
                Journal::start_with(store, &key, journal::QUEUE_CAPACITY, upkeep)
            }
            journal::store::Locator::Postgres(location) => {
                let store = journal::postgres::PgJournal::open(location.clone())
                    .await
                    .context("cannot open the PostgreSQL journal")?
                    .with_sealer(sealer);
                let store = match stamper(settings)? {
                    Some(stamper) => store.with_stamper(stamper),
                    None => store,
                };
                Journal::start_with(store, &key, journal::QUEUE_CAPACITY, upkeep)
            }
        };
        journal.with_locator(settings.locator.clone())
    };
    let runtime = Runtime::build(&mut config).map_err(anyhow::Error::msg)?;
    let gateway = Gateway::new(runtime, journal);
    gateway.configure_cache(config.cache_max_bytes);
    if let Some(settings) = config.federation.clone() {
        let federation = Arc::new(super::federation::Federation::new(
            settings,
            &config.tls,
            gateway.clock().now(),
        )?);
        gateway.join_federation(federation);
    }
    // Open data: every dataset's table opened (CSV sources imported) before serving.
    let catalog = super::opendata::Catalog::open(&config.opendata)
        .await
        .map_err(anyhow::Error::msg)?;
    gateway.replace_catalog(catalog);
    spawn_forget_quiet_clients(&gateway);
    let tls = Arc::new(ArcSwap::new(config.tls_config.clone()));
    let mut listeners = vec![Listener {
        name: "consumer",
        socket: bind("consumer", config.consumer_listener).await?,
        tls: TlsMode::Mutual(tls.clone()),
        routes: Routes::with_exchanges(consumer_router(gateway.clone()), gateway.clone()),
        connections: gateway.connections().clone(),
        proxy_protocol: false,
    }];
    if let Some(address) = config.exchange_listener {
        // Exchange peers chain to the CAs of the global configuration once one is held.
        let exchange_tls = gateway
            .federation()
            .map_or_else(|| tls.clone(), |federation| federation.exchange_tls());
        listeners.push(Listener {
            name: "exchange",
            socket: bind("exchange", address).await?,
            tls: TlsMode::Mutual(exchange_tls),
            routes: Routes::new(exchange_router(gateway.clone())),
            connections: super::connections::Connections::new(),
            proxy_protocol: false,
        });
    }
    if let Some(admin) = &config.admin {
        // The journal admin API: mTLS with the `[tls]` CAs; who may ask what is decided per
        // request against `[admin] clients` (the runtime's, so a reload revokes).
        listeners.push(Listener {
            name: "admin",
            socket: bind("admin", admin.listen).await?,
            tls: TlsMode::Mutual(tls.clone()),
            routes: Routes::new(catch_panic(super::admin::router(gateway.clone()))),
            connections: super::connections::Connections::new(),
            proxy_protocol: false,
        });
    }
    if let Some(address) = config.public_listener {
        // Open data for everyone: no client certificate; TLS with the node's certificate,
        // or plain HTTP behind the operator's own terminator.
        let tls_mode = if config.opendata.public.tls {
            let public = crate::trust::tls::public_server_config(&config.tls)
                .map_err(|e| anyhow::anyhow!("public listener TLS: {e}"))?;
            TlsMode::ServerOnly(Arc::new(ArcSwap::from_pointee(public)))
        } else {
            TlsMode::Plain
        };
        listeners.push(Listener {
            name: "public",
            socket: bind("public", address).await?,
            tls: tls_mode,
            routes: Routes::new(catch_panic(super::opendata::public_router(gateway.clone()))),
            connections: super::connections::Connections::new(),
            // Read before TLS and HTTP, from `[public] trusted_proxies` only.
            proxy_protocol: config.opendata.public.proxy_protocol,
        });
    }
    listeners.push(Listener {
        name: "ops",
        socket: bind("ops", config.ops_listener).await?,
        tls: TlsMode::Plain,
        routes: Routes::new(super::ops::router(gateway.clone())),
        connections: super::connections::Connections::new(),
        proxy_protocol: false,
    });
    Ok(Node {
        gateway,
        tls,
        listeners,
        config_file: config.file.clone(),
        shutdown_grace: config.limits.shutdown_grace,
    })
}

impl Node {
    /// The address of the listener called `name`, if the node has one.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|listener| listener.name == name)
            .map(Listener::local_addr)
    }

    /// The consumer listener's address.
    pub fn consumer_addr(&self) -> SocketAddr {
        self.listener_addr("consumer")
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The ops listener's address.
    pub fn ops_addr(&self) -> SocketAddr {
        self.listener_addr("ops")
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The shared gateway state.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Serves until `shutdown` turns true, then drains in-flight requests for
    /// up to the grace period.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        self.gateway.check_backends().await;
        self.gateway
            .spawn_health_checks(self.gateway.runtime().health_interval());
        if self.gateway.federation().is_some() {
            spawn_global_configuration_refresh(&self.gateway);
        }
        // The overload control's probe (decision 0016): asleep until the node is busy.
        let probe = tokio::spawn(self.gateway.admission().clone().probe());
        let mut running = Vec::new();
        for listener in self.listeners {
            running.push(tokio::spawn(listener.run(
                self.gateway.clone(),
                shutdown.clone(),
                self.shutdown_grace,
            )));
        }
        let mut stopping = shutdown.clone();
        let _ = stopping.wait_for(|stop| *stop).await;
        tracing::info!("shutting down: draining in-flight requests");
        for listener in running {
            let _ = listener.await;
        }
        probe.abort();
        // Every exchange answered is durable already; seal what is not sealed yet.
        self.gateway.journal().flush().await;
        Ok(())
    }

    /// A reload function: reads the configuration again through the same
    /// loader; on any error the running set stays. Returns whether it swapped.
    pub fn reloader(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let gateway = self.gateway.clone();
        let tls = self.tls.clone();
        let file = self.config_file.clone();
        move || reload(&gateway, &tls, &file)
    }
}

/// Polls the global configuration: once at start, then every `refresh_seconds` (every
/// second while none is held, so a federation that starts together converges quickly).
fn spawn_global_configuration_refresh(gateway: &Arc<Gateway>) {
    let weak = Arc::downgrade(gateway);
    tokio::spawn(async move {
        loop {
            let Some(gateway) = weak.upgrade() else { break };
            let Some(federation) = gateway.federation().cloned() else {
                break;
            };
            let now = gateway.clock().now();
            match federation.refresh(now).await {
                Ok(_) => {}
                Err(error) => {
                    metrics::counter!("datagate_global_configuration_refusals_total").increment(1);
                    tracing::warn!(error = %error, "global configuration not refreshed");
                }
            }
            // The providers' contracts, as they publish them for this member.
            super::publication::refresh_copies(&gateway, &federation).await;
            let wait = if federation.held().is_some() {
                federation.settings.refresh
            } else {
                Duration::from_secs(1)
            };
            drop(gateway);
            tokio::time::sleep(wait).await;
        }
    });
}

/// Every minute, the open-data limiters forget clients that have been quiet (bounded key
/// memory), and upstream sources whose refresh interval has passed are fetched again.
fn spawn_forget_quiet_clients(gateway: &Arc<Gateway>) {
    let weak = Arc::downgrade(gateway);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(60));
        loop {
            ticker.tick().await;
            let Some(gateway) = weak.upgrade() else { break };
            let catalog = gateway.catalog();
            catalog.forget_quiet_clients();
            catalog.refresh_upstreams();
        }
    });
}

fn reload(gateway: &Arc<Gateway>, tls: &ArcSwap<rustls::ServerConfig>, file: &Path) -> bool {
    let mut config = match config::load(file) {
        Ok(config) => config,
        Err(errors) => {
            for error in &errors {
                tracing::error!(error = %error, "reload refused: configuration invalid");
            }
            metrics::counter!("datagate_reloads_total", "outcome" => "invalid").increment(1);
            return false;
        }
    };
    config
        .contracts
        .inherit_quotas(&gateway.runtime().contracts);
    match Runtime::build(&mut config) {
        Ok(runtime) => {
            // Backends keep their last health verdict, so a reload does not flap readiness.
            let previous = gateway.runtime();
            for (name, backend) in &runtime.backends {
                if let Some(old) = previous.backends.get(name) {
                    let healthy = old.healthy.load(std::sync::atomic::Ordering::Relaxed);
                    backend
                        .healthy
                        .store(healthy, std::sync::atomic::Ordering::Relaxed);
                }
            }
            gateway.replace_runtime(runtime);
            tls.store(config.tls_config.clone());
            // The datasets' tables are opened (CSV re-imported when changed) off the signal
            // path; the running catalog serves until the new one is ready, and stays if it
            // cannot be opened.
            let opening = gateway.clone();
            let opendata = config.opendata.clone();
            tokio::spawn(async move {
                match super::opendata::Catalog::open(&opendata).await {
                    Ok(catalog) => opening.replace_catalog(catalog),
                    Err(error) => {
                        tracing::error!(error = %error, "open datasets not reloaded; the running set stays")
                    }
                }
            });
            metrics::counter!("datagate_reloads_total", "outcome" => "applied").increment(1);
            tracing::info!("configuration reloaded");
            true
        }
        Err(error) => {
            tracing::error!(error = %error, "reload refused");
            metrics::counter!("datagate_reloads_total", "outcome" => "invalid").increment(1);
            false
        }
    }
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
}

/// Reloads on every SIGHUP until the process ends. Each reload runs on a
/// blocking thread (reading files and compiling schemas must not stall the
/// runtime), and a panic in one is logged and counted; the next SIGHUP is still served.
pub fn spawn_reload_on_hangup(reload: impl Fn() -> bool + Send + Sync + 'static) {
    #[cfg(unix)]
    {
        let reload = Arc::new(reload);
        tokio::spawn(async move {
            let Ok(mut hangup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                tracing::error!("cannot listen for SIGHUP: reload by signal is unavailable");
                return;
            };
            while hangup.recv().await.is_some() {
                let reload = reload.clone();
                tracing::info!("SIGHUP: reloading the configuration");
                if tokio::task::spawn_blocking(move || reload()).await.is_err() {
                    tracing::error!("reload failed unexpectedly; the running configuration stays");
                    metrics::counter!("datagate_reloads_total", "outcome" => "panicked")
                        .increment(1);
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = reload;
}

/// Runs a started node until SIGINT/SIGTERM; SIGHUP reloads its configuration.
pub async fn run_until_signalled(node: Node) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    spawn_reload_on_hangup(node.reloader());
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    node.run(stopped).await
}

/// Runs several nodes of one process (the demo's federation) until SIGINT/SIGTERM;
/// SIGHUP reloads each node's configuration.
pub async fn run_all_until_signalled(nodes: Vec<Node>) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    for node in &nodes {
        spawn_reload_on_hangup(node.reloader());
    }
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let runs: Vec<_> = nodes
        .into_iter()
        .map(|node| tokio::spawn(node.run(stopped.clone())))
        .collect();
    for run in runs {
        run.await??;
    }
    Ok(())
}

/// Runs a node until SIGINT/SIGTERM; SIGHUP reloads the configuration.
pub async fn serve(config: NodeConfig) -> anyhow::Result<()> {
    run_until_signalled(start(config).await?).await
}
