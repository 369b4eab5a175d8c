//! Listeners: the mTLS accept loop of the consumer listener, the ops listener,
//! graceful shutdown and reload.
//!
//! The accept loop is written out (tokio-rustls + hyper-util) rather than
//! hidden in a helper crate because identity is per connection: after the
//! handshake the peer's verified certificate becomes a [`PeerCertificate`]
//! extension on every request of that connection, so no layer re-reads TLS
//! state. A failed handshake (unknown CA, expired, not yet valid, revoked,
//! no certificate) never reaches HTTP; it is logged with its reason and counted.
//!
//! Every connection is bounded from the moment it is accepted:
//! - a place in the listener's total and its IP's count before the handshake,
//!   and in its certificate's count after it ([`super::connections`]);
//! - a handshake deadline;
//! - an idle deadline that starts at accept and restarts when the last request
//!   in flight ends: a connection that completes the handshake and never sends a
//!   request, an HTTP/2 connection kept alive only by PINGs, or one left after a
//!   refused TLS renegotiation is closed when it runs out;
//! - HTTP/1 header and body receive deadlines (`limits.request_receive_timeout_ms`);
//! - hyper's own limits on headers set above ours, so our layer answers first
//!   with problem+json; what hyper still refuses itself is counted.

use super::connections::Slot;
use super::{Gateway, Runtime};
use crate::config::{self, Limits, NodeConfig};
use crate::error::{ErrorCode, GatewayError};
use crate::journal::{self, Journal};
use crate::trust::PeerCertificate;
use anyhow::Context;
use arc_swap::ArcSwap;
use axum::Router;
use futures_util::FutureExt as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tower::ServiceExt;

/// Sockets taken from the backlog in one turn of the accept loop.
const ACCEPT_BURST: usize = 128;

/// How long a connection told to close may take to finish its last answer.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

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
        let connections = self.gateway.connections().clone();
        // Descriptors bound the listener below `max_connections` if the process may not
        // open that many; a reload that raises `max_connections` takes effect up to here.
        let ceiling =
            super::connections::connection_ceiling(self.gateway.runtime().limits.max_connections);
        tracing::info!(address = %self.consumer.local_addr()?, "consumer listener (mTLS) ready");
        loop {
            tokio::select! {
                // The watch guard must not live across the select's other branch.
                _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
                accepted = self.consumer.accept() => {
                    // Take what is waiting in the backlog in one go: refusals over the caps
                    // are cheap, and a drained backlog keeps SYNs of other peers from being
                    // dropped while one peer floods.
                    let mut next = Some(accepted);
                    let mut burst = 0;
                    while let Some(accepted) = next.take() {
                        match accepted {
                            Ok((stream, remote)) => {
                                admit(&self.gateway, &self.tls, stream, remote, ceiling, &router, &shutdown);
                            }
                            Err(error) => {
                                // Out of descriptors: wait a little rather than spin; the caps
                                // keep this rare, and the ops listener has its own socket.
                                tracing::warn!(error = %error, "accept failed");
                                metrics::counter!("datagate_accept_failures_total").increment(1);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                break;
                            }
                        }
                        burst += 1;
                        if burst < ACCEPT_BURST {
                            next = self.consumer.accept().now_or_never();
                        }
                    }
                }
            }
        }
        tracing::info!("shutting down: draining in-flight requests");
        drop(self.consumer);
        let drained = async {
            while connections.open() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(self.shutdown_grace, drained)
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

/// Places an accepted socket under the caps and starts serving it, or closes it.
fn admit(
    gateway: &Gateway,
    tls: &ArcSwap<rustls::ServerConfig>,
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    ceiling: usize,
    router: &Router,
    shutdown: &watch::Receiver<bool>,
) {
    let limits = gateway.runtime().limits;
    let slot = match gateway.connections().accept(remote.ip(), &limits, ceiling) {
        Ok(slot) => slot,
        Err(refusal) => {
            metrics::counter!("datagate_connections_refused_total", "reason" => refusal.as_str())
                .increment(1);
            return;
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.load_full());
    tokio::spawn(serve_connection(
        stream,
        remote,
        slot,
        acceptor,
        router.clone(),
        limits,
        shutdown.clone(),
    ));
}

/// Requests in flight on one connection and when the last one ended: what the
/// idle deadline is measured from (HTTP/2 PINGs do not count as activity).
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
    /// When the first byte of a request head arrived on an HTTP/1 connection with no
    /// request in flight; cleared when the head is complete (the request begins).
    head_started: Mutex<Option<Instant>>,
    /// Wakes the connection's watchdog when a head begins, so it can arm the deadline.
    head_begun: tokio::sync::Notify,
}

impl Activity {
    fn new(accepted_at: Instant) -> Arc<Self> {
        Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(accepted_at),
            head_started: Mutex::new(None),
            head_begun: tokio::sync::Notify::new(),
        })
    }

    fn begin(self: &Arc<Self>) -> ActivityGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        *self.head_started.lock().unwrap_or_else(|p| p.into_inner()) = None;
        ActivityGuard(self.clone())
    }

    /// Bytes arrived: with no request in flight they start a request head.
    fn received(&self) {
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            let mut head = self.head_started.lock().unwrap_or_else(|p| p.into_inner());
            if head.is_none() {
                *head = Some(Instant::now());
                self.head_begun.notify_one();
            }
        }
    }

    /// When the request head being received must be complete.
    fn head_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        (*self.head_started.lock().unwrap_or_else(|p| p.into_inner())).map(|at| at + timeout)
    }

    /// When the connection counts as idle for `timeout`, or `None` while a request runs.
    fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(*self.idle_since.lock().unwrap_or_else(|p| p.into_inner()) + timeout)
    }
}

