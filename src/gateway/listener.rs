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

/// hyper's HTTP/1 settings, on hyper's own builder or the auto builder's: its limits sit
/// above ours (checked in the exchange's head phase), so a request a little over our limits
/// is answered by us with problem+json; only far larger ones are refused by hyper itself,
/// and those are counted.
macro_rules! configure_http1 {
    ($builder:expr, $settings:expr) => {{
        let settings: Http1Settings = $settings;
        $builder
            // No timer of hyper's: the connection's watchdog already holds both bounds (the
            // idle deadline, and the receive deadline of a head that has begun), and hyper's
            // header timer cost a boxed sleep armed and cancelled on every request (issue 12).
            .header_read_timeout(None)
            .max_headers(settings.max_headers)
            .max_buf_size(settings.max_buf_size);
    }};
}

/// What [`configure_http1`] sets, copied out of the limits: a hibernating connection keeps
/// these few words and builds hyper's builder again when it wakes, rather than keep the
/// builder (104 bytes) or the whole `Limits`.
#[derive(Debug, Clone, Copy)]
struct Http1Settings {
    /// Twice `limits.max_headers`.
    max_headers: usize,
    /// Twice the largest head our limits allow, at least 128 KiB.
    max_buf_size: usize,
}

impl Http1Settings {
    fn of(limits: &Limits) -> Self {
        let head_bytes = limits.max_uri_bytes + limits.max_header_bytes;
        Http1Settings {
            max_headers: limits.max_headers * 2,
            max_buf_size: (head_bytes * 2).max(128 * 1024),
        }
    }
}

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
    pub routes: Routes,
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
            self.routes.clone(),
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
/// end of the previous request (which is the idle deadline's business). Bytes read
/// before a hibernation and not yet parsed (`pending`) are read again first.
struct WatchedIo<T> {
    inner: T,
    pending: bytes::Bytes,
    activity: Option<Arc<Activity>>,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WatchedIo<T> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.pending.is_empty() {
            let take = this.pending.len().min(buf.remaining());
            buf.put_slice(&this.pending.split_to(take));
            if let Some(activity) = &this.activity {
                activity.received();
            }
            return std::task::Poll::Ready(Ok(()));
        }
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

/// What serves a connection once it is established: its HTTP stage, boxed.
type HttpStage = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// One connection: the PROXY header (when the listener expects one), handshake and
/// identity (TLS modes), then HTTP, bounded in time from accept.
///
/// Two stages, each boxed: a connection's task holds the largest of its states for the
/// whole connection, so the handshake's state (the TLS stream mid-handshake, the PROXY
/// header) lives in its own future, done with before the HTTP stage begins, and the HTTP
/// stage lives in its own allocation (issue 12: memory per idle connection).
///
/// Not an `async fn`: its task would keep every argument (the socket, the limits, the
/// router, …) in its state for the connection's life after handing them on
/// (rust-lang/rust#62958). The task holds two pointers.
#[allow(clippy::too_many_arguments)]
fn serve_connection(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    slot: Slot,
    proxy_protocol: bool,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    routes: Routes,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send {
    let established = Box::pin(establish(
        stream,
        remote,
        slot,
        proxy_protocol,
        acceptor,
        routes,
        limits,
        shutdown,
    ));
    async move {
        if let Some(stage) = established.await {
            stage.await;
        }
    }
}

/// The PROXY header, the handshake and the identity of a connection; its HTTP stage, or
/// `None` when the connection was refused (and is closed).
#[allow(clippy::too_many_arguments)]
async fn establish(
    mut stream: tokio::net::TcpStream,
    mut remote: SocketAddr,
    mut slot: Slot,
    proxy_protocol: bool,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    routes: Routes,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) -> Option<HttpStage> {
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
                return None;
            }
        };
        remote = source.client(remote);
        if let Err(refusal) = slot.attribute(remote.ip(), &limits) {
            metrics::counter!("datagate_connections_refused_total", "reason" => refusal.as_str())
                .increment(1);
            return None;
        }
    }
    let Some(acceptor) = acceptor else {
        slot.handshake_done();
        return Some(Box::pin(serve_http(
            stream,
            false,
            remote,
            None,
            slot,
            routes,
            limits,
            shutdown,
            accepted_at,
        )));
    };
    // Boxed, as the HTTP stages below are: what a connection's task holds for its whole life
    // is the largest of its stages, and the handshake's state is only needed for the handshake.
    let handshake = Box::pin(acceptor.accept(stream));
    let handshake = tokio::time::timeout_at(handshake_deadline, handshake).await;
    slot.handshake_done();
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            let reason = handshake_reason(&error);
            tracing::info!(remote = %remote.ip(), reason, "TLS handshake refused");
            metrics::counter!("datagate_tls_handshake_failures_total", "reason" => reason)
                .increment(1);
            return None;
        }
        Err(_) => {
            metrics::counter!("datagate_tls_handshake_failures_total", "reason" => "timeout")
                .increment(1);
            return None;
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
        return None;
    }
    // HTTP/2 frames (PINGs, SETTINGS) are not request heads: only HTTP/1 gets the head deadline.
    if tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice()) {
        Some(Box::pin(serve_http(
            tls,
            true,
            remote,
            peer,
            slot,
            routes,
            limits,
            shutdown,
            accepted_at,
        )))
    } else {
        Some(Box::pin(serve_http1(
            tls,
            remote,
            peer,
            slot,
            routes,
            (Http1Settings::of(&limits), Deadlines::of(&limits)),
            shutdown,
            accepted_at,
        )))
    }
}

