//! The HTTP transport shared by the adapter kinds.
//!
//! Order of the client stack, outermost first: the exchange's overall deadline
//! → retry (idempotent calls only, retryable failures only, with backoff) →
//! per-try deadline → bulkhead (fail fast when full, never queue) → reqwest's
//! pooled client → capped body read (Content-Length checked first, then the
//! stream counted, so an oversized answer is never buffered whole).

use super::{AdapterError, AdapterSpec, TransportCause};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// What a backend sent back.
#[derive(Debug)]
pub struct RawAnswer {
    /// HTTP status.
    pub status: u16,
    /// Body, at most the adapter's cap.
    pub body: Bytes,
}

/// A pooled HTTP client with the adapter's limits.
#[derive(Debug)]
pub struct Transport {
    address: url::Url,
    client: reqwest::Client,
    /// `Authorization: Bearer …`, rendered once (marked sensitive, so it is never logged
    /// by the HTTP stack) rather than formatted per call.
    bearer: Option<reqwest::header::HeaderValue>,
    bulkhead: Arc<Semaphore>,
    timeout: Duration,
    retries: u32,
    max_response_bytes: usize,
}

/// Classifies a client error by walking its chain of sources, so the log can
/// tell DNS from a refused connection from TLS.
fn cause_of(error: &reqwest::Error) -> TransportCause {
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
    } else if error.is_connect() && text.contains("timed out") {
        TransportCause::ConnectTimeout
    } else if error.is_body() || error.is_decode() {
        TransportCause::Body
    } else {
        TransportCause::Other
    }
}

fn describe(error: &reqwest::Error) -> AdapterError {
    if error.is_timeout() && !error.is_connect() {
        return AdapterError::Timeout;
    }
    let cause = cause_of(error);
    tracing::debug!(cause = cause.as_str(), error = %error, "backend call failed");
    AdapterError::Unavailable(cause)
}

impl Transport {
    /// Builds the client for an adapter.
    pub fn new(spec: &AdapterSpec) -> Result<Self, String> {
        let bearer = match &spec.credentials_env {
            None => None,
            Some(var) => {
                let token = std::env::var(var).map_err(|_| {
                    format!(
                        "adapter {}: environment variable {var} (its credentials) is not set",
                        spec.name
                    )
                })?;
                let mut value = reqwest::header::HeaderValue::try_from(format!("Bearer {token}"))
                    .map_err(|_| {
                        format!(
                            "adapter {}: the token in {var} (its credentials) is not a valid header value",
                            spec.name
                        )
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let client = reqwest::Client::builder()
            .connect_timeout(spec.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            // Keep as many idle connections as calls may be in flight, so bursts do not
            // churn connections (and leave sockets in TIME_WAIT).
            .pool_max_idle_per_host(spec.max_in_flight)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("adapter {}: cannot build HTTP client: {e}", spec.name))?;
        let mut address = spec.address.clone();
        if !address.path().ends_with('/') {
            let path = format!("{}/", address.path());
            address.set_path(&path);
        }
        Ok(Transport {
            address,
            client,
            bearer,
            bulkhead: Arc::new(Semaphore::new(spec.max_in_flight)),
            timeout: spec.timeout,
            retries: spec.retries,
            max_response_bytes: spec.max_response_bytes,
        })
    }

    /// The backend URL of `path` (relative to the adapter's address; empty: the address).
    pub fn endpoint(&self, path: &str) -> Result<url::Url, AdapterError> {
        let relative = path.trim_start_matches('/');
        if relative.is_empty() {
            let mut url = self.address.clone();
            let trimmed = url.path().trim_end_matches('/').to_owned();
            url.set_path(&trimmed);
            return Ok(url);
        }
        self.address
            .join(relative)
            .map_err(|_| AdapterError::Malformed("the backend path does not form a URL".into()))
    }

    /// A request builder with credentials and the message id set.
    pub fn request(
        &self,
        method: reqwest::Method,
        url: url::Url,
        message_id: &str,
    ) -> reqwest::RequestBuilder {
        // A static header name: no parsing of "x-road-id" per call.
        let mut builder = self
            .client
            .request(method, url)
            .header(crate::protocol::X_ROAD_ID, message_id);
        if let Some(bearer) = &self.bearer {
            builder = builder.header(reqwest::header::AUTHORIZATION, bearer.clone());
        }
        builder
    }

    /// Sends with retries and deadlines; `build` makes a fresh request for each try.
    pub async fn execute(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
        idempotent: bool,
        deadline: Instant,
    ) -> Result<RawAnswer, AdapterError> {
        let mut attempt = 0u32;
        loop {
            let outcome = self.try_once(build(), deadline).await;
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
        request: reqwest::RequestBuilder,
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

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<RawAnswer, AdapterError> {
        let mut response = request.send().await.map_err(|e| describe(&e))?;
        let status = response.status().as_u16();
        let cap = self.max_response_bytes;
        if response
            .content_length()
            .is_some_and(|len| len > cap as u64)
        {
            return Err(AdapterError::BodyTooLarge(cap));
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
            if body.len() + chunk.len() > cap {
                return Err(AdapterError::BodyTooLarge(cap));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(RawAnswer {
            status,
            body: body.freeze(),
        })
    }

    /// One health probe: 2xx within the per-try deadline.
    pub async fn probe(&self, url: &url::Url) -> bool {
        let request = self.client.get(url.clone());
        matches!(
            tokio::time::timeout(self.timeout, request.send()).await,
            Ok(Ok(response)) if response.status().is_success()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 7, finding 13: the log can tell a refused connection from a name that does
    /// not resolve.
    #[tokio::test]
    async fn transport_failures_keep_their_cause() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dead = listener.local_addr().expect("address");
        drop(listener);
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let refused = client
            .get(format!("http://{dead}/"))
            .send()
            .await
            .expect_err("nothing listens");
        assert_eq!(cause_of(&refused), TransportCause::Refused);
        let unresolvable = client
            .get("http://no-such-host.invalid/")
            .send()
            .await
            .expect_err("the name does not resolve");
        assert_eq!(cause_of(&unresolvable), TransportCause::Dns);
        assert!(matches!(
            describe(&refused),
            AdapterError::Unavailable(TransportCause::Refused)
        ));
    }
}
