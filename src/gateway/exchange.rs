//! The consumer-facing exchange pipeline.
//!
//! [`handle`] is the one place that turns an exchange into a response: it runs
//! the phases of [`run`] under the exchange deadline, renders any
//! [`GatewayError`] as problem+json, journals the outcome **before** the
//! response leaves, and records metrics. The phases, in order, and why there:
//!
//! 1. message id: taken or generated first, so every answer and log line carries it;
//! 2. load shedding: refuse at once when too many exchanges are in flight (never queue);
//! 3. identity: `X-Road-Client` must be registered to the peer's certificate;
//!    before any contract work, so strangers learn nothing about contracts;
//! 4. contract: deny by default; purpose and validity window;
//! 5. quota: after the contract, because the quota is the contract's;
//! 6. body: read (capped) only now, so refused requests cost no body read;
//! 7. request schema: before any backend is touched;
//! 8. adapter call, under the exchange deadline;
//! 9. response schema, then projection to the allowed fields, then headers.

use super::{Gateway, Runtime};
use crate::adapters::AdapterRequest;
use crate::contract::{CompiledContract, SubjectRef};
use crate::error::{ErrorCode, GatewayError};
use crate::journal::ExchangeRecord;
use crate::protocol::{
    self, X_CONTRACT_ID, X_PURPOSE, X_ROAD_ID, X_ROAD_REQUEST_HASH, X_ROAD_SERVICE,
};
use crate::trust::PeerCertificate;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header, request::Parts};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::time::Instant;

/// What the phases learn, for the journal and the metrics.
#[derive(Debug, Default)]
struct Facts {
    client: Option<String>,
    authenticated_client: Option<String>,
    service: Option<String>,
    operation: Option<String>,
    purpose: Option<String>,
    contract_id: Option<String>,
    request_out_at: Option<OffsetDateTime>,
    response_in_at: Option<OffsetDateTime>,
    request_bytes: u64,
    /// The request body, once read (kept for the journal's keyed digest).
    request_body: bytes::Bytes,
    subject_digest: Option<String>,
}

