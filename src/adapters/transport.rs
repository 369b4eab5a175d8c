//! The HTTP transport shared by the adapter kinds.
//!
//! Order of the client stack, outermost first: the exchange's overall deadline
//! → retry (idempotent calls only, retryable failures only, with backoff) →
//! per-try deadline → bulkhead (fail fast when full, never queue) → the backend's
//! connections (plain HTTP: driven by the calling task, [`super::inline`]; TLS: hyper's
//! pooled client) → capped body read (Content-Length checked first, then the
//! stream counted, so an oversized answer is never buffered whole).
//!
//! Owns: the backend's connection pool and TLS, the backend URI of each call, the
//! classification of transport failures. Does not own: what a call means (the adapter
//! kinds), or whether a failure reaches the consumer and how (the gateway).
//!
//! The client is hyper's, not reqwest (decision 0014; decision 0017 for plain HTTP): the
//! backend address is fixed, so its scheme, authority and base path are split once here and a call's URI is
//! one string put together, not a URL parsed, joined and re-serialised. Deliberately:
//! - **no proxy from the environment**: `HTTP_PROXY`/`HTTPS_PROXY` are not read, so an
//!   inherited variable cannot route citizen data through a host the adapter file does
//!   not name;
//! - **no redirects**: a 3xx is the backend's answer, handed to the adapter kind;
//! - **TLS to `https://` backends** trusts the platform's roots through the same
//!   verifier reqwest used (`rustls-platform-verifier`), with aws-lc-rs; HTTP/2 only
//!   when the backend offers it by ALPN.

use super::{AdapterError, AdapterSpec, TransportCause};
use bytes::Bytes;
use http::header::{AUTHORIZATION, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// What a backend sent back.
#[derive(Debug)]
pub struct RawAnswer {
    /// HTTP status.
    pub status: u16,
    /// Body, at most the adapter's cap.
    pub body: Bytes,
}

/// One call's request, before the transport adds its own headers (`X-Road-Id`,
/// `Authorization`). Cheap to clone, so each try sends a fresh copy.
#[derive(Debug, Clone)]
pub struct Call {
    /// Backend method.
    pub method: Method,
    /// Backend URI, from [`Transport::endpoint`].
    pub uri: Uri,
    /// Extra headers (content type, SOAP action).
    pub headers: Vec<(http::HeaderName, HeaderValue)>,
    /// Body (empty: none).
    pub body: Bytes,
}

/// A pooled HTTP client with the adapter's limits.
#[derive(Debug)]
pub struct Transport {
    scheme: Scheme,
    authority: Authority,
    /// The address's path, ending with `/`.
    base_path: String,
    /// The address's own query, kept only when a call addresses the base itself.
    base_query: Option<String>,
    /// `Host`, rendered once: the address's host and its port unless it is the default.
    host: HeaderValue,
    health: Option<(Uri, HeaderValue)>,
    client: Client<Connector, Full<Bytes>>,
    /// For a plain `http://` backend: its connections, driven by the calling task
    /// (decision 0017). `https://` backends go through `client`.
    inline: Option<super::inline::Pool>,
    /// `Authorization: Bearer …`, rendered once (marked sensitive, so it is never logged
    /// by the HTTP stack) rather than formatted per call.
    bearer: Option<HeaderValue>,
    bulkhead: Arc<Semaphore>,
    timeout: Duration,
    retries: u32,
    max_response_bytes: usize,
}

/// Classifies a client error by walking its chain of sources, so the log can
/// tell DNS from a refused connection from TLS. `otherwise` is the cause when the
/// chain names none (a failure while reading the body is [`TransportCause::Body`]).
fn cause_of(
    error: &(dyn std::error::Error + 'static),
    otherwise: TransportCause,
) -> TransportCause {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut text = String::new();
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return TransportCause::Refused,
                std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof => return TransportCause::Reset,
                std::io::ErrorKind::TimedOut => return TransportCause::ConnectTimeout,
                _ => {}
            }
        }
        if current.downcast_ref::<rustls::Error>().is_some() {
            return TransportCause::Tls;
        }
        text.push_str(&current.to_string().to_ascii_lowercase());
        text.push(' ');
        source = current.source();
    }
    if text.contains("dns") || text.contains("resolve") || text.contains("lookup") {
        TransportCause::Dns
    } else if text.contains("tls") || text.contains("certificate") {
        TransportCause::Tls
    } else if text.contains("connect") && text.contains("timed out") {
        TransportCause::ConnectTimeout
    } else {
        otherwise
    }
}