/// The client address of a request's connection: the TCP peer, or on a listener behind a
/// PROXY-protocol load balancer the source its header named. What the public listener's
/// client IP is derived from, with `X-Forwarded-For` only when this address is itself a
/// trusted proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

/// After this long without a request (100 ms), an HTTP/1 connection over TLS hibernates: hyper's
/// connection and its read and write buffers (8 KiB each) are released and only the TLS
/// session is kept, until the peer sends again (issue 12: memory per idle keep-alive
/// connection). A client that sends more often than this never pays for the hibernation.
pub const HIBERNATE_AFTER: Duration = Duration::from_millis(100);

/// The boxed answer of one request: boxed so that hyper's HTTP/1 connection can be
/// polled without being pinned, and taken apart when it hibernates.
type Answer = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Response, std::convert::Infallible>> + Send>,
>;
type Response = axum::response::Response;

/// The service hyper calls for each request of one connection: the connection's identity
/// and address as extensions, and the request counted in the connection's [`Activity`].
fn connection_service(
    activity: &Arc<Activity>,
    peer: Option<PeerCertificate>,
    remote: SocketAddr,
    routes: Routes,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = Response,
    Error = std::convert::Infallible,
    Future = Answer,
>
+ Clone
+ Send
+ Unpin
+ 'static
+ use<> {
    let activity = activity.clone();
    hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        let guard = activity.begin();
        if let Some(peer) = &peer {
            request.extensions_mut().insert(peer.clone());
        }
        request.extensions_mut().insert(RemoteAddr(remote));
        let request = request.map(axum::body::Body::new);
        let call = match &routes.exchanges {
            Some(gateway) if super::exchange::routes_to_exchange(&request) => {
                futures_util::future::Either::Left(
                    super::exchange::spawn_exchange(
                        gateway.clone(),
                        request,
                        super::exchange::Arrival::Consumer,
                    )
                    .map(Ok),
                )
            }
            _ => futures_util::future::Either::Right(routes.router.clone().oneshot(request)),
        };
        Box::pin(async move {
            let response = call.await;
            drop(guard);
            response
        }) as Answer
    })
}

/// What answers a listener's requests.
#[derive(Clone)]
pub struct Routes {
    /// Every route of the listener.
    router: Router,
    /// On the consumer listener, the gateway whose exchange pipeline takes the service
    /// calls directly: the same pipeline the router's fallback reaches, without routing
    /// (issue 12: two look-ups in axum's route tree, a catch-all parameter and two boxed
    /// services cost about 4 % of a pass-through request's instructions).
    exchanges: Option<Arc<super::Gateway>>,
}

