//! Listeners as data: a [`Listener`] is a name, a bound address, a TLS mode, a
//! router and its own connection caps; the consumer, exchange and ops listeners
//! are instances of it, served by one accept loop.
//!
//! The accept loop is written out (tokio-rustls + hyper-util) rather than
//! hidden in a helper crate because identity is per connection: after the
//! handshake the peer's verified certificate becomes a [`PeerCertificate`]
//! extension on every request of that connection, so no layer re-reads TLS
//! state. A failed handshake (unknown CA, expired, not yet valid, revoked,
//! no certificate) never reaches HTTP; it is logged with its reason and counted.
//!
//! A listener may sit behind load balancers that speak the PROXY protocol (v2, the public
//! listener with `[public] proxy_protocol`): a peer outside `[public] trusted_proxies` is
//! closed at accept; a trusted one's header is read before TLS and HTTP, under the
//! handshake deadline ([`super::proxy_protocol`]), and the client it names is the
//! connection's [`RemoteAddr`] and what its per-IP caps count.
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

use super::Gateway;
use super::connections::{Connections, Slot};
use crate::config::Limits;
use crate::trust::PeerCertificate;
use arc_swap::ArcSwap;
use axum::Router;
use futures_util::FutureExt as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
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

/// How a listener secures its connections.
#[derive(Clone)]
pub enum TlsMode {
    /// TLS with a client certificate required and verified (consumer, exchange).
    Mutual(Arc<ArcSwap<rustls::ServerConfig>>),
    /// TLS without client certificates (the public listener).
    ServerOnly(Arc<ArcSwap<rustls::ServerConfig>>),
    /// Plain TCP: loopback ops, or behind the operator's own TLS terminator.
    Plain,
}

impl TlsMode {
    fn acceptor(&self) -> Option<tokio_rustls::TlsAcceptor> {
        match self {
            TlsMode::Mutual(config) | TlsMode::ServerOnly(config) => {
                Some(tokio_rustls::TlsAcceptor::from(config.load_full()))
            }
            TlsMode::Plain => None,
        }
    }

    fn as_str(&self) -> &'static str {
        match self {
            TlsMode::Mutual(_) => "mTLS",
            TlsMode::ServerOnly(_) => "TLS",
            TlsMode::Plain => "plain",
        }
    }
}