pub(super) fn describe(
    error: &(dyn std::error::Error + 'static),
    otherwise: TransportCause,
) -> AdapterError {
    let cause = cause_of(error, otherwise);
    tracing::debug!(cause = cause.as_str(), error = %error, "backend call failed");
    AdapterError::Unavailable(cause)
}

/// The backend's TLS: the platform's roots, aws-lc-rs, TLS 1.2 and 1.3, and ALPN for
/// HTTP/2 and HTTP/1.1.
fn backend_tls(name: &str) -> Result<rustls::ClientConfig, String> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_platform_verifier())
        .map_err(|e| format!("adapter {name}: cannot set up TLS to the backend: {e}"))?
        .with_no_client_auth())
}

/// hyper's pooled client over plain TCP or TLS, keeping up to `max_idle` idle
/// connections (as many as calls may be in flight, so bursts do not churn connections
/// and leave sockets in TIME_WAIT).
fn pooled_client(
    name: &str,
    connect_timeout: Duration,
    max_idle: usize,
) -> Result<Client<Connector, Full<Bytes>>, String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(backend_tls(name)?)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(max_idle)
        // `Host` is rendered once per transport (see `Transport::host`), not formatted
        // from the URI on every call.
        .set_host(false)
        .build(connector))
}

/// The answer's `Content-Length`, when it declares one.
pub(super) fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Reads a body of at most `cap` bytes: `Limited` caps it (the caller's deadline ends a
/// slow one). One chunk (most answers) comes out of `to_bytes` without a copy.
pub(super) async fn collect_capped(
    body: hyper::body::Incoming,
    cap: usize,
) -> Result<Bytes, AdapterError> {
    #[allow(clippy::disallowed_methods)]
    let collect = http_body_util::Limited::new(body, cap).collect();
    match collect.await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(AdapterError::BodyTooLarge(cap))
        }
        Err(error) => Err(describe(&*error, TransportCause::Body)),
    }
}

/// The `Host` header of a URL: its host, and its port when not the scheme's default
/// (the URL parser already leaves a default port out).
fn host_header(url: &url::Url) -> Option<HeaderValue> {
    HeaderValue::from_str(&url[url::Position::BeforeHost..url::Position::AfterPort]).ok()
}