impl Routes {
    /// A listener that routes every request.
    pub fn new(router: Router) -> Self {
        Routes {
            router,
            exchanges: None,
        }
    }

    /// The consumer listener: service calls go to `gateway`'s exchange pipeline without
    /// routing; everything else (metadata calls, forms, open data) to `router`, whose
    /// fallback is that same pipeline ([`super::server::consumer_router`]).
    pub fn with_exchanges(router: Router, gateway: Arc<super::Gateway>) -> Self {
        Routes {
            router,
            exchanges: Some(gateway),
        }
    }
}

/// What the connection's watchdog found when it woke.
enum Watch {
    /// Nothing due yet.
    Nothing,
    /// The close grace ran out: drop the connection.
    Close,
    /// A request head was still incomplete at its receive deadline: drop the connection.
    HeadTimeout,
    /// Idle past `idle_timeout`: close gracefully.
    Idle,
    /// Idle past [`HIBERNATE_AFTER`] with no head begun: hibernate.
    Hibernate,
}

/// The two deadlines the connection's watchdog enforces, copied out of the limits so that a
/// hibernating connection does not hold the whole `Limits` in its state.
#[derive(Debug, Clone, Copy)]
struct Deadlines {
    /// `limits.idle_timeout`.
    idle: Duration,
    /// `limits.request_receive_timeout`.
    receive: Duration,
}

impl Deadlines {
    fn of(limits: &Limits) -> Self {
        Deadlines {
            idle: limits.idle_timeout,
            receive: limits.request_receive_timeout,
        }
    }
}

/// When the watchdog must wake next: the close deadline, the head deadline, the idle
/// deadline, the hibernation (when the connection can hibernate), or a recheck while a
/// request runs (its end restarts the idle clock).
fn next_wake(
    activity: &Activity,
    deadlines: Deadlines,
    closing: Option<Instant>,
    hibernates: bool,
) -> Instant {
    let idle = activity.idle_deadline(deadlines.idle);
    let head = activity.head_deadline(deadlines.receive);
    match (closing, idle) {
        (Some(close), _) => close,
        (None, Some(idle)) => match head {
            Some(head) => head.min(idle),
            None if hibernates => activity
                .idle_deadline(HIBERNATE_AFTER)
                .map_or(idle, |hibernate| hibernate.min(idle)),
            None => idle,
        },
        (None, None) if hibernates => Instant::now() + HIBERNATE_AFTER,
        (None, None) => Instant::now() + deadlines.idle.min(deadlines.receive),
    }
}

/// Arms the watchdog's timer for `wake`, lazily. A deadline that moved later is left armed:
/// the watchdog wakes early once, finds nothing due and arms again. So a busy keep-alive
/// connection, whose idle deadline moves with every request, does not cancel and re-arm a
/// timer per request (issue 12). An earlier deadline, or a timer that has fired, is re-armed.
fn arm(timer: std::pin::Pin<&mut tokio::time::Sleep>, wake: Instant) {
    if wake < timer.deadline() || timer.is_elapsed() {
        timer.reset(wake);
    }
}

/// The watchdog's verdict when it wakes (see [`next_wake`]).
fn watch(
    activity: &Activity,
    deadlines: Deadlines,
    closing: Option<Instant>,
    hibernates: bool,
) -> Watch {
    let now = Instant::now();
    if let Some(close) = closing {
        // The timer may wake before the close grace is over (it is armed lazily, see
        // [`arm`]): only a grace that ran out drops the connection, which closes the socket.
        return if close <= now {
            Watch::Close
        } else {
            Watch::Nothing
        };
    }
    if activity
        .head_deadline(deadlines.receive)
        .is_some_and(|deadline| deadline <= now)
    {
        // A head still incomplete at the receive deadline: the sender's fault. No answer
        // can be framed in the middle of a head; the connection is closed.
        metrics::counter!("datagate_refusals_total", "code" => "http.header_timeout").increment(1);
        return Watch::HeadTimeout;
    }
    if activity
        .idle_deadline(deadlines.idle)
        .is_some_and(|deadline| deadline <= now)
    {
        metrics::counter!("datagate_connections_idle_closed_total").increment(1);
        return Watch::Idle;
    }
    if hibernates
        && activity.head_deadline(deadlines.receive).is_none()
        && activity
            .idle_deadline(HIBERNATE_AFTER)
            .is_some_and(|deadline| deadline <= now)
    {
        return Watch::Hibernate;
    }
    Watch::Nothing
}