/// Serves one exchange.
pub async fn handle(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let started = Instant::now();
    let request_in_at = OffsetDateTime::now_utc();
    let (parts, body) = request.into_parts();
    let peer = parts.extensions.get::<PeerCertificate>().cloned();
    let mut facts = Facts::default();
    let runtime = gateway.runtime();

    // An unusable caller id is refused, but the refusal still gets an id of its own
    // so the answer, the log line and the journal record can be matched.
    let (message_id, refusal) = match protocol::message_id(parts.headers.get(X_ROAD_ID)) {
        Ok(id) => (id, None),
        Err(error) => (uuid::Uuid::new_v4().to_string(), Some(error)),
    };
    let outcome = match refusal {
        Some(error) => Err(error),
        None => match gateway.in_flight.clone().try_acquire_owned() {
            Err(_) => Err(GatewayError::new(
                ErrorCode::GatewayOverloaded,
                "too many exchanges in flight; try again shortly",
            )),
            Ok(_permit) => {
                let deadline = started + runtime.limits.request_timeout;
                match tokio::time::timeout_at(
                    deadline,
                    run(
                        &gateway,
                        &runtime,
                        peer.as_ref(),
                        &parts,
                        body,
                        &message_id,
                        deadline,
                        &mut facts,
                    ),
                )
                .await
                {
                    Ok(outcome) => outcome,
                    Err(_) => Err(GatewayError::new(
                        ErrorCode::GatewayTimeout,
                        "the exchange did not complete within the node's deadline",
                    )),
                }
            }
        },
    };

    let journaling = gateway.journal().is_enabled();
    let (mut response, response_body_len, response_digest, error_code) = match outcome {
        Ok((response, bytes)) => {
            let digest = journaling.then(|| gateway.journal().digest(&[&bytes]));
            (response, bytes.len() as u64, digest, None)
        }
        Err(error) => {
            let code = error.code();
            if code.origin() != crate::error::Origin::Consumer {
                tracing::warn!(
                    code = code.as_str(),
                    detail = error.detail(),
                    "exchange failed"
                );
            }
            (error.into_problem(Some(&message_id)), 0, None, Some(code))
        }
    };

    if journaling {
        let record = ExchangeRecord {
            message_id: message_id.clone(),
            client: facts.client.clone(),
            service: facts.service.clone(),
            method: parts.method.to_string(),
            operation: facts.operation.clone(),
            purpose: facts.purpose.clone(),
            contract_id: facts.contract_id.clone(),
            peer_fingerprint: peer.map(|p| p.fingerprint_sha256),
            status: response.status().as_u16(),
            error_code: error_code.map(|c| c.as_str().to_owned()),
            request_in_at,
            request_out_at: facts.request_out_at,
            response_in_at: facts.response_in_at,
            response_out_at: OffsetDateTime::now_utc(),
            request_bytes: facts.request_bytes,
            response_bytes: response_body_len,
            request_digest: gateway.journal().digest(&[
                parts.method.as_str().as_bytes(),
                request_target(&parts),
                &facts.request_body,
            ]),
            response_digest,
            subject_digest: facts.subject_digest.clone(),
        };
        // Invariant 3: journaled before acknowledged. A journal failure turns the
        // answer into 503 so the consumer never holds data the journal lacks.
        if let Err(error) = gateway.journal().append(record).await {
            tracing::error!(error = %error, "journal append failed; refusing to answer");
            response = GatewayError::new(
                ErrorCode::JournalUnavailable,
                "the exchange could not be journaled",
            )
            .into_problem(Some(&message_id));
        }
    }

    let status = response.status().as_u16().to_string();
    let consumer = facts
        .authenticated_client
        .unwrap_or_else(|| "unauthenticated".into());
    let service = facts
        .contract_id
        .as_ref()
        .and(facts.service)
        .unwrap_or_else(|| "unknown".into());
    let elapsed = started.elapsed().as_secs_f64();
    metrics::counter!("datagate_requests_total", "service" => service.clone(), "consumer" => consumer, "status" => status.clone()).increment(1);
    metrics::histogram!("datagate_request_duration_seconds", "service" => service).record(elapsed);
    tracing::info!(
        message_id = %message_id,
        status = %status,
        code = error_code.map(|c| c.as_str()).unwrap_or("-"),
        contract = facts.contract_id.as_deref().unwrap_or("-"),
        elapsed_ms = elapsed * 1000.0,
        "exchange"
    );
    response
}

/// The request target (path and query) as sent, borrowed: what the digests cover.
fn request_target(parts: &Parts) -> &[u8] {
    parts
        .uri
        .path_and_query()
        .map_or(b"/".as_slice(), |target| target.as_str().as_bytes())
}

/// Renders the request document the request schema validates.
fn request_document(
    params: &std::collections::BTreeMap<String, String>,
    query: Option<&str>,
    body: Option<&serde_json::Value>,
) -> serde_json::Value {
    let query: serde_json::Map<String, serde_json::Value> = query
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
                .collect()
        })
        .unwrap_or_default();
    let mut document = serde_json::json!({ "path": params, "query": query });
    if let Some(body) = body {
        document["body"] = body.clone();
    }
    document
}

fn subject_value(
    contract: &CompiledContract,
    params: &std::collections::BTreeMap<String, String>,
    body: Option<&serde_json::Value>,
) -> Option<String> {
    match contract.subject.as_ref()? {
        SubjectRef::Path(name) => params.get(name).cloned(),
        SubjectRef::Body(pointer) => body?.pointer(pointer).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
    }
}

async fn read_body(parts: &Parts, body: Body, limit: usize) -> Result<bytes::Bytes, GatewayError> {
    let too_large = || {
        GatewayError::new(
            ErrorCode::RequestBodyTooLarge,
            format!("the request body exceeds {limit} bytes"),
        )
    };
    if parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|len| len > limit as u64)
    {
        return Err(too_large());
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(_) => Err(GatewayError::new(
            ErrorCode::RequestBodyInvalid,
            "the request body could not be read",
        )),
    }
}