impl Transport {
    /// Builds the client for an adapter.
    pub fn new(spec: &AdapterSpec) -> Result<Self, String> {
        let name = &spec.name;
        let bearer = match &spec.credentials_env {
            None => None,
            Some(var) => {
                let token = std::env::var(var).map_err(|_| {
                    format!(
                        "adapter {name}: environment variable {var} (its credentials) is not set"
                    )
                })?;
                let mut value = HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| {
                    format!(
                        "adapter {name}: the token in {var} (its credentials) is not a valid header value"
                    )
                })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let client = pooled_client(name, spec.connect_timeout, spec.max_in_flight)?;
        let address = &spec.address;
        let scheme = match address.scheme() {
            "https" => Scheme::HTTPS,
            _ => Scheme::HTTP,
        };
        let authority = address[url::Position::BeforeHost..url::Position::AfterPort]
            .parse::<Authority>()
            .map_err(|_| format!("adapter {name}: the address has no usable host"))?;
        let mut base_path = address.path().to_owned();
        if !base_path.ends_with('/') {
            base_path.push('/');
        }
        let host = host_header(address)
            .ok_or_else(|| format!("adapter {name}: the address has no usable host"))?;
        let health = spec
            .health
            .as_ref()
            .map(|(url, _)| {
                let uri = url.as_str().parse::<Uri>().ok();
                uri.zip(host_header(url))
                    .ok_or_else(|| format!("adapter {name}: the health URL is not a URI"))
            })
            .transpose()?;
        let inline = (scheme == Scheme::HTTP).then(|| {
            let port = authority.port_u16().unwrap_or(80);
            super::inline::Pool::new(
                format!("{}:{port}", authority.host()),
                spec.connect_timeout,
                spec.max_in_flight,
            )
        });
        Ok(Transport {
            inline,
            scheme,
            authority,
            base_path,
            base_query: address.query().map(str::to_owned),
            host,
            health,
            client,
            bearer,
            bulkhead: Arc::new(Semaphore::new(spec.max_in_flight)),
            timeout: spec.timeout,
            retries: spec.retries,
            max_response_bytes: spec.max_response_bytes,
        })
    }

    /// The backend URI of `path` (relative to the adapter's address, already
    /// percent-encoded; empty: the address itself) with an optional encoded query.
    pub fn endpoint(&self, path: &str, query: Option<&str>) -> Result<Uri, AdapterError> {
        let relative = path.trim_start_matches('/');
        let mut target = String::with_capacity(
            self.base_path.len() + relative.len() + query.map_or(0, |q| q.len() + 1),
        );
        if relative.is_empty() {
            let base = self.base_path.trim_end_matches('/');
            target.push_str(if base.is_empty() { "/" } else { base });
        } else {
            target.push_str(&self.base_path);
            target.push_str(relative);
        }
        match (query, &self.base_query) {
            (Some(query), _) => {
                target.push('?');
                target.push_str(query);
            }
            (None, Some(own)) if relative.is_empty() => {
                target.push('?');
                target.push_str(own);
            }
            _ => {}
        }
        let path_and_query = PathAndQuery::from_maybe_shared(Bytes::from(target))
            .map_err(|_| AdapterError::Malformed("the backend path does not form a URI".into()))?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|_| AdapterError::Malformed("the backend path does not form a URI".into()))
    }