fn count_connection_error(error: &(dyn std::error::Error + 'static)) {
    if let Some(code) = hyper_refusal(error) {
        metrics::counter!("datagate_refusals_total", "code" => code).increment(1);
    }
    tracing::debug!(error = %error, "connection ended with an error");
}

/// HTTP on an established connection (HTTP/2 over TLS, or plain TCP where a client may
/// speak either), with the connection's deadlines.
///
/// Not an `async fn`, for the reason [`serve_http1`] gives: the stream is handed to hyper's
/// connection boxed, so the block holds it once, inside the connection.
#[allow(clippy::too_many_arguments)]
fn serve_http<IO>(
    io: IO,
    http2: bool,
    remote: SocketAddr,
    peer: Option<PeerCertificate>,
    slot: Slot,
    routes: Routes,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
    accepted_at: Instant,
) -> impl std::future::Future<Output = ()> + Send
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new(accepted_at);
    let service = connection_service(&activity, peer, remote, routes);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    configure_http1!(builder.http1(), Http1Settings::of(&limits));
    let head_bytes = limits.max_uri_bytes + limits.max_header_bytes;
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
    let io = Box::new(WatchedIo {
        inner: io,
        pending: bytes::Bytes::new(),
        activity: (!http2).then(|| activity.clone()),
    });
    let deadlines = Deadlines::of(&limits);
    async move {
        // The connection borrows the builder, so it is made here, in the block's own state.
        let connection = builder.serve_connection(TokioIo::new(*io), service);
        tokio::pin!(connection);
        let mut closing: Option<Instant> = None;
        let mut shutting_down = *shutdown.borrow();
        if shutting_down {
            connection.as_mut().graceful_shutdown();
            closing = Some(Instant::now() + CLOSE_GRACE);
        }
        let timer = tokio::time::sleep_until(next_wake(&activity, deadlines, closing, false));
        // One wait for the node's shutdown for the connection's life, rather than one per
        // turn of the loop (a waiter registered and removed per request, issue 12).
        let shutdown_began = shutdown.changed();
        tokio::pin!(timer, shutdown_began);
        loop {
            arm(
                timer.as_mut(),
                next_wake(&activity, deadlines, closing, false),
            );
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        count_connection_error(error.as_ref());
                    }
                    break;
                }
                // A head began: loop to arm its deadline.
                _ = activity.head_begun.notified(), if closing.is_none() => {}
                _ = &mut shutdown_began, if !shutting_down => {
                    shutting_down = true;
                    connection.as_mut().graceful_shutdown();
                    closing = Some(Instant::now() + CLOSE_GRACE);
                }
                _ = &mut timer => match watch(&activity, deadlines, closing, false) {
                    Watch::Close | Watch::HeadTimeout => break,
                    Watch::Idle => {
                        connection.as_mut().graceful_shutdown();
                        closing = Some(Instant::now() + CLOSE_GRACE);
                    }
                    Watch::Nothing | Watch::Hibernate => {}
                },
            }
        }
        drop(slot);
    }
}

/// A TLS connection to a listener.
type TlsConnection = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// What hyper takes while an HTTP/1 connection is awake and gives back when it lets go: the
/// TLS session, the bytes read but not yet parsed, and the connection's service.
struct Session<S> {
    tls: TlsConnection,
    pending: bytes::Bytes,
    service: S,
}

