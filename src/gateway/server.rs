//! Listeners: the mTLS accept loop of the consumer listener, the ops listener,
//! graceful shutdown and reload.
//!
//! The accept loop is written out (tokio-rustls + hyper-util) rather than
//! hidden in a helper crate because identity is per connection: after the
//! handshake the peer's verified certificate becomes a [`PeerCertificate`]
//! extension on every request of that connection, so no layer re-reads TLS
//! state. A failed handshake (unknown CA, expired, not yet valid, revoked,
//! no certificate) never reaches HTTP; it is logged with its reason and counted.

use super::{Gateway, Runtime};
use crate::config::{self, NodeConfig};
use crate::error::{ErrorCode, GatewayError};
use crate::journal::{self, Journal};
use crate::trust::PeerCertificate;
use anyhow::Context;
use arc_swap::ArcSwap;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a keep-alive connection may sit idle before it is closed (nginx's default is 75 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The consumer router: every path is an exchange; panics become problem+json.
pub fn consumer_router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .fallback(super::exchange::handle)
        .with_state(gateway)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            GatewayError::new(
                ErrorCode::InternalUnexpected,
                "the node failed unexpectedly",
            )
            .into_problem(None)
        }))
}

/// A node that has bound its listeners.
pub struct Node {
    gateway: Arc<Gateway>,
    tls: Arc<ArcSwap<rustls::ServerConfig>>,
    consumer: TcpListener,
    ops: TcpListener,
    config_file: PathBuf,
    shutdown_grace: Duration,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("config_file", &self.config_file)
            .finish_non_exhaustive()
    }
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
    let key = match &config.journal_key_file {
        Some(path) => journal::load_or_create_key(path)?,
        None => {
            let mut key = vec![0u8; 32];
            aws_lc_rs::rand::fill(&mut key).map_err(|_| anyhow::anyhow!("no randomness"))?;
            key
        }
    };
    let journal = if config.dangerous_disable_journal {
        tracing::warn!(
            "DANGEROUS: [dangerous] disable_journal is set: exchanges are NOT journaled; \
             never use this outside benchmarks"
        );
        Journal::disabled(&key)
    } else {
        let store = journal::sqlite::SqliteJournal::open(&config.journal_path)
            .await
            .with_context(|| {
                format!("cannot open the journal {}", config.journal_path.display())
            })?;
        Journal::start(store, &key)
    };
    let runtime = Runtime::build(&mut config).map_err(anyhow::Error::msg)?;
    let gateway = Gateway::new(runtime, journal);
    let consumer = TcpListener::bind(config.consumer_listener)
        .await
        .with_context(|| {
            format!(
                "cannot bind the consumer listener on {}",
                config.consumer_listener
            )
        })?;
    let ops = TcpListener::bind(config.ops_listener)
        .await
        .with_context(|| format!("cannot bind the ops listener on {}", config.ops_listener))?;
    Ok(Node {
        gateway,
        tls: Arc::new(ArcSwap::new(config.tls_config.clone())),
        consumer,
        ops,
        config_file: config.file.clone(),
        shutdown_grace: config.limits.shutdown_grace,
    })
}

impl Node {
    /// The consumer listener's address.
    pub fn consumer_addr(&self) -> SocketAddr {
        self.consumer
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The ops listener's address.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The shared gateway state.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Serves until `shutdown` turns true, then drains in-flight requests for
    /// up to the grace period.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        self.gateway.check_backends().await;
        self.gateway
            .spawn_health_checks(self.gateway.runtime().health_interval());
        let ops_router = super::ops::router(self.gateway.clone());
        let mut ops_shutdown = shutdown.clone();
        let ops = tokio::spawn(async move {
            axum::serve(self.ops, ops_router)
                .with_graceful_shutdown(async move {
                    let _ = ops_shutdown.wait_for(|stop| *stop).await;
                })
                .await
        });
        let router = consumer_router(self.gateway.clone());
        let graceful = GracefulShutdown::new();
        tracing::info!(address = %self.consumer.local_addr()?, "consumer listener (mTLS) ready");
        loop {
            tokio::select! {
                // The watch guard must not live across the select's other branch.
                _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
                accepted = self.consumer.accept() => {
                    let (stream, remote) = match accepted {
                        Ok(pair) => pair,
                        Err(error) => {
                            tracing::warn!(error = %error, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let acceptor = tokio_rustls::TlsAcceptor::from(self.tls.load_full());
                    let router = router.clone();
                    let watcher = graceful.watcher();
                    tokio::spawn(async move {
                        let _ = stream.set_nodelay(true);
                        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(error)) => {
                                let reason = handshake_reason(&error);
                                tracing::info!(remote = %remote.ip(), reason, "TLS handshake refused");
                                metrics::counter!("datagate_tls_handshake_failures_total", "reason" => reason).increment(1);
                                return;
                            }
                            Err(_) => {
                                metrics::counter!("datagate_tls_handshake_failures_total", "reason" => "timeout").increment(1);
                                return;
                            }
                        };
                        let peer = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|chain| chain.first())
                            .map(|leaf| PeerCertificate {
                                fingerprint_sha256: crate::trust::fingerprint_sha256(leaf),
                            });
                        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                            if let Some(peer) = &peer {
                                request.extensions_mut().insert(peer.clone());
                            }
                            router.clone().oneshot(request.map(axum::body::Body::new))
                        });
                        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                        // Idle keep-alive connections are closed after IDLE_TIMEOUT (the wait for
                        // the next request's headers); HTTP/2 peers are pinged as often.
                        builder
                            .http1()
                            .timer(TokioTimer::new())
                            .header_read_timeout(IDLE_TIMEOUT);
                        builder
                            .http2()
                            .timer(TokioTimer::new())
                            .keep_alive_interval(IDLE_TIMEOUT);
                        let connection = builder.serve_connection(TokioIo::new(tls), service);
                        if let Err(error) = watcher.watch(connection.into_owned()).await {
                            tracing::debug!(error = %error, "connection ended with an error");
                        }
                    });
                }
            }
        }
        tracing::info!("shutting down: draining in-flight requests");
        drop(self.consumer);
        if tokio::time::timeout(self.shutdown_grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("grace period over; closing remaining connections");
        }
        let _ = ops.await;
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

fn reload(gateway: &Gateway, tls: &ArcSwap<rustls::ServerConfig>, file: &Path) -> bool {
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

fn handshake_reason(error: &std::io::Error) -> &'static str {
    use rustls::{CertificateError, Error};
    let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<Error>()) else {
        return "io";
    };
    match tls {
        Error::NoCertificatesPresented => "no_certificate",
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => "unknown_issuer",
        Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "expired",
        Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "not_yet_valid",
        Error::InvalidCertificate(CertificateError::Revoked) => "revoked",
        Error::InvalidCertificate(_) => "invalid_certificate",
        Error::PeerIncompatible(_) | Error::NoApplicationProtocol => "incompatible",
        _ => "tls",
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

/// Runs a node until SIGINT/SIGTERM; SIGHUP reloads the configuration.
pub async fn serve(config: NodeConfig) -> anyhow::Result<()> {
    let node = start(config).await?;
    let (stop, stopped) = watch::channel(false);
    #[cfg(unix)]
    {
        let reload = node.reloader();
        tokio::spawn(async move {
            let Ok(mut hangup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hangup.recv().await.is_some() {
                reload();
            }
        });
    }
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    node.run(stopped).await
}
