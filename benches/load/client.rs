//! The load generator: an open loop at a fixed offered rate over keep-alive
//! connections (reqwest), an open loop where every request opens a new mTLS
//! connection (tokio-rustls, raw HTTP/1.1), a closed loop for saturation, and
//! many idle keep-alive connections held open.
//!
//! Open loop: request `i` is scheduled at `start + i / rate` whatever happened
//! to earlier ones (a dedicated thread sleeps to each scheduled instant and
//! hands the request to the runtime), and its latency runs from the
//! *scheduled* instant to the end of its response body, so a stalled target
//! is charged for every request it delayed (no coordinated omission).

use crate::setup::{self, Pki};
use anyhow::Context;
use futures_util::StreamExt as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Deadline of one request (connection, handshake, response).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the harness waits for stragglers after an open loop's last request.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests in flight above which an open loop stops sending (counted as errors).
const MAX_IN_FLIGHT: usize = 20_000;

/// The rustls client configuration: TLS 1.3, X25519, the bench CA as the only
/// root, the client certificate, ALPN http/1.1. `resume: false` disables
/// session resumption so every new connection is a full handshake.
pub fn tls_config(pki: &Pki, resume: bool) -> anyhow::Result<rustls::ClientConfig> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(pki.ca_der.clone()))?;
    let key = PrivateKeyDer::from_pem_slice(pki.client.key_pem.as_bytes()).context("client key")?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![CertificateDer::from(pki.client.cert_der.clone())], key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(config)
}

/// A keep-alive HTTP/1.1 client (mTLS for `https://` targets).
pub fn keepalive_client(pki: &Pki) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config(pki, true)?)
        .http1_only()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(4096)
        .pool_idle_timeout(Duration::from_secs(300))
        .timeout(REQUEST_TIMEOUT)
        .build()?)
}

/// One target, as the load generator sees it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Full URL of the request (`http://` or `https://127.0.0.1:PORT/...`).
    pub url: String,
    /// Port, for raw connections.
    pub port: u16,
    /// Whether the endpoint speaks mTLS.
    pub tls: bool,
    /// The raw HTTP/1.1 request head used on raw connections (keep-alive).
    pub raw_request: Vec<u8>,
}

impl Endpoint {
    /// The endpoint at `port`.
    pub fn new(port: u16, tls: bool) -> Self {
        Self::for_path(port, tls, &setup::request_path())
    }

    /// The endpoint at `port`, asking for `path`.
    pub fn for_path(port: u16, tls: bool, path: &str) -> Self {
        let scheme = if tls { "https" } else { "http" };
        let raw_request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Road-Client: {}\r\nX-Purpose: {}\r\n\r\n",
            setup::CLIENT,
            setup::PURPOSE,
        )
        .into_bytes();
        Endpoint {
            url: format!("{scheme}://127.0.0.1:{port}{path}"),
            port,
            tls,
            raw_request,
        }
    }
}

/// Sends one request with `client`; the body length on a 200.
pub async fn get(client: &reqwest::Client, endpoint: &Endpoint) -> Result<usize, String> {
    let response = client
        .get(&endpoint.url)
        .header("X-Road-Client", setup::CLIENT)
        .header("X-Purpose", setup::PURPOSE)
        .send()
        .await
        .map_err(|e| format!("{e:#}"))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| format!("{e:#}"))?;
    if status != reqwest::StatusCode::OK {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        return Err(format!("status {status}: {text}"));
    }
    Ok(body.len())
}

/// What a load run observed.
#[derive(Debug, Default)]
pub struct Observed {
    /// Latencies of successful requests, in microseconds.
    pub latencies_us: Vec<u32>,
    /// Successful requests (200).
    pub ok: u64,
    /// Failed requests (error, timeout, non-200, or not sent).
    pub errors: u64,
    /// Bytes of response bodies received.
    pub body_bytes: u64,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// Wall time of the run.
    pub wall: Duration,
}

impl Observed {
    /// Adds another run's observations to these (wall times add up).
    pub fn merge(&mut self, other: Observed) {
        self.latencies_us.extend(other.latencies_us);
        self.ok += other.ok;
        self.errors += other.errors;
        self.body_bytes += other.body_bytes;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.wall += other.wall;
    }
}

#[derive(Default)]
struct Shared {
    latencies_us: Mutex<Vec<u32>>,
    ok: AtomicU64,
    errors: AtomicU64,
    body_bytes: AtomicU64,
    in_flight: AtomicUsize,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    fn record(&self, scheduled: Instant, outcome: Result<usize, String>) {
        match outcome {
            Ok(bytes) => {
                let micros = scheduled.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                if let Ok(mut latencies) = self.latencies_us.lock() {
                    latencies.push(micros);
                }
                self.ok.fetch_add(1, Ordering::Relaxed);
                self.body_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
            }
            Err(error) => self.fail(error),
        }
    }