/// What watches an HTTP/1 connection over TLS through its awake spells and hibernations.
struct Watcher {
    activity: Arc<Activity>,
    http1: Http1Settings,
    deadlines: Deadlines,
    shutdown: watch::Receiver<bool>,
    /// The node is shutting down: the request under way is finished, then the connection
    /// is closed.
    shutting_down: bool,
}

/// How an awake spell ended, when it did not drop the connection.
struct Spell {
    /// hyper let go because the connection was quiet: it may hibernate.
    hibernating: bool,
    /// When the close under way must be done, if one is.
    closing: Option<Instant>,
    /// hyper ended with an error.
    failed: bool,
}

/// HTTP/1 over TLS, with the connection's deadlines, hibernating when idle: after
/// [`HIBERNATE_AFTER`] without a request, hyper's connection is closed between requests
/// (no bytes are sent: it is idle), its buffers freed, and the TLS session waits for the
/// socket to be readable; then a new hyper connection picks up, the bytes hyper had read
/// but not parsed handed to it first. To the peer it is one keep-alive connection.
///
/// Not an `async fn`: an async fn keeps each argument in its state for its whole life
/// even after the argument is moved on (rust-lang/rust#62958), which would be a second
/// copy of the TLS session in every hibernating connection. The block below uses its
/// captures in place.
#[allow(clippy::too_many_arguments)]
fn serve_http1(
    tls: TlsConnection,
    remote: SocketAddr,
    peer: Option<PeerCertificate>,
    slot: Slot,
    routes: Routes,
    (http1, deadlines): (Http1Settings, Deadlines),
    shutdown: watch::Receiver<bool>,
    accepted_at: Instant,
) -> impl std::future::Future<Output = ()> + Send {
    let activity = Activity::new(accepted_at);
    let mut session = Session {
        tls,
        pending: bytes::Bytes::new(),
        service: connection_service(&activity, peer, remote, routes),
    };
    let shutting_down = *shutdown.borrow();
    let mut watcher = Watcher {
        activity,
        http1,
        deadlines,
        shutdown,
        shutting_down,
    };
    async move {
        loop {
            // Boxed: hibernating frees the spell (hyper's connection, its buffers, the
            // watchdog's timers), where state held in this future would stay allocated for
            // the connection's life.
            let Some((back, spell)) = Box::pin(awake(session, &mut watcher)).await else {
                break;
            };
            session = back;
            if spell.failed
                || !spell.hibernating
                || spell.closing.is_some()
                || watcher.shutting_down
            {
                // Over: close_notify and FIN, within the close grace.
                let deadline = spell
                    .closing
                    .unwrap_or_else(|| Instant::now() + CLOSE_GRACE);
                Box::pin(close_tls(&mut session.tls, deadline)).await;
                break;
            }
            // Hibernating: the TLS session, this future, its task and the caps' slot are all
            // that is held.
            if session.pending.is_empty() && session.tls.get_ref().1.wants_read() {
                let Some(idle) = watcher.activity.idle_deadline(watcher.deadlines.idle) else {
                    continue;
                };
                let woke = tokio::select! {
                    // Readiness polled in place: `readable()`'s future would hold a waiter
                    // node (150 bytes) in every hibernating connection.
                    readable = std::future::poll_fn(|cx| session.tls.get_ref().0.poll_read_ready(cx)) => match readable {
                        Ok(()) => Woke::Readable,
                        Err(_) => Woke::Failed,
                    },
                    _ = tokio::time::sleep_until(idle) => Woke::Idle,
                    _ = watcher.shutdown.changed(), if !watcher.shutting_down => Woke::ShuttingDown,
                };
                match woke {
                    Woke::Readable => {}
                    Woke::Failed => break,
                    Woke::Idle | Woke::ShuttingDown => {
                        if matches!(woke, Woke::Idle) {
                            metrics::counter!("datagate_connections_idle_closed_total")
                                .increment(1);
                        }
                        Box::pin(close_tls(&mut session.tls, Instant::now() + CLOSE_GRACE)).await;
                        break;
                    }
                }
            }
        }
        drop(slot);
    }
}