    fn request(&self, call: Call, message_id: &HeaderValue) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(call.body));
        *request.method_mut() = call.method;
        *request.uri_mut() = call.uri;
        let headers = request.headers_mut();
        headers.reserve(call.headers.len() + 3);
        headers.insert(http::header::HOST, self.host.clone());
        // A static header name: no parsing of "x-road-id" per call.
        headers.insert(crate::protocol::X_ROAD_ID, message_id.clone());
        if let Some(bearer) = &self.bearer {
            headers.insert(AUTHORIZATION, bearer.clone());
        }
        for (name, value) in call.headers {
            headers.insert(name, value);
        }
        request
    }

    /// Sends with retries and deadlines; each try sends a fresh copy of `call`.
    pub async fn execute(
        &self,
        call: Call,
        message_id: &str,
        idempotent: bool,
        deadline: Instant,
    ) -> Result<RawAnswer, AdapterError> {
        let message_id = HeaderValue::from_str(message_id)
            .map_err(|_| AdapterError::Malformed("the message id is not a header value".into()))?;
        let mut attempt = 0u32;
        loop {
            let outcome = self
                .try_once(self.request(call.clone(), &message_id), deadline)
                .await;
            let retry = match &outcome {
                Ok(answer) => matches!(answer.status, 502..=504),
                Err(error) => error.retryable(),
            };
            if !retry || !idempotent || attempt >= self.retries {
                return outcome;
            }
            attempt += 1;
            let backoff = Duration::from_millis(50 * u64::from(attempt));
            if Instant::now() + backoff >= deadline {
                return outcome;
            }
            metrics::counter!("datagate_adapter_retries_total").increment(1);
            tokio::time::sleep(backoff).await;
        }
    }

    async fn try_once(
        &self,
        request: Request<Full<Bytes>>,
        deadline: Instant,
    ) -> Result<RawAnswer, AdapterError> {
        let _permit = self
            .bulkhead
            .clone()
            .try_acquire_owned()
            .map_err(|_| AdapterError::Saturated)?;
        let now = Instant::now();
        if now >= deadline {
            return Err(AdapterError::Timeout);
        }
        let per_try = self.timeout.min(deadline - now);
        tokio::time::timeout(per_try, self.send(request))
            .await
            .unwrap_or(Err(AdapterError::Timeout))
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Result<RawAnswer, AdapterError> {
        if let Some(pool) = &self.inline {
            return self.send_inline(pool, request).await;
        }
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| describe(&e, TransportCause::Other))?;
        let status = response.status().as_u16();
        let cap = self.max_response_bytes;
        if declared_length(response.headers()).is_some_and(|len| len > cap as u64) {
            return Err(AdapterError::BodyTooLarge(cap));
        }
        let body = collect_capped(response.into_body(), cap).await?;
        Ok(RawAnswer { status, body })
    }

    /// A call to a plain-HTTP backend on a connection this task drives (decision 0017). A
    /// request that was never written because the backend had just closed the idle
    /// connection it took is sent once more on a new connection, whatever its method (as
    /// hyper-util's pool does): the backend never saw it.
    async fn send_inline(
        &self,
        pool: &super::inline::Pool,
        mut request: Request<Full<Bytes>>,
    ) -> Result<RawAnswer, AdapterError> {
        // Origin-form on the wire (`/path?query`): the connection is the backend's own.
        let origin = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *request.uri_mut() = Uri::from(origin);
        let mut conn = pool.checkout().await?;
        loop {
            match conn.call(request, self.max_response_bytes).await {
                Ok((status, body)) => {
                    pool.checkin(conn).await;
                    return Ok(RawAnswer { status, body });
                }
                Err(super::inline::Failed::Unsent(unsent, _)) if conn.reused() => {
                    request = *unsent;
                    conn = pool.connect().await?;
                }
                Err(super::inline::Failed::Unsent(_, error)) => {
                    return Err(describe(&error, TransportCause::Other));
                }
                Err(super::inline::Failed::Call(error)) => return Err(error),
            }
        }
    }

    /// One health probe: 2xx within the per-try deadline. Adapters without a health
    /// URL are healthy.
    pub async fn probe(&self) -> bool {
        let Some((uri, host)) = &self.health else {
            return true;
        };
        let mut request = Request::new(Full::new(Bytes::new()));
        *request.uri_mut() = uri.clone();
        request
            .headers_mut()
            .insert(http::header::HOST, host.clone());
        matches!(
            tokio::time::timeout(self.timeout, self.client.request(request)).await,
            Ok(Ok(response)) if response.status().is_success()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport(address: &str) -> Transport {
        transport_with(address, "")
    }

    /// A transport for `address`, with `settings` (adapter file lines) added.
    fn transport_with(address: &str, settings: &str) -> Transport {
        let raw: super::super::RawAdapter = toml::from_str(&format!(
            r#"
            name = "t"
            kind = "rest"
            address = "{address}"
            {settings}
            [[operations]]
            name = "get"
            method = "GET"
            path = "/{{id}}"
            [operations.rest]
            path = "/x/{{id}}"
            "#
        ))
        .expect("adapter file");
        let spec = super::super::AdapterSpec::validate(raw, std::path::Path::new("t.toml"))
            .expect("valid adapter");
        Transport::new(&spec).expect("transport")
    }

    async fn get(
        client: &Client<Connector, Full<Bytes>>,
        uri: &str,
    ) -> hyper_util::client::legacy::Error {
        let mut request = Request::new(Full::new(Bytes::new()));
        *request.uri_mut() = uri.parse().expect("uri");
        client.request(request).await.expect_err("the call fails")
    }

    /// Issue 7, finding 13: the log can tell a refused connection from a name that does
    /// not resolve.
    #[tokio::test]
    async fn transport_failures_keep_their_cause() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dead = listener.local_addr().expect("address");
        drop(listener);
        let client = pooled_client("t", Duration::from_secs(1), 4).expect("client");
        let refused = get(&client, &format!("http://{dead}/")).await;
        assert_eq!(
            cause_of(&refused, TransportCause::Other),
            TransportCause::Refused
        );
        assert!(matches!(
            describe(&refused, TransportCause::Other),
            AdapterError::Unavailable(TransportCause::Refused)
        ));
        let unresolvable = get(&client, "http://no-such-host.invalid/").await;
        assert_eq!(
            cause_of(&unresolvable, TransportCause::Other),
            TransportCause::Dns
        );
        // The same causes from the connections a plain-HTTP transport drives itself.
        assert!(matches!(
            call(&transport(&format!("http://{dead}")), "1").await,
            Err(AdapterError::Unavailable(TransportCause::Refused))
        ));
        assert!(matches!(
            call(&transport("http://no-such-host.invalid"), "1").await,
            Err(AdapterError::Unavailable(TransportCause::Dns))
        ));
    }

    /// No control fails open: an `https://` backend whose certificate the platform's
    /// roots do not vouch for is never spoken to, and the cause says TLS.
    #[cfg(feature = "dev")]
    #[tokio::test]
    async fn a_backend_certificate_the_platform_does_not_trust_is_refused() {
        let key = rcgen::KeyPair::generate().expect("key");
        let certificate = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![certificate.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            // The client must abort the handshake: no request ever arrives.
            acceptor.accept(stream).await.is_ok()
        });
        let client = pooled_client("t", Duration::from_secs(1), 4).expect("client");
        let error = get(&client, &format!("https://localhost:{port}/")).await;
        assert_eq!(cause_of(&error, TransportCause::Other), TransportCause::Tls);
        assert!(
            !server.await.expect("server task"),
            "the handshake must not complete"
        );
    }

    #[test]
    fn the_backend_uri_is_the_address_joined_with_the_encoded_path_and_query() {
        let api = transport("http://backend.internal:8080/api/v1");
        let uri = |t: &Transport, path: &str, query: Option<&str>| {
            t.endpoint(path, query).expect("uri").to_string()
        };
        assert_eq!(
            uri(&api, "/citizens/001", None),
            "http://backend.internal:8080/api/v1/citizens/001"
        );
        assert_eq!(
            uri(&api, "/citizens/a%20b", Some("year=2024&name=L%C3%AA")),
            "http://backend.internal:8080/api/v1/citizens/a%20b?year=2024&name=L%C3%AA"
        );
        assert_eq!(uri(&api, "", None), "http://backend.internal:8080/api/v1");
        // A first segment with a colon stays a path (a URL join would read a scheme).
        assert_eq!(
            uri(&api, "/urn:x/1", None),
            "http://backend.internal:8080/api/v1/urn:x/1"
        );
        let root = transport("https://backend.internal/");
        assert_eq!(uri(&root, "/x", None), "https://backend.internal/x");
        assert_eq!(uri(&root, "", None), "https://backend.internal/");
        let soap = transport("http://soap.internal/service.asmx?v=2");
        assert_eq!(
            uri(&soap, "", None),
            "http://soap.internal/service.asmx?v=2"
        );
        assert!(matches!(
            api.endpoint("/bad path", None),
            Err(AdapterError::Malformed(_))
        ));
    }

    /// How a test backend treats its connections after each answer.
    #[derive(Clone, Copy, PartialEq)]
    enum AfterAnswer {
        /// Keeps the connection open for the next request.
        KeepOpen,
        /// Closes it without saying so (as a backend's own keep-alive timeout does).
        CloseSilently,
        /// Says `Connection: close`, then closes.
        SayClose,
        /// Keeps it open for 300 ms (longer than a loaded machine stalls between the
        /// answer and its check-in), then closes it without saying so.
        CloseLater,
    }

    /// A plain-HTTP backend written against the socket (not hyper): answers each request
    /// head with `body`; counts the connections it accepted.
    async fn backend(
        after: AfterAnswer,
        body: &'static str,
    ) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = format!("http://{}", listener.local_addr().expect("address"));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buffer = [0u8; 4096];
                    loop {
                        let Ok(read) = socket.read(&mut buffer).await else {
                            return;
                        };
                        if read == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buffer[..read]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&seen[..end]).into_owned();
                            seen.drain(..end + 4);
                            assert!(
                                head.starts_with("GET /x/"),
                                "origin-form on the wire: {head}"
                            );
                            let close = if after == AfterAnswer::SayClose {
                                "Connection: close\r\n"
                            } else {
                                ""
                            };
                            let answer = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{close}Content-Length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if socket.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                            match after {
                                AfterAnswer::KeepOpen => {}
                                AfterAnswer::CloseLater => {
                                    tokio::time::sleep(Duration::from_millis(300)).await;
                                    return;
                                }
                                AfterAnswer::CloseSilently | AfterAnswer::SayClose => return,
                            }
                        }
                    }
                });
            }
        });
        (address, accepted)
    }

    async fn call(t: &Transport, id: &str) -> Result<RawAnswer, AdapterError> {
        let call = Call {
            method: Method::GET,
            uri: t.endpoint(&format!("/x/{id}"), None).expect("uri"),
            headers: Vec::new(),
            body: Bytes::new(),
        };
        t.execute(call, "msg-1", true, Instant::now() + Duration::from_secs(5))
            .await
    }

    /// Issue 12 (decision 0017): calls one after another to a plain-HTTP backend share one
    /// keep-alive connection, driven by the calling task.
    #[tokio::test]
    async fn calls_one_after_another_reuse_one_connection() {
        let (address, accepted) = backend(AfterAnswer::KeepOpen, r#"{"ok":true}"#).await;
        let t = transport(&address);
        for id in 0..5 {
            let answer = call(&t, &id.to_string()).await.expect("answer");
            assert_eq!(answer.status, 200);
            assert_eq!(&answer.body[..], br#"{"ok":true}"#);
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// Issue 12 (decision 0017): a connection the backend closed while it was idle, with or
    /// without saying so, is never the end of a call: the call goes out on a new one.
    #[tokio::test]
    async fn connections_the_backend_closes_are_replaced_not_failed() {
        for after in [AfterAnswer::CloseSilently, AfterAnswer::SayClose] {
            let (address, accepted) = backend(after, r#"{"ok":true}"#).await;
            let t = transport(&address);
            for id in 0..4 {
                let answer = call(&t, &id.to_string()).await.expect("answer");
                assert_eq!(answer.status, 200);
                // Give the backend's close time to arrive before the next call, sometimes.
                if id % 2 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 4);
        }
    }

    /// Issue 12 (decision 0017): an idle connection the backend closes while no call takes
    /// it is closed on our side too by the sweeper, not left in `CLOSE_WAIT`; one the
    /// backend keeps stays.
    #[tokio::test]
    async fn the_sweeper_closes_idle_connections_the_backend_closed() {
        for (after, left) in [(AfterAnswer::KeepOpen, 1), (AfterAnswer::CloseLater, 0)] {
            let (address, _) = backend(after, r#"{"ok":true}"#).await;
            let t = transport(&address);
            let pool = t
                .inline
                .as_ref()
                .expect("a plain-HTTP backend's own connections");
            call(&t, "1").await.expect("answer");
            assert_eq!(pool.idle_count(), 1, "kept after the answer");
            // The backend closes 300 ms after its answer; no call takes the connection.
            tokio::time::sleep(Duration::from_millis(700)).await;
            pool.sweep_once();
            assert_eq!(pool.idle_count(), left);
        }
    }

    /// An answer whose declared length is over the adapter's cap is refused unread, and its
    /// connection (with the body still in it) is never used again.
    #[tokio::test]
    async fn an_answer_over_the_cap_is_refused_and_its_connection_dropped() {
        const BIG: &str = r#"{"padding":"0123456789012345678901234567890123456789"}"#;
        let (address, accepted) = backend(AfterAnswer::KeepOpen, BIG).await;
        let t = transport_with(&address, "max_response_bytes = 16");
        for id in 0..2 {
            assert!(matches!(
                call(&t, &id.to_string()).await,
                Err(AdapterError::BodyTooLarge(16))
            ));
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    /// `Host` is the address's host with its port, and without the scheme's default port.
    #[test]
    fn every_call_carries_the_host_and_the_message_id() {
        let id = HeaderValue::from_static("msg-1");
        for (address, host) in [
            ("http://backend.internal:8080/api", "backend.internal:8080"),
            ("https://backend.internal:443/api", "backend.internal"),
            ("http://127.0.0.1:18081", "127.0.0.1:18081"),
        ] {
            let t = transport(address);
            let call = Call {
                method: Method::GET,
                uri: t.endpoint("/x", None).expect("uri"),
                headers: Vec::new(),
                body: Bytes::new(),
            };
            let request = t.request(call, &id);
            assert_eq!(request.headers()[http::header::HOST], host, "{address}");
            assert_eq!(request.headers()[crate::protocol::X_ROAD_ID], "msg-1");
            assert!(request.headers().get(AUTHORIZATION).is_none());
        }
    }
}