    fn fail(&self, error: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock()
            && first.is_none()
        {
            *first = Some(error);
        }
    }

    fn into_observed(self, wall: Duration) -> Observed {
        Observed {
            latencies_us: self.latencies_us.into_inner().unwrap_or_default(),
            ok: self.ok.into_inner(),
            errors: self.errors.into_inner(),
            body_bytes: self.body_bytes.into_inner(),
            first_error: self.first_error.into_inner().unwrap_or_default(),
            wall,
        }
    }
}

/// How an open-loop request is made.
#[derive(Clone)]
pub enum Mode {
    /// Through a keep-alive client.
    KeepAlive(reqwest::Client),
    /// A new mTLS connection per request, closed after the response.
    NewConnection(tokio_rustls::TlsConnector),
}

/// Runs an open loop: `rate` requests per second for `duration`.
pub async fn open_loop(
    mode: Mode,
    endpoint: Arc<Endpoint>,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<Observed> {
    let count = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    let interval = 1.0 / rate;
    let shared = Arc::new(Shared::default());
    let runtime = tokio::runtime::Handle::current();
    let started = Instant::now();
    let start = started + Duration::from_millis(5);
    let scheduler_shared = shared.clone();
    let tasks = tokio::task::spawn_blocking(move || {
        let mut tasks = Vec::with_capacity(count as usize);
        for i in 0..count {
            let scheduled = start + Duration::from_secs_f64(interval * i as f64);
            let now = Instant::now();
            if scheduled > now {
                std::thread::sleep(scheduled - now);
            }
            if scheduler_shared.in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
                scheduler_shared.fail("too many requests in flight; not sent".into());
                continue;
            }
            scheduler_shared.in_flight.fetch_add(1, Ordering::Relaxed);
            let shared = scheduler_shared.clone();
            let mode = mode.clone();
            let endpoint = endpoint.clone();
            tasks.push(runtime.spawn(async move {
                let outcome = match &mode {
                    Mode::KeepAlive(client) => get(client, &endpoint).await,
                    Mode::NewConnection(connector) => {
                        match tokio::time::timeout(
                            REQUEST_TIMEOUT,
                            one_connection(connector, &endpoint),
                        )
                        .await
                        {
                            Ok(outcome) => outcome,
                            Err(_) => Err("timed out".into()),
                        }
                    }
                };
                shared.record(scheduled, outcome);
                shared.in_flight.fetch_sub(1, Ordering::Relaxed);
            }));
        }
        tasks
    })
    .await?;
    let drain_until = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    for task in tasks {
        let abort = task.abort_handle();
        if tokio::time::timeout_at(drain_until, task).await.is_err() {
            abort.abort();
            shared.fail("no answer when the run ended".into());
        }
    }
    let wall = started.elapsed();
    let shared =
        Arc::try_unwrap(shared).map_err(|_| anyhow::anyhow!("load tasks still running"))?;
    Ok(shared.into_observed(wall))
}

/// Runs a closed loop: `concurrency` workers, each sending its next request
/// as soon as the previous one is answered, for `duration`.
pub async fn closed_loop(
    client: reqwest::Client,
    endpoint: Arc<Endpoint>,
    concurrency: usize,
    duration: Duration,
) -> Observed {
    let shared = Arc::new(Shared::default());
    let started = Instant::now();
    let stop_at = started + duration;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let endpoint = endpoint.clone();
        let shared = shared.clone();
        workers.spawn(async move {
            while Instant::now() < stop_at {
                let sent = Instant::now();
                let outcome = get(&client, &endpoint).await;
                shared.record(sent, outcome);
            }
        });
    }
    let drained = tokio::time::timeout(duration + DRAIN_TIMEOUT, async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        workers.abort_all();
        shared.fail("closed-loop workers did not finish".into());
    }
    let wall = started.elapsed();
    // Aborted workers drop their clone of `shared` when the runtime polls them.
    tokio::time::sleep(Duration::from_millis(50)).await;
    match Arc::try_unwrap(shared) {
        Ok(shared) => shared.into_observed(wall),
        Err(shared) => Observed {
            ok: shared.ok.load(Ordering::Relaxed),
            errors: shared.errors.load(Ordering::Relaxed),
            wall,
            first_error: Some("workers still running".into()),
            ..Observed::default()
        },
    }
}

/// Connects and completes the mTLS handshake.
pub async fn connect_tls(
    connector: &tokio_rustls::TlsConnector,
    endpoint: &Endpoint,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let tcp = TcpStream::connect(("127.0.0.1", endpoint.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))
}