/// What ended a hibernation.
enum Woke {
    /// The peer sent: wake hyper.
    Readable,
    /// The socket failed.
    Failed,
    /// Idle past `idle_timeout`.
    Idle,
    /// The node is shutting down.
    ShuttingDown,
}

/// One awake spell of an HTTP/1 connection: hyper serves requests until the connection
/// ends, is closed, or goes quiet for [`HIBERNATE_AFTER`]; then the session is taken back
/// from hyper. `None`: the connection was dropped (its close grace ran out, or a request
/// head missed its receive deadline), which closes the socket.
async fn awake<S>(session: Session<S>, watcher: &mut Watcher) -> Option<(Session<S>, Spell)>
where
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = Response,
            Error = std::convert::Infallible,
            Future = Answer,
        > + Unpin,
{
    let Session {
        tls,
        pending,
        service,
    } = session;
    let mut builder = hyper::server::conn::http1::Builder::new();
    configure_http1!(builder, watcher.http1);
    let mut connection = builder.serve_connection(
        TokioIo::new(WatchedIo {
            inner: tls,
            pending,
            activity: Some(watcher.activity.clone()),
        }),
        service,
    );
    let mut hibernating = false;
    let mut closing: Option<Instant> = None;
    if watcher.shutting_down {
        std::pin::Pin::new(&mut connection).graceful_shutdown();
        closing = Some(Instant::now() + CLOSE_GRACE);
    }
    let timer = tokio::time::sleep_until(next_wake(
        &watcher.activity,
        watcher.deadlines,
        closing,
        !hibernating,
    ));
    // One wait for the node's shutdown for the spell (see `serve_http`).
    let shutdown_began = watcher.shutdown.changed();
    tokio::pin!(timer, shutdown_began);
    let ended = loop {
        arm(
            timer.as_mut(),
            next_wake(&watcher.activity, watcher.deadlines, closing, !hibernating),
        );
        tokio::select! {
            result = std::future::poll_fn(|cx| connection.poll_without_shutdown(cx)) => break result,
            // A head began: loop to arm its deadline.
            _ = watcher.activity.head_begun.notified(), if closing.is_none() => {}
            _ = &mut shutdown_began, if !watcher.shutting_down => {
                watcher.shutting_down = true;
                std::pin::Pin::new(&mut connection).graceful_shutdown();
                closing = Some(Instant::now() + CLOSE_GRACE);
            }
            _ = &mut timer => match watch(&watcher.activity, watcher.deadlines, closing, !hibernating) {
                // Dropping the connection closes the socket.
                Watch::Close | Watch::HeadTimeout => return None,
                Watch::Idle => {
                    std::pin::Pin::new(&mut connection).graceful_shutdown();
                    closing = Some(Instant::now() + CLOSE_GRACE);
                }
                Watch::Hibernate => {
                    // Idle: hyper closes its side at once, without a byte to the peer.
                    metrics::counter!("datagate_connections_hibernated_total").increment(1);
                    hibernating = true;
                    std::pin::Pin::new(&mut connection).graceful_shutdown();
                }
                Watch::Nothing => {}
            },
        }
    };
    if let Err(error) = &ended {
        count_connection_error(error);
    }
    let parts = connection.into_parts();
    let io = parts.io.into_inner();
    let pending = if io.pending.is_empty() {
        parts.read_buf
    } else {
        [parts.read_buf, io.pending].concat().into()
    };
    Some((
        Session {
            tls: io.inner,
            pending,
            service: parts.service,
        },
        Spell {
            hibernating,
            closing,
            failed: ended.is_err(),
        },
    ))
}