/// One listener of the node.
pub struct Listener {
    /// Its name, in logs and metric labels: `consumer`, `exchange`, `public`, `ops`.
    pub name: &'static str,
    /// The bound socket.
    pub socket: TcpListener,
    /// How connections are secured.
    pub tls: TlsMode,
    /// What answers its requests.
    pub router: Router,
    /// Its open connections, under the caps of the node's limits.
    pub connections: Arc<Connections>,
    /// Every connection begins with a PROXY protocol v2 header from a trusted proxy
    /// (`[public] trusted_proxies`, read at each accept so a reload applies).
    pub proxy_protocol: bool,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("name", &self.name)
            .field("tls", &self.tls.as_str())
            .field("proxy_protocol", &self.proxy_protocol)
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.socket
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Accepts until `shutdown` turns true, then waits up to `grace` for its
    /// connections to finish.
    pub async fn run(
        self,
        gateway: Arc<Gateway>,
        mut shutdown: watch::Receiver<bool>,
        grace: Duration,
    ) {
        // Descriptors bound the listener below `max_connections` if the process may not
        // open that many; a reload that raises `max_connections` takes effect up to here.
        let ceiling =
            super::connections::connection_ceiling(gateway.runtime().limits.max_connections);
        tracing::info!(
            listener = self.name,
            address = %self.local_addr(),
            tls = self.tls.as_str(),
            "listener ready"
        );
        loop {
            tokio::select! {
                // The watch guard must not live across the select's other branch.
                _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
                accepted = self.socket.accept() => {
                    // Take what is waiting in the backlog in one go: refusals over the caps
                    // are cheap, and a drained backlog keeps SYNs of other peers from being
                    // dropped while one peer floods.
                    let mut next = Some(accepted);
                    let mut burst = 0;
                    while let Some(accepted) = next.take() {
                        match accepted {
                            Ok((stream, remote)) => {
                                self.admit(&gateway, stream, remote, ceiling, &shutdown);
                            }
                            Err(error) => {
                                // Out of descriptors: wait a little rather than spin; the caps
                                // keep this rare, and the ops listener has its own socket.
                                tracing::warn!(listener = self.name, error = %error, "accept failed");
                                metrics::counter!("datagate_accept_failures_total", "listener" => self.name).increment(1);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                break;
                            }
                        }
                        burst += 1;
                        if burst < ACCEPT_BURST {
                            next = self.socket.accept().now_or_never();
                        }
                    }
                }
            }
        }
        drop(self.socket);
        let drained = async {
            while self.connections.open() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(grace, drained).await.is_err() {
            tracing::warn!(
                listener = self.name,
                "grace period over; closing remaining connections"
            );
        }
    }

    /// Places an accepted socket under the caps and starts serving it, or closes it.
    fn admit(
        &self,
        gateway: &Gateway,
        stream: tokio::net::TcpStream,
        remote: SocketAddr,
        ceiling: usize,
        shutdown: &watch::Receiver<bool>,
    ) {
        let limits = gateway.runtime().limits;
        let accepted = if self.proxy_protocol {
            // Only a listed load balancer may name the client; anyone else reaching this
            // listener directly bypassed it, and its header (or its absence) means nothing.
            let catalog = gateway.catalog();
            let trusted = &catalog.public_settings().trusted_proxies;
            if !trusted.iter().any(|cidr| cidr.contains(remote.ip())) {
                tracing::debug!(remote = %remote.ip(), "PROXY protocol from an untrusted peer refused");
                super::proxy_protocol::Refusal::UntrustedPeer.count();
                return;
            }
            self.connections.accept_relayed(&limits, ceiling)
        } else {
            self.connections.accept(remote.ip(), &limits, ceiling)
        };
        let slot = match accepted {
            Ok(slot) => slot,
            Err(refusal) => {
                metrics::counter!("datagate_connections_refused_total", "reason" => refusal.as_str(), "listener" => self.name)
                    .increment(1);
                return;
            }
        };
        tokio::spawn(serve_connection(
            stream,
            remote,
            slot,
            self.proxy_protocol,
            self.tls.acceptor(),
            self.router.clone(),
            limits,
            shutdown.clone(),
        ));
    }
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

/// One connection: the PROXY header (when the listener expects one), handshake and
/// identity (TLS modes), then HTTP, bounded in time from accept.
#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    mut stream: tokio::net::TcpStream,
    mut remote: SocketAddr,
    mut slot: Slot,
    proxy_protocol: bool,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let accepted_at = Instant::now();
    // One deadline for everything before HTTP: the PROXY header and the TLS handshake share
    // it, so a peer that trickles either holds its pending place no longer than a handshake.
    let handshake_deadline = accepted_at + slot.handshake_deadline(&limits);
    if proxy_protocol {
        use super::proxy_protocol::{Refusal, read_header};
        let read = tokio::time::timeout_at(handshake_deadline, read_header(&mut stream))
            .await
            .unwrap_or(Err(Refusal::Timeout));
        let source = match read {
            Ok(source) => source,
            Err(refusal) => {
                // No HTTP has been spoken: there is nothing to answer, only a socket to close.
                tracing::debug!(remote = %remote.ip(), reason = refusal.as_str(), "PROXY header refused");
                refusal.count();
                return;
            }
        };
        remote = source.client(remote);
        if let Err(refusal) = slot.attribute(remote.ip(), &limits) {
            metrics::counter!("datagate_connections_refused_total", "reason" => refusal.as_str())
                .increment(1);
            return;
        }
    }
    let Some(acceptor) = acceptor else {
        slot.handshake_done();
        serve_http(
            stream,
            false,
            remote,
            None,
            slot,
            router,
            limits,
            shutdown,
            accepted_at,
        )
        .await;
        return;
    };
    let handshake = tokio::time::timeout_at(handshake_deadline, acceptor.accept(stream)).await;
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
    // HTTP/2 frames (PINGs, SETTINGS) are not request heads: only HTTP/1 gets the head deadline.
    let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    serve_http(
        tls,
        http2,
        remote,
        peer,
        slot,
        router,
        limits,
        shutdown,
        accepted_at,
    )
    .await;
}

/// The client address of a request's connection: the TCP peer, or on a listener behind a
/// PROXY-protocol load balancer the source its header named. What the public listener's
/// client IP is derived from, with `X-Forwarded-For` only when this address is itself a
/// trusted proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

/// HTTP on an established connection (TLS or plain), with the connection's deadlines.
#[allow(clippy::too_many_arguments)]
async fn serve_http<IO>(
    io: IO,
    http2: bool,
    remote: SocketAddr,
    peer: Option<PeerCertificate>,
    slot: Slot,
    router: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
    accepted_at: Instant,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new(accepted_at);
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            let guard = activity.begin();
            if let Some(peer) = &peer {
                request.extensions_mut().insert(peer.clone());
            }
            request.extensions_mut().insert(RemoteAddr(remote));
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
        inner: io,
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