struct ActivityGuard(Arc<Activity>);

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The connection's byte stream, telling [`Activity`] when bytes arrive, so the
/// HTTP/1 request-head deadline starts at a head's first byte rather than at the
/// end of the previous request (which is the idle deadline's business).
struct WatchedIo<T> {
    inner: T,
    activity: Option<Arc<Activity>>,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WatchedIo<T> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (std::task::Poll::Ready(Ok(())), Some(activity)) = (&polled, &this.activity)
            && buf.filled().len() > before
        {
            activity.received();
        }
        polled
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WatchedIo<T> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// What hyper refused on its own (the request never reached our layer), as a
/// bounded metric label.
fn hyper_refusal(error: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let hyper = error.downcast_ref::<hyper::Error>()?;
    if hyper.is_parse_too_large() {
        Some("http.head_too_large")
    } else if hyper.is_parse() {
        Some("http.malformed")
    } else if hyper.is_timeout() {
        Some("http.header_timeout")
    } else {
        None
    }
}

/// One connection: handshake, identity, HTTP, bounded in time from accept.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    mut slot: Slot,
    acceptor: tokio_rustls::TlsAcceptor,
    router: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let accepted_at = Instant::now();
    let handshake_deadline = slot.handshake_deadline(&limits);
    let handshake = tokio::time::timeout(handshake_deadline, acceptor.accept(stream)).await;
    slot.handshake_done();
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            let reason = handshake_reason(&error);
            tracing::info!(remote = %remote.ip(), reason, "TLS handshake refused");
            metrics::counter!("datagate_tls_handshake_failures_total", "reason" => reason)
                .increment(1);
            return;
        }
        Err(_) => {
            metrics::counter!("datagate_tls_handshake_failures_total", "reason" => "timeout")
                .increment(1);
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
    if let Some(peer) = &peer
        && let Err(refusal) = slot.identify(
            &peer.fingerprint_sha256,
            limits.max_connections_per_certificate,
        )
    {
        metrics::counter!("datagate_connections_refused_total", "reason" => refusal.as_str())
            .increment(1);
        return;
    }
    let activity = Activity::new(accepted_at);
    // HTTP/2 frames (PINGs, SETTINGS) are not request heads: only HTTP/1 gets the head deadline.
    let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            let guard = activity.begin();
            if let Some(peer) = &peer {
                request.extensions_mut().insert(peer.clone());
            }
            let call = router.clone().oneshot(request.map(axum::body::Body::new));
            async move {
                let response = call.await;
                drop(guard);
                response
            }
        })
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // hyper's limits sit above ours (checked in the exchange's head phase), so a request
    // a little over our limits is answered by us with problem+json; only far larger ones
    // are refused by hyper itself, and those are counted below.
    let head_bytes = limits.max_uri_bytes + limits.max_header_bytes;
    builder
        .http1()
        .timer(TokioTimer::new())
        // hyper starts this timer whenever it waits for a head, idle keep-alive included, so
        // it is the idle bound here; the receive deadline of a head that has begun is ours.
        .header_read_timeout(limits.idle_timeout)
        .max_headers(limits.max_headers * 2)
        .max_buf_size((head_bytes * 2).max(128 * 1024));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.idle_timeout / 2)
        .keep_alive_timeout(limits.handshake_timeout)
        .max_header_list_size(u32::try_from((head_bytes * 2).max(128 * 1024)).unwrap_or(u32::MAX))
        .max_concurrent_streams(
            u32::try_from(limits.max_in_flight_per_consumer)
                .unwrap_or(u32::MAX)
                .max(1),
        );
    let io = WatchedIo {
        inner: tls,
        activity: (!http2).then(|| activity.clone()),
    };
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut closing: Option<Instant> = None;
    let mut shutting_down = *shutdown.borrow();
    if shutting_down {
        connection.as_mut().graceful_shutdown();
        closing = Some(Instant::now() + CLOSE_GRACE);
    }
    loop {
        let idle = activity.idle_deadline(limits.idle_timeout);
        let head = activity.head_deadline(limits.request_receive_timeout);
        // Wake for whichever comes first: the close deadline, the head deadline, the idle
        // deadline, or a recheck while a request runs (its end restarts the idle clock).
        let wake = match (closing, idle) {
            (Some(close), _) => close,
            (None, Some(idle)) => head.map_or(idle, |head| head.min(idle)),
            (None, None) => {
                Instant::now() + limits.idle_timeout.min(limits.request_receive_timeout)
            }
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    if let Some(code) = hyper_refusal(error.as_ref()) {
                        metrics::counter!("datagate_refusals_total", "code" => code).increment(1);
                    }
                    tracing::debug!(error = %error, "connection ended with an error");
                }
                break;
            }
            // A head began: loop to arm its deadline.
            _ = activity.head_begun.notified(), if closing.is_none() => {}
            _ = shutdown.changed(), if !shutting_down => {
                shutting_down = true;
                connection.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + CLOSE_GRACE);
            }
            _ = tokio::time::sleep_until(wake) => {
                if closing.is_some() {
                    // It did not finish in time: dropping the connection closes the socket.
                    break;
                }
                if activity
                    .head_deadline(limits.request_receive_timeout)
                    .is_some_and(|deadline| deadline <= Instant::now())
                {
                    // A head still incomplete at the receive deadline: the sender's fault. No
                    // answer can be framed in the middle of a head; the connection is closed.
                    metrics::counter!("datagate_refusals_total", "code" => "http.header_timeout")
                        .increment(1);
                    break;
                }
                if activity
                    .idle_deadline(limits.idle_timeout)
                    .is_some_and(|deadline| deadline <= Instant::now())
                {
                    metrics::counter!("datagate_connections_idle_closed_total").increment(1);
                    connection.as_mut().graceful_shutdown();
                    closing = Some(Instant::now() + CLOSE_GRACE);
                }
            }
        }
    }
    drop(slot);
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

/// Runs a node until SIGINT/SIGTERM; SIGHUP reloads the configuration.
pub async fn serve(config: NodeConfig) -> anyhow::Result<()> {
    run_until_signalled(start(config).await?).await
}