fn parse_body(parts: &Parts, bytes: &[u8]) -> Result<Option<serde_json::Value>, GatewayError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let is_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|v| v == "application/json" || v.ends_with("+json"));
    if !is_json {
        return Err(GatewayError::new(
            ErrorCode::RequestBodyInvalid,
            "a request body must be JSON with Content-Type: application/json",
        ));
    }
    serde_json::from_slice(bytes).map(Some).map_err(|e| {
        GatewayError::new(
            ErrorCode::RequestBodyInvalid,
            format!(
                "the request body is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })
}

#[allow(clippy::too_many_arguments)]
async fn run(
    gateway: &Gateway,
    runtime: &Runtime,
    peer: Option<&PeerCertificate>,
    parts: &Parts,
    body: Body,
    message_id: &str,
    deadline: Instant,
    facts: &mut Facts,
) -> Result<(Response, bytes::Bytes), GatewayError> {
    let now = OffsetDateTime::now_utc();
    let path = parts.uri.path();
    let query = parts.uri.query();

    // Identity.
    let target = protocol::parse_target(path)?;
    facts.service = Some(target.service.to_string());
    let client = protocol::parse_client(parts.headers.get(protocol::X_ROAD_CLIENT))?;
    facts.client = Some(client.to_string());
    let peer = peer.ok_or_else(|| {
        GatewayError::new(
            ErrorCode::TrustCertificateMissing,
            "a client certificate is required",
        )
    })?;
    runtime
        .registry
        .authorise(&peer.fingerprint_sha256, &client, now)?;
    facts.authenticated_client = facts.client.clone();

    // Contract.
    let purpose = match parts.headers.get(X_PURPOSE) {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| {
            GatewayError::new(
                ErrorCode::ContractPurposeNotAllowed,
                "X-Purpose is not ASCII",
            )
        })?),
    };
    // Journal the purpose only when it has the shape of a purpose code, so free text never lands there.
    facts.purpose = purpose
        .filter(|p| {
            !p.is_empty()
                && p.len() <= 64
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
        .map(str::to_owned);
    let grant = runtime.contracts.authorise(
        &client,
        &target.service,
        &parts.method,
        &target.path,
        purpose,
        now,
    )?;
    let contract = grant.contract;
    facts.contract_id = Some(contract.id.clone());

    // Quota.
    contract.take_quota(now)?;

    // Route to the adapter operation.
    let backend = runtime.services.get(&target.service).ok_or_else(|| {
        GatewayError::new(
            ErrorCode::ServiceUnknown,
            "this node does not serve that service",
        )
    })?;
    let (operation, params) = backend
        .adapter
        .spec
        .route(&parts.method, &target.path)
        .ok_or_else(|| {
            GatewayError::new(
                ErrorCode::ServiceUnknown,
                "the service offers no such operation",
            )
        })?;
    facts.operation = Some(operation.name.clone());

    // Body and request schema.
    let bytes = read_body(parts, body, runtime.limits.request_body_bytes).await?;
    facts.request_bytes = bytes.len() as u64;
    facts.request_body = bytes.clone();
    let json_body = parse_body(parts, &bytes)?;
    if gateway.journal().is_enabled()
        && let Some(subject) = subject_value(&contract, &params, json_body.as_ref())
    {
        facts.subject_digest = Some(gateway.journal().digest(&[b"subject", subject.as_bytes()]));
    }
    if contract.request_schema.is_some() {
        contract.validate_request(&request_document(&params, query, json_body.as_ref()))?;
    }

    // Backend call.
    facts.request_out_at = Some(OffsetDateTime::now_utc());
    let upstream_started = Instant::now();
    let answer = backend
        .adapter
        .call(AdapterRequest {
            operation: &operation,
            params: &params,
            query,
            body: json_body.as_ref(),
            message_id,
            deadline,
        })
        .await;
    facts.response_in_at = Some(OffsetDateTime::now_utc());
    metrics::histogram!("datagate_upstream_duration_seconds", "adapter" => backend.adapter.spec.name.clone())
        .record(upstream_started.elapsed().as_secs_f64());
    let answer = answer.map_err(|error| error.to_gateway_error())?;

    // Response schema and projection. A pass-through contract (whole answer, no
    // response schema) forwards the backend's bytes once they are known to be JSON.
    let to_error = |error: crate::adapters::AdapterError| error.to_gateway_error();
    let body = if contract.response_schema.is_none() && contract.projection.is_whole_document() {
        answer.record.into_json_bytes().map_err(to_error)?
    } else {
        let record = answer.record.into_value().map_err(to_error)?;
        contract.validate_response(&record)?;
        let projected = contract.projection.apply(record);
        bytes::Bytes::from(serde_json::to_vec(&projected).map_err(|_| {
            GatewayError::new(
                ErrorCode::InternalUnexpected,
                "the answer could not be serialised",
            )
        })?)
    };
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.clone(),
    )
        .into_response();
    let headers = response.headers_mut();
    let mut request_hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in [
        parts.method.as_str().as_bytes(),
        request_target(parts),
        &bytes,
    ] {
        request_hash.update(&(part.len() as u64).to_be_bytes());
        request_hash.update(part);
    }
    let request_hash = request_hash.finish();
    if let Ok(value) = HeaderValue::from_str(&crate::base::hex::encode(request_hash.as_ref())) {
        headers.insert(X_ROAD_REQUEST_HASH, value);
    }
    if let Ok(value) = HeaderValue::from_str(message_id) {
        headers.insert(X_ROAD_ID, value);
    }
    if let Ok(value) = HeaderValue::from_str(&target.service.to_string()) {
        headers.insert(X_ROAD_SERVICE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&contract.id) {
        headers.insert(X_CONTRACT_ID, value);
    }
    Ok((response, body))
}

#[cfg(test)]
mod tests {
    //! In-memory tests through the consumer router with `oneshot`: no socket, no TLS.
    use super::*;
    use crate::gateway::server::consumer_router;
    use tower::ServiceExt;

    async fn gateway() -> (Arc<Gateway>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = crate::journal::sqlite::SqliteJournal::open(&dir.path().join("j.sqlite"))
            .await
            .expect("journal");
        let runtime = Runtime {
            member: "VN/GOV/000.00.00.G10".parse().expect("member"),
            registry: Default::default(),
            contracts: Default::default(),
            services: Default::default(),
            backends: Default::default(),
            limits: crate::config::Limits {
                request_body_bytes: 1024,
                request_timeout: std::time::Duration::from_secs(5),
                max_concurrent_requests: 8,
                shutdown_grace: std::time::Duration::from_secs(1),
            },
        };
        (
            Gateway::new(runtime, crate::journal::Journal::start(store, &[7; 32])),
            dir,
        )
    }

    async fn problem(request: axum::http::Request<Body>) -> (u16, serde_json::Value, String) {
        let (gateway, _dir) = gateway().await;
        let response = consumer_router(gateway)
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status().as_u16();
        let id = response.headers()[X_ROAD_ID]
            .to_str()
            .expect("ascii")
            .to_owned();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            serde_json::from_slice(&body).expect("problem json"),
            id,
        )
    }

    #[tokio::test]
    async fn paths_outside_r1_are_not_found() {
        let request = axum::http::Request::get("/admin")
            .body(Body::empty())
            .expect("request");
        let (status, body, id) = problem(request).await;
        assert_eq!(status, 404);
        assert_eq!(body["code"], "request.route_not_found");
        assert_eq!(body["messageId"], id);
    }

    #[tokio::test]
    async fn request_without_a_verified_certificate_is_unauthorised() {
        let request = axum::http::Request::get("/r1/VN/GOV/000.00.00.G10/population-db/citizen/1")
            .header("x-road-client", "VN/GOV/000.00.00.H29/dvc-portal")
            .header("x-road-id", "caller-chosen-id")
            .body(Body::empty())
            .expect("request");
        let (status, body, id) = problem(request).await;
        assert_eq!(status, 401);
        assert_eq!(body["code"], "trust.certificate_missing");
        assert_eq!(id, "caller-chosen-id");
    }

    #[tokio::test]
    async fn malformed_client_header_is_a_bad_request() {
        let request = axum::http::Request::get("/r1/VN/GOV/000.00.00.G10/population-db/citizen/1")
            .header("x-road-client", "not-a-client")
            .body(Body::empty())
            .expect("request");
        let (status, body, _) = problem(request).await;
        assert_eq!(status, 400);
        assert_eq!(body["code"], "request.client_invalid");
        assert!(!body.to_string().contains("not-a-client"));
    }
}