/// Ends a TLS connection that hyper no longer holds: `close_notify` and FIN, by `deadline`.
async fn close_tls(tls: &mut TlsConnection, deadline: Instant) {
    let _ = tokio::time::timeout_at(deadline, tokio::io::AsyncWriteExt::shutdown(tls)).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINES: Deadlines = Deadlines {
        idle: Duration::from_secs(10),
        receive: Duration::from_secs(3),
    };

    /// Issue 12 (decision 0013): an idle connection hibernates once it has been quiet for
    /// [`HIBERNATE_AFTER`], and not before.
    #[tokio::test(start_paused = true)]
    async fn a_quiet_connection_hibernates_after_the_hibernation_delay() {
        let activity = Activity::new(Instant::now());
        assert_eq!(
            next_wake(&activity, DEADLINES, None, true),
            Instant::now() + HIBERNATE_AFTER
        );
        tokio::time::advance(HIBERNATE_AFTER - Duration::from_millis(1)).await;
        assert!(matches!(
            watch(&activity, DEADLINES, None, true),
            Watch::Nothing
        ));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(matches!(
            watch(&activity, DEADLINES, None, true),
            Watch::Hibernate
        ));
        // A connection that may not hibernate (HTTP/2, plain TCP) waits for its idle deadline.
        assert!(matches!(
            watch(&activity, DEADLINES, None, false),
            Watch::Nothing
        ));
    }

    /// Issue 12 (decision 0013): a request head that has begun is never cut by a hibernation, however long it takes: the watchdog wakes
    /// only for the head's own receive deadline, and then closes the connection.
    #[tokio::test(start_paused = true)]
    async fn a_head_under_way_never_hibernates_only_its_receive_deadline_ends_it() {
        let accepted = Instant::now();
        let activity = Activity::new(accepted);
        tokio::time::advance(Duration::from_millis(50)).await;
        activity.received();
        let head_deadline = accepted + Duration::from_millis(50) + DEADLINES.receive;
        assert_eq!(next_wake(&activity, DEADLINES, None, true), head_deadline);
        // Many hibernation periods pass with the head incomplete: never a hibernation.
        for _ in 0..25 {
            tokio::time::advance(HIBERNATE_AFTER).await;
            assert!(matches!(
                watch(&activity, DEADLINES, None, true),
                Watch::Nothing
            ));
            assert_eq!(next_wake(&activity, DEADLINES, None, true), head_deadline);
        }
        tokio::time::advance(head_deadline - Instant::now()).await;
        assert!(matches!(
            watch(&activity, DEADLINES, None, true),
            Watch::HeadTimeout
        ));
    }

    /// Once the head is complete the request runs: no hibernation while it is in flight,
    /// and the idle clock (and with it the hibernation delay) restarts at its end.
    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_never_hibernates_and_its_end_restarts_the_clock() {
        let activity = Activity::new(Instant::now());
        activity.received();
        let guard = activity.begin();
        tokio::time::advance(HIBERNATE_AFTER * 5).await;
        assert!(matches!(
            watch(&activity, DEADLINES, None, true),
            Watch::Nothing
        ));
        drop(guard);
        let ended = Instant::now();
        assert_eq!(
            next_wake(&activity, DEADLINES, None, true),
            ended + HIBERNATE_AFTER
        );
        tokio::time::advance(HIBERNATE_AFTER).await;
        assert!(matches!(
            watch(&activity, DEADLINES, None, true),
            Watch::Hibernate
        ));
    }

    /// Issue 12: a watchdog that wakes early (its timer is armed lazily) during a close
    /// grace leaves the connection to finish its answer; only a grace that ran out closes it.
    #[tokio::test(start_paused = true)]
    async fn a_close_grace_is_cut_only_once_it_has_run_out() {
        let activity = Activity::new(Instant::now());
        let guard = activity.begin();
        let close = Instant::now() + CLOSE_GRACE;
        // An earlier deadline (a hibernation check) fires first: nothing is due.
        tokio::time::advance(HIBERNATE_AFTER).await;
        assert!(matches!(
            watch(&activity, DEADLINES, Some(close), true),
            Watch::Nothing
        ));
        assert_eq!(next_wake(&activity, DEADLINES, Some(close), true), close);
        tokio::time::advance(close - Instant::now()).await;
        assert!(matches!(
            watch(&activity, DEADLINES, Some(close), true),
            Watch::Close
        ));
        drop(guard);
    }

    /// Issue 12: the watchdog's timer is armed lazily. A later deadline leaves the armed one
    /// (the watchdog wakes early and arms again), an earlier one replaces it, and a timer
    /// that fired is always armed again, so no deadline is ever passed unwatched.
    #[tokio::test(start_paused = true)]
    async fn the_watchdog_timer_keeps_its_earlier_deadline_and_rearms_once_fired() {
        let start = Instant::now();
        let timer = tokio::time::sleep_until(start + Duration::from_millis(100));
        tokio::pin!(timer);
        // Later: kept.
        arm(timer.as_mut(), start + Duration::from_millis(150));
        assert_eq!(timer.deadline(), start + Duration::from_millis(100));
        // Earlier: taken.
        arm(timer.as_mut(), start + Duration::from_millis(40));
        assert_eq!(timer.deadline(), start + Duration::from_millis(40));
        tokio::time::advance(Duration::from_millis(40)).await;
        (&mut timer).await;
        assert!(timer.is_elapsed());
        // Fired: armed again even for a later deadline, and it fires at that deadline.
        arm(timer.as_mut(), start + Duration::from_millis(150));
        assert_eq!(timer.deadline(), start + Duration::from_millis(150));
        assert!(!timer.is_elapsed());
        tokio::time::advance(Duration::from_millis(109)).await;
        assert!(
            futures_util::FutureExt::now_or_never(timer.as_mut()).is_none(),
            "not due yet"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        (&mut timer).await;
        assert_eq!(Instant::now(), start + Duration::from_millis(150));
    }
}

/// Issue 12 (memory per idle connection): what a connection's futures hold for its life,
/// measured by type. The arguments are never evaluated: only the futures' types are.
#[cfg(test)]
#[allow(unreachable_code, clippy::diverging_sub_expression)]
mod state_sizes {
    use super::*;

    /// The size of the future a closure would return, without calling it.
    fn future_size<F>(_: &impl FnOnce() -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// The size of the future that `$stage`, a function of eight arguments (nine with
    /// `$first`), returns.
    macro_rules! stage_size {
        ($stage:path $(, $first:expr)?) => {
            future_size(&|| {
                $stage(
                    $($first,)?
                    todo!(),
                    todo!(),
                    todo!(),
                    todo!(),
                    todo!(),
                    todo!(),
                    todo!(),
                    todo!(),
                )
            })
        };
    }

    /// Issue 12: a connection's task holds pointers to its stages, not the socket, limits
    /// and router it handed on (an `async fn` would keep its arguments: rust-lang/rust#62958).
    #[test]
    fn the_connection_task_holds_only_its_stages() {
        let size = stage_size!(serve_connection);
        assert!(
            size <= 8 * std::mem::size_of::<usize>(),
            "the task's future is {size} bytes"
        );
    }

    /// The size of [`serve_http`]'s future over `IO`.
    fn http_stage_size<IO>() -> usize
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        stage_size!(serve_http::<IO>, todo!())
    }

    /// Issue 12: an HTTP/2 connection's stage holds its TLS session once, inside hyper's
    /// connection, and not the limits it was configured from.
    #[test]
    fn an_http2_connection_holds_its_tls_session_once() {
        let tls = std::mem::size_of::<TlsConnection>();
        let tcp = std::mem::size_of::<tokio::net::TcpStream>();
        let over_tls = http_stage_size::<TlsConnection>();
        let over_tcp = http_stage_size::<tokio::net::TcpStream>();
        assert!(
            over_tls - over_tcp < 2 * (tls - tcp),
            "over TLS the stage is {over_tls} bytes, over TCP {over_tcp}: the TLS session is held more than once"
        );
    }

    /// Issue 12: a hibernating HTTP/1 connection's stage holds its TLS session once, and
    /// not hyper's connection or the awake spell's timers.
    #[test]
    fn a_hibernating_connection_holds_its_tls_session_once() {
        let tls = std::mem::size_of::<TlsConnection>();
        let size = stage_size!(serve_http1);
        assert!(
            size < tls + 1024,
            "the HTTP/1 stage is {size} bytes, the TLS session {tls}"
        );
    }
}