/// Opens an mTLS connection and sends one request; keeps the connection.
async fn open_tls(
    connector: &tokio_rustls::TlsConnector,
    endpoint: &Endpoint,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let mut tls = connect_tls(connector, endpoint).await?;
    exchange(&mut tls, &endpoint.raw_request).await?;
    Ok(tls)
}

/// One request on a fresh connection, then close_notify and close.
async fn one_connection(
    connector: &tokio_rustls::TlsConnector,
    endpoint: &Endpoint,
) -> Result<usize, String> {
    let mut tls = connect_tls(connector, endpoint).await?;
    let bytes = exchange(&mut tls, &endpoint.raw_request).await?;
    let _ = tls.shutdown().await;
    Ok(bytes)
}

/// Writes a request head and reads one HTTP/1.1 response (Content-Length or
/// chunked); the body length on a 200.
async fn exchange<S>(stream: &mut S, request: &[u8]) -> Result<usize, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let response = exchange_raw(stream, request).await?;
    if response.status != 200 {
        return Err(format!(
            "status {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body_start)
        ));
    }
    Ok(response.body_len)
}

/// One HTTP/1.1 response, whatever its status.
#[derive(Debug)]
pub struct RawResponse {
    /// The status code (0 when the status line cannot be parsed).
    pub status: u16,
    /// Length of the body.
    pub body_len: usize,
    /// The first 300 bytes of the body of a non-200 answer (empty on a 200).
    pub body_start: Vec<u8>,
    /// The `code` member of a problem+json body (non-200 answers only).
    pub code: Option<String>,
    /// Whether the server said `Connection: close` (the connection cannot be reused).
    pub close: bool,
}

/// Writes a request head and reads one HTTP/1.1 response (Content-Length or chunked),
/// whatever its status.
pub async fn exchange_raw<S>(stream: &mut S, request: &[u8]) -> Result<RawResponse, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    stream.flush().await.map_err(|e| format!("flush: {e}"))?;
    let mut buffer = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = find(&buffer, b"\r\n\r\n") {
            break at + 4;
        }
        if buffer.len() > 64 * 1024 {
            return Err("response head too large".into());
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed before the response".into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    let content_length = head.lines().find_map(|line| {
        line.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    let chunked = head
        .lines()
        .any(|line| line.starts_with("transfer-encoding:") && line.contains("chunked"));
    let close = head
        .lines()
        .any(|line| line.starts_with("connection:") && line.contains("close"));
    loop {
        let body = &buffer[head_end..];
        let complete = match content_length {
            Some(length) => body.len() >= length,
            None if chunked => body.ends_with(b"0\r\n\r\n"),
            None => true,
        };
        if complete {
            break;
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed inside the response".into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = &buffer[head_end..];
    let (body_start, code) = if status == 200 {
        (Vec::new(), None)
    } else {
        let code = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("code")?.as_str().map(str::to_owned));
        (body[..body.len().min(300)].to_vec(), code)
    };
    Ok(RawResponse {
        status,
        body_len: body.len(),
        body_start,
        code,
        close,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Idle keep-alive connections, held until dropped.
pub struct IdleConnections {
    /// The open connections.
    pub streams: Vec<tokio_rustls::client::TlsStream<TcpStream>>,
    /// Connections that failed to open.
    pub failed: usize,
    /// The first failure.
    pub first_error: Option<String>,
    /// How long opening took.
    pub took: Duration,
}

/// Opens `count` mTLS connections (full handshakes, `parallel` at a time),
/// each with one request answered, and keeps them open; stops at `deadline`.
pub async fn open_idle(
    connector: tokio_rustls::TlsConnector,
    endpoint: Arc<Endpoint>,
    count: usize,
    parallel: usize,
    deadline: Duration,
) -> IdleConnections {
    let started = Instant::now();
    let stop_at = started + deadline;
    let mut streams = Vec::with_capacity(count);
    let mut failed = 0;
    let mut first_error = None;
    let mut opening = futures_util::stream::iter(0..count)
        .map(|_| {
            let connector = connector.clone();
            let endpoint = endpoint.clone();
            async move {
                if Instant::now() >= stop_at {
                    return Err("deadline reached before opening".to_owned());
                }
                match tokio::time::timeout(REQUEST_TIMEOUT, open_tls(&connector, &endpoint)).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err("timed out".to_owned()),
                }
            }
        })
        .buffer_unordered(parallel.max(1));
    while let Some(outcome) = opening.next().await {
        match outcome {
            Ok(stream) => streams.push(stream),
            Err(error) => {
                failed += 1;
                first_error.get_or_insert(error);
            }
        }
    }
    IdleConnections {
        streams,
        failed,
        first_error,
        took: started.elapsed(),
    }
}
