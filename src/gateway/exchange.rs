//! The exchange pipeline, shared by the consumer listener (a member's information
//! systems) and the exchange listener (other gateways: [`Arrival`]).
//!
//! [`exchange`] is the one place that turns an exchange into a response: it parses
//! the request head once into a typed [`ExchangeContext`], runs the phases under the
//! exchange deadline, renders any [`GatewayError`] as problem+json, seals the answer
//! between gateways ([`super::inbound::seal`]), journals the outcome **before** the
//! response leaves, and records metrics. The phases, in order, and why there:
//!
//! 1. message id: taken or generated first, so every answer and log line carries it
//!    (a repeated or invalid `X-Road-Id` is refused, under a fresh id);
//! 2. head: size limits of the target and headers, repeated protocol headers,
//!    the canonical `/r1` target, `X-Road-Client`, `X-Purpose`: all parsed once,
//!    before anything is looked up, so malformed requests cost nothing more;
//! 3. identity: on the consumer listener the peer's certificate must be a registered
//!    information system bound to the subsystem in `X-Road-Client`; on the exchange
//!    listener the request's signature must be a registered secure server's of that
//!    member ([`super::inbound::authenticate`]); from here on the **authenticated**
//!    client is what limits, shares and metric labels are keyed on;
//! 4. admission: the node's hard cap and this consumer's share of it, refused at once;
//!    under overload, a wait (newest first, bounded) for the running limit the overload
//!    control sets ([`super::admission`], decision 0016); after identity so a share is
//!    per authenticated consumer;
//! 5. contract: deny by default; purpose and validity window (for another member's
//!    service: the owner's published copy, [`super::publication`]);
//! 6. quota: after the contract, because the quota is the contract's;
//! 7. provider and route ([`super::provider`]): a local adapter operation and only its
//!    declared query parameters, or the provider's gateway;
//! 8. body: read (capped, under the receive deadline) only now, so refused requests
//!    cost no body read and a slow sender gets 408, not the exchange deadline; between
//!    gateways its digest is checked and its JWE opened;
//! 9. request schema: before any backend is touched;
//! 10. the provider's answer, under the exchange deadline;
//! 11. response schema, then projection to the allowed fields, then headers.

use super::admission::Ticket;
use super::context::{ExchangeContext, Leg, Peer};
use super::provider::Provider;
use super::{Gateway, Runtime};
use crate::contract::{CompiledContract, SubjectRef};
use crate::error::{ErrorCode, GatewayError, Origin};
use crate::journal::ExchangeRecord;
use crate::protocol::{
    self, Purpose, X_CITIZEN_ASSERTION, X_CONTRACT_ID, X_PURPOSE, X_ROAD_ID, X_ROAD_ISSUE,
    X_ROAD_REQUEST_HASH, X_ROAD_SERVICE, X_ROAD_USER_ID,
};
use crate::trust::PeerCertificate;
use axum::body::{Body, HttpBody as _};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header, request::Parts};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use std::sync::Arc;
use tokio::time::Instant;

/// The listener an exchange arrived on: it decides how the peer is authenticated and
/// how the request's body and the answer are protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// A member's information system on the consumer listener (mTLS, registry).
    Consumer,
    /// Another gateway or a hub on the exchange listener (mTLS, message signature,
    /// encrypted body).
    Exchange,
}

/// Serves one exchange of the consumer listener on a task of its own, so that a
/// caller who goes away (a closed connection, an HTTP/2 stream reset) cannot cancel
/// it half-way: once admitted, an exchange keeps its place in the consumer's share
/// until its provider call is over, and is journaled, counted and logged like any other.
pub async fn handle(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    spawn_exchange(gateway, request, Arrival::Consumer).await
}

/// Whether the consumer router would hand `request` to its fallback, [`handle`]: a path
/// under `/r1/` whose fifth segment is not a metadata call's code (the metadata calls are
/// the consumer router's only routes under `/r1/`, see
/// [`super::server::consumer_router`]), with any method but HEAD (the router strips the
/// body of a HEAD answer). The consumer listener serves these without routing; the answer
/// is the same.
pub(super) fn routes_to_exchange(request: &Request) -> bool {
    if request.method() == axum::http::Method::HEAD {
        return false;
    }
    let Some(rest) = request.uri().path().strip_prefix("/r1/") else {
        return false;
    };
    !rest
        .split('/')
        .nth(4)
        .is_some_and(|code| protocol::METADATA_SERVICE_CODES.contains(&code))
}

/// Runs [`exchange`] on its own task (see [`handle`]).
pub(super) async fn spawn_exchange(
    gateway: Arc<Gateway>,
    request: Request,
    arrival: Arrival,
) -> Response {
    // Boxed: the exchange's state machine is many kilobytes, and a task holds its future by
    // value, so every move and every stage change of the task (spawn, completion, reading the
    // output) would copy all of it; boxed, they copy a pointer (issue 12: a callgrind count
    // showed about 240 KB of `memcpy` per request before).
    let task = tokio::spawn(Box::pin(exchange(gateway, request, arrival)));
    match task.await {
        Ok(response) => response,
        // A panic in the pipeline: the task is gone, the answer is still ours.
        Err(_) => GatewayError::new(
            ErrorCode::InternalUnexpected,
            "the node failed unexpectedly",
        )
        .into_problem(None),
    }
}

/// The warnings of failed exchanges, one throttle per code.
static FAILURE_WARNINGS: crate::observe::ThrottledByCode = crate::observe::ThrottledByCode::new();

/// One exchange, from the request to the journaled answer.
async fn exchange(gateway: Arc<Gateway>, request: Request, arrival: Arrival) -> Response {
    let started = Instant::now();
    let request_in_at = gateway.clock().now();
    let (parts, body) = request.into_parts();
    let certificate = parts.extensions.get::<PeerCertificate>().cloned();
    let runtime = gateway.runtime();

    // An unusable caller id is refused, but the refusal still gets an id of its own
    // so the answer, the log line and the journal record can be matched.
    let (message_id, refusal) =
        match protocol::single_header(&parts.headers, &X_ROAD_ID).and_then(protocol::message_id) {
            Ok(id) => (id, None),
            Err(error) => (uuid::Uuid::new_v4().to_string(), Some(error)),
        };
    let mut context: Option<ExchangeContext> = None;
    let outcome = match refusal {
        Some(error) => Err(error),
        None => {
            admit_and_run(
                &gateway,
                &runtime,
                certificate.as_ref(),
                &parts,
                body,
                message_id.clone(),
                started,
                arrival,
                &mut context,
            )
            .await
        }
    };

    let journaling = gateway.journal().is_enabled();
    let (head, body, response_digest, error_code) = match outcome {
        Ok((response, bytes)) => {
            let digest = journaling.then(|| gateway.journal().digest(&[&bytes]));
            let (head, _) = response.into_parts();
            (head, bytes, digest, None)
        }
        Err(error) => {
            let code = error.code();
            // The caller's own faults are not the node's: they never reach WARN.
            if code.origin() == Origin::Consumer {
                tracing::debug!(code = code.as_str(), "exchange refused");
            } else if let Some(occurrences) = FAILURE_WARNINGS.occurrence(code) {
                // At most one line per code and second: a node shedding thousands of
                // requests a second (or a backend down) writes one, with the count.
                tracing::warn!(
                    code = code.as_str(),
                    detail = error.detail(),
                    occurrences,
                    "exchange failed"
                );
            }
            let (head, bytes) = error.into_problem_parts(Some(&message_id));
            (head, bytes, None, Some(code))
        }
    };
    let response_body_len = if error_code.is_none() {
        body.len() as u64
    } else {
        0
    };
    // Between gateways every answer, refusals included, is signed over the request's
    // signature, and a data answer is encrypted for the consumer's gateway.
    let mut response = match (arrival, context.as_ref()) {
        (Arrival::Exchange, Some(ctx)) => super::inbound::seal(&gateway, ctx, head, body),
        _ => Response::from_parts(head, Body::from(body)),
    };

    if journaling {
        let ctx = context.as_ref();
        let target = ctx
            .and_then(|ctx| ctx.trail.canonical_target.as_deref())
            .map_or_else(|| raw_target(&parts), str::as_bytes);
        let empty = bytes::Bytes::new();
        let request_body = ctx.map_or(&empty, |ctx| &ctx.trail.request_body);
        let record = ExchangeRecord {
            message_id: message_id.clone(),
            // The authenticated subsystem once the peer was vouched for; before that
            // (refusals), the subsystem the caller claimed.
            client: ctx.map(|ctx| ctx.client.to_string()),
            service: ctx.map(|ctx| ctx.target.service_text().to_owned()),
            method: parts.method.to_string(),
            operation: ctx.and_then(|ctx| ctx.trail.operation.clone()),
            purpose: ctx.and_then(|ctx| ctx.purpose.as_ref().map(|p| p.as_str().to_owned())),
            contract_id: ctx.and_then(|ctx| ctx.trail.contract.as_ref().map(|c| c.id.clone())),
            peer_fingerprint: certificate.map(|p| p.fingerprint_sha256),
            status: response.status().as_u16(),
            error_code: error_code.map(|c| c.as_str().to_owned()),
            request_in_at,
            request_out_at: ctx.and_then(|ctx| ctx.trail.request_out_at),
            response_in_at: ctx.and_then(|ctx| ctx.trail.response_in_at),
            response_out_at: gateway.clock().now(),
            request_bytes: request_body.len() as u64,
            response_bytes: response_body_len,
            request_digest: gateway.journal().digest(&[
                parts.method.as_str().as_bytes(),
                target,
                request_body,
            ]),
            response_digest,
            subject_digest: ctx.and_then(|ctx| ctx.trail.subject_digest.clone()),
            leg: ctx
                .map_or(
                    match arrival {
                        Arrival::Consumer => Leg::Local,
                        Arrival::Exchange => Leg::ProviderSide,
                    },
                    |ctx| ctx.leg,
                )
                .as_str(),
            signature_digest: ctx.and_then(|ctx| {
                ctx.trail
                    .request_signature
                    .as_deref()
                    .map(|signature| crate::journal::plain_digest(signature.as_bytes()))
            }),
            remote_key_id: ctx.and_then(|ctx| ctx.trail.remote_key_id.clone()),
            key_id: gateway.journal().key_id().to_owned(),
        };
        // Invariant 3: journaled before acknowledged. A journal failure turns the
        // answer into 503 so the consumer never holds data the journal lacks.
        if let Err(error) = gateway.journal().append(record).await {
            tracing::error!(error = %error, "journal append failed; refusing to answer");
            response = journal_refusal(&error).into_problem(Some(&message_id));
        }
    }

    let status = response.status().as_u16();
    // Labels only from values configuration bounds: the authenticated client (one of
    // the registry's bindings, or a signed sender) and the service only once a contract
    // matched; a matched contract keeps its pair's handles.
    let ctx = context.as_ref();
    let contract = ctx.and_then(|ctx| ctx.trail.contract.as_deref());
    let leg = ctx.map_or("none", |ctx| ctx.leg.as_str());
    let elapsed = started.elapsed().as_secs_f64();
    match (ctx, contract) {
        (Some(ctx), Some(contract)) => {
            contract
                .metrics
                .record(status, ctx.leg.metric_slot(), elapsed);
        }
        _ => {
            let consumer = ctx
                .and_then(ExchangeContext::authenticated_client)
                .map_or_else(|| "unauthenticated".to_owned(), ToString::to_string);
            crate::observe::record_unmatched_exchange(consumer.into(), status, leg, elapsed);
        }
    }
    if let Some(code) = error_code {
        metrics::counter!("datagate_refusals_total", "code" => code.as_str()).increment(1);
    }
    tracing::info!(
        message_id = %message_id,
        status = %status,
        code = error_code.map(|c| c.as_str()).unwrap_or("-"),
        contract = contract.map_or("-", |contract| contract.id.as_str()),
        leg,
        elapsed_ms = elapsed * 1000.0,
        "exchange"
    );
    response
}

/// Refuses, before any work, an exchange (or a hub's relay) whose record the journal
/// could not keep now: its store is failing or below its free-space reserve.
pub(super) fn journal_accepting(gateway: &Gateway) -> Result<(), GatewayError> {
    if gateway.journal().accepting() {
        return Ok(());
    }
    Err(GatewayError::new(
        ErrorCode::JournalUnavailable,
        "the journal cannot take records now; nothing was sent on",
    )
    .with_retry_after(std::time::Duration::from_secs(1)))
}

/// The answer when an exchange could not be journaled: a full queue is back-pressure
/// (`journal.overloaded`, retry later); anything else, the journal is unavailable.
pub(super) fn journal_refusal(error: &crate::journal::JournalError) -> GatewayError {
    match error {
        crate::journal::JournalError::Overloaded => GatewayError::new(
            ErrorCode::JournalOverloaded,
            "the journal is behind; the exchange was not answered so it is not lost",
        )
        .with_retry_after(std::time::Duration::from_secs(1)),
        crate::journal::JournalError::StorageLow => GatewayError::new(
            ErrorCode::JournalUnavailable,
            "the journal's disk is below its free-space reserve",
        )
        .with_retry_after(std::time::Duration::from_secs(5)),
        _ => GatewayError::new(
            ErrorCode::JournalUnavailable,
            "the exchange could not be journaled",
        )
        .with_retry_after(std::time::Duration::from_secs(1)),
    }
}

/// The request target (path and query) as sent, borrowed: what the digests cover
/// when the request did not parse far enough to have a canonical target.
fn raw_target(parts: &Parts) -> &[u8] {
    parts
        .uri
        .path_and_query()
        .map_or(b"/".as_slice(), |target| target.as_str().as_bytes())
}

/// Phase 2: the request head, parsed once. Limits first (`head_limits`: they bound the
/// work of everything after), then ambiguity, then the values. `path` is the `/r1/...` part
/// of the target (the exchange listener strips its `/exchange/v1` prefix first).
fn parse_head(
    parts: &Parts,
    path: &str,
    runtime: &Runtime,
    message_id: String,
    started: Instant,
    leg: Leg,
) -> Result<ExchangeContext, GatewayError> {
    let limits = &runtime.limits;
    super::head_limits::check(parts, limits)?;
    protocol::check_single_headers(&parts.headers)?;
    let target = protocol::parse_target(path)?;
    let client = protocol::parse_client(parts.headers.get(protocol::X_ROAD_CLIENT))?;
    let purpose = protocol::parse_purpose(parts.headers.get(X_PURPOSE))?;
    let text = |name| {
        protocol::single_header(&parts.headers, name)
            .ok()
            .flatten()
            .and_then(|value| value.to_str().ok())
            .map(|value| value.trim().to_owned())
    };
    Ok(ExchangeContext {
        message_id,
        method: parts.method.clone(),
        target,
        query: parts.uri.query().map(str::to_owned),
        client,
        purpose,
        user_id: text(&X_ROAD_USER_ID),
        issue: text(&X_ROAD_ISSUE),
        citizen_assertion: text(&X_CITIZEN_ASSERTION).map(super::context::Redacted),
        verified_citizen: text(&X_CITIZEN_ASSERTION).and_then(|token| {
            parts
                .extensions
                .get::<super::context::VerifiedAssertion>()
                .filter(|verified| {
                    verified.token_digest == super::context::VerifiedAssertion::digest(&token)
                })
                .cloned()
        }),
        // A caller inside the node (autofill's fan-out) may only shorten the deadline.
        deadline: parts
            .extensions
            .get::<super::context::InnerDeadline>()
            .map_or(started + limits.request_timeout, |inner| {
                inner.0.min(started + limits.request_timeout)
            }),
        receive_deadline: started + limits.request_receive_timeout,
        peer: None,
        leg,
        trail: Default::default(),
    })
}

/// Phases 2–4, then the rest under the exchange deadline. The context, once parsed,
/// is left in `slot` for the journal, whatever the outcome.
#[allow(clippy::too_many_arguments)]
async fn admit_and_run(
    gateway: &Gateway,
    runtime: &Runtime,
    certificate: Option<&PeerCertificate>,
    parts: &Parts,
    body: Body,
    message_id: String,
    started: Instant,
    arrival: Arrival,
    slot: &mut Option<ExchangeContext>,
) -> Result<(Response, bytes::Bytes), GatewayError> {
    let (path, leg) = match arrival {
        Arrival::Consumer => (parts.uri.path(), Leg::Local),
        Arrival::Exchange => (
            super::inbound::strip_prefix(parts.uri.path())?,
            Leg::ProviderSide,
        ),
    };
    let ctx = slot.insert(parse_head(parts, path, runtime, message_id, started, leg)?);
    // Invariant 3 before any work: with the journal's store failing (server gone, disk
    // below its reserve) no backend is touched, since the exchange could not be recorded.
    journal_accepting(gateway)?;

    let certificate = certificate.ok_or_else(|| {
        GatewayError::new(
            ErrorCode::TrustCertificateMissing,
            "a client certificate is required",
        )
    })?;
    // Identity: a registered information system bound to the claimed subsystem, or a
    // registered secure server whose signature covers the request's head.
    let peer = match arrival {
        Arrival::Consumer => Peer::InformationSystem(runtime.registry.authenticate_client(
            &certificate.fingerprint_sha256,
            &ctx.client,
            gateway.clock().now(),
        )?),
        Arrival::Exchange => super::inbound::authenticate(gateway, ctx, parts, certificate)?,
    };
    ctx.peer = Some(peer);

    let deadline = ctx.deadline;
    let wait_until = deadline.min(Instant::now() + super::admission::WAIT_AT_MOST);
    let ticket: Ticket<'_> = gateway
        .admission()
        .admit_or_wait(&ctx.client, &runtime.limits, wait_until)
        .await?;
    // Boxed for the same reason as the exchange's task: `timeout_at` takes the future by value.
    let boxed = Box::pin(run(gateway, runtime, ctx, parts, body));
    let outcome = tokio::time::timeout_at(deadline, boxed).await;
    drop(ticket);
    match outcome {
        Ok(outcome) => outcome,
        Err(_) => Err(GatewayError::new(
            ErrorCode::GatewayTimeout,
            "the exchange did not complete within the node's deadline",
        )),
    }
}

/// Renders the request document the request schema validates.
fn request_document(
    params: &std::collections::BTreeMap<String, String>,
    query: &[(String, String)],
    body: Option<&serde_json::Value>,
) -> serde_json::Value {
    let query: serde_json::Map<String, serde_json::Value> = query
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let mut document = serde_json::json!({ "path": params, "query": query });
    if let Some(body) = body {
        document["body"] = body.clone();
    }
    document
}

/// The journal's keyed digest of a data subject's identifier: what the exchange records
/// and what the admin API's subject-access query looks for (one spelling for both).
pub(super) fn subject_digest(gateway: &Gateway, subject: &str) -> String {
    gateway.journal().digest(&[b"subject", subject.as_bytes()])
}

/// The `X-Citizen-Assertion` of the request, verified for a contract requiring `level`
/// ([`verify_citizen`]) and consented to this service.
fn citizen_assertion(
    gateway: &Gateway,
    runtime: &Runtime,
    ctx: &ExchangeContext,
    level: crate::contract::AssuranceLevel,
    now: time::OffsetDateTime,
) -> Result<crate::trust::citizen::Assertion, GatewayError> {
    let assertion = match &ctx.verified_citizen {
        // Verified moments ago inside the node (a form's source request): the level and the
        // expiry are still checked here, for this contract.
        Some(verified) if verified.assertion.expires_at > now => {
            require_level(&verified.assertion, level)?;
            verified.assertion.clone()
        }
        _ => {
            let token = ctx.citizen_assertion.as_ref().map(|token| token.0.as_str());
            verify_citizen(gateway, runtime, token, &ctx.client, level, now)?
        }
    };
    let service = ctx.target.service.to_string();
    if !assertion.consent.services.contains(&service) {
        return Err(GatewayError::new(
            ErrorCode::CitizenConsentMissing,
            "the citizen did not consent to this service",
        ));
    }
    Ok(assertion)
}

/// A citizen assertion (`token`, from `X-Citizen-Assertion`) verified for `level`: by an
/// identity provider this node trusts (its own `[[identity_providers]]` and the global
/// configuration's), issued to the calling subsystem, current, at `level` or above (else
/// a step-up answer naming the level). Consent is the caller's to check.
pub(super) fn verify_citizen(
    gateway: &Gateway,
    runtime: &Runtime,
    token: Option<&str>,
    audience: &crate::identity::ClientId,
    level: crate::contract::AssuranceLevel,
    now: time::OffsetDateTime,
) -> Result<crate::trust::citizen::Assertion, GatewayError> {
    use crate::trust::citizen::{AssertionError, CitizenLevel};
    let required = match level {
        crate::contract::AssuranceLevel::Medium => CitizenLevel::Medium,
        crate::contract::AssuranceLevel::High => CitizenLevel::High,
    };
    let Some(token) = token else {
        return Err(GatewayError::new(
            ErrorCode::CitizenAssertionMissing,
            "the citizen's assertion is required (X-Citizen-Assertion)",
        )
        .with_required_level(required.as_str()));
    };
    let held = gateway
        .federation()
        .and_then(|federation| federation.held());
    // This node's identity providers, then the global configuration's: borrowed, never
    // copied per request.
    let providers = runtime.identity_providers.iter().chain(
        held.iter()
            .flat_map(|global| global.identity_providers().iter()),
    );
    let assertion =
        crate::trust::citizen::verify(token.as_bytes(), providers, &audience.to_string(), now)
            .map_err(|error| {
                let code = match error {
                    AssertionError::UnknownIssuer => ErrorCode::CitizenIssuerUnknown,
                    AssertionError::WrongAudience => ErrorCode::CitizenAudienceMismatch,
                    AssertionError::Expired => ErrorCode::CitizenAssertionExpired,
                    AssertionError::NotYetValid => ErrorCode::CitizenAssertionNotYetValid,
                    AssertionError::ConsentMissing => ErrorCode::CitizenConsentMissing,
                    AssertionError::Malformed(_)
                    | AssertionError::UnknownKey
                    | AssertionError::SignatureInvalid => ErrorCode::CitizenAssertionInvalid,
                };
                GatewayError::new(code, error.to_string())
            })?;
    require_level(&assertion, level)?;
    Ok(assertion)
}

/// A step-up answer naming `level` unless the assertion is at that level or above.
fn require_level(
    assertion: &crate::trust::citizen::Assertion,
    level: crate::contract::AssuranceLevel,
) -> Result<(), GatewayError> {
    use crate::trust::citizen::CitizenLevel;
    let required = match level {
        crate::contract::AssuranceLevel::Medium => CitizenLevel::Medium,
        crate::contract::AssuranceLevel::High => CitizenLevel::High,
    };
    if assertion.level < required {
        return Err(GatewayError::new(
            ErrorCode::CitizenStepUpRequired,
            format!(
                "assurance level {} is required; the citizen signed in at {}",
                required.as_str(),
                assertion.level.as_str()
            ),
        )
        .with_required_level(required.as_str()));
    }
    Ok(())
}

/// The request's data subject must be the citizen the assertion names (compared in
/// constant time; neither value is ever shown).
pub(super) fn bind_subject(
    assertion: &crate::trust::citizen::Assertion,
    subject: &str,
) -> Result<(), GatewayError> {
    let same = aws_lc_rs::constant_time::verify_slices_are_equal(
        assertion.subject.as_bytes(),
        subject.as_bytes(),
    )
    .is_ok();
    if same {
        Ok(())
    } else {
        Err(GatewayError::new(
            ErrorCode::CitizenSubjectMismatch,
            "the request's data subject is not the citizen the assertion names",
        ))
    }
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

/// Reads the body, capped at `limit` bytes and bounded by `receive_deadline`: a
/// sender that has not finished by then gets `request.timeout` (408, its fault).
pub(super) async fn read_body(
    parts: &Parts,
    body: Body,
    limit: usize,
    receive_deadline: Instant,
) -> Result<bytes::Bytes, GatewayError> {
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
    #[allow(clippy::disallowed_methods)] // Bounded: `Limited` caps it, the deadline ends it.
    let collect = http_body_util::Limited::new(body, limit).collect();
    match tokio::time::timeout_at(receive_deadline, collect).await {
        Err(_) => Err(GatewayError::new(
            ErrorCode::RequestTimeout,
            "the request body did not arrive within the node's receive deadline",
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(GatewayError::new(
            ErrorCode::RequestBodyInvalid,
            "the request body could not be read",
        )),
    }
}

/// The media type of a `Content-Type` value, lowercased, without parameters.
pub(super) fn media_type(value: Option<&str>) -> Option<String> {
    value.map(|v| {
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    })
}

fn parse_body(
    content_type: Option<&str>,
    bytes: &[u8],
) -> Result<Option<serde_json::Value>, GatewayError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let is_json =
        media_type(content_type).is_some_and(|v| v == "application/json" || v.ends_with("+json"));
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

/// Phases 5–11: contract, quota, provider and route, body, schema, the provider's
/// answer, response schema and projection, headers.
async fn run(
    gateway: &Gateway,
    runtime: &Runtime,
    ctx: &mut ExchangeContext,
    parts: &Parts,
    body: Body,
) -> Result<(Response, bytes::Bytes), GatewayError> {
    let now = gateway.clock().now();

    // Contract, for the authenticated client.
    // Deny by default. For another member's service the owner's gateway decides, on its
    // own contracts; this node denies early on its copy when it holds one, and without
    // one forwards for the owner to decide (a copy can only deny more, never allow more).
    let grant = match runtime.contracts.authorise(
        &ctx.client,
        &ctx.target.service,
        &ctx.method,
        ctx.target.path(),
        ctx.purpose.as_ref().map(Purpose::as_str),
        now,
    ) {
        Ok(grant) => Some(grant),
        Err(error)
            if error.code() == ErrorCode::ContractNotFound
                && ctx.leg == Leg::Local
                && !runtime.services.contains_key(&ctx.target.service) =>
        {
            match gateway.federation().map(|federation| federation.copies()) {
                // The owner's published copy: deny early on it.
                Some(copies) => match copies.of(&ctx.target.service.provider.member) {
                    Some(copy) => Some({
                        // Refused or not, this is the consumer side of a federated exchange.
                        ctx.leg = Leg::ConsumerSide;
                        copy.authorise(
                            &ctx.client,
                            &ctx.target.service,
                            &ctx.method,
                            ctx.target.path(),
                            ctx.purpose.as_ref().map(Purpose::as_str),
                            now,
                        )?
                    }),
                    None => None,
                },
                None => return Err(error),
            }
        }
        Err(error) => return Err(error),
    };
    let (contract, grant_params) = match grant {
        Some(grant) => (Some(grant.contract), grant.params),
        None => (None, Default::default()),
    };
    // The citizen's assertion, for a contract with an assurance level: verified, of the
    // level, consented to this service, and about the request's subject, before the quota
    // is taken and before any backend is touched (a body subject: right after the read).
    let citizen = match contract
        .as_ref()
        .and_then(|contract| contract.assurance_level.map(|level| (contract, level)))
    {
        Some((contract, level)) => {
            let assertion = citizen_assertion(gateway, runtime, ctx, level, now)?;
            if let Some(subject) = subject_value(contract, &grant_params, None) {
                bind_subject(&assertion, &subject)?;
            }
            Some(assertion)
        }
        None => None,
    };
    if let Some(contract) = &contract {
        ctx.trail.contract = Some(contract.clone());
        // Quota: after the contract, because the quota is the contract's.
        contract.take_quota(now)?;
    }

    // Provider and route: a local adapter operation (only its declared query), or the
    // provider's gateway.
    let provider = Provider::resolve(gateway, runtime, ctx)?;
    if matches!(provider, Provider::Remote(_)) {
        ctx.leg = Leg::ConsumerSide;
    } else if contract.is_none() {
        return Err(GatewayError::new(
            ErrorCode::ContractNotFound,
            "no data-sharing contract allows this client to call this service",
        ));
    }
    let mut routed = provider.route(ctx)?;
    if routed.params.is_empty() {
        routed.params = grant_params;
    }
    ctx.trail.operation = routed
        .operation
        .as_ref()
        .map(|operation| operation.name.clone());
    let mut canonical_target = ctx.target.canonical().to_owned();
    if !routed.query.is_empty() {
        canonical_target.push('?');
        canonical_target.push_str(&protocol::canonical_query(&routed.query));
    }
    ctx.trail.canonical_target = Some(canonical_target);

    // Body: only operations whose method takes one accept one. A body on a GET would be
    // forwarded to a REST backend, a channel into the national databases no contract
    // describes; refused before a byte of it is read.
    if !routed.takes_body && !body.is_end_stream() {
        return Err(GatewayError::new(
            ErrorCode::RequestBodyNotAllowed,
            "this operation takes no request body",
        ));
    }

    // Body (opened from its JWE between gateways) and request schema.
    let (bytes, content_type) = match ctx.leg {
        Leg::ProviderSide => {
            // Boxed: opening a JWE is a large future, and only the exchange listener needs it.
            let open = Box::pin(super::inbound::open_body(
                gateway, runtime, ctx, parts, body,
            ));
            open.await?
        }
        _ => (
            read_body(
                parts,
                body,
                runtime.limits.request_body_bytes,
                ctx.receive_deadline,
            )
            .await?,
            parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        ),
    };
    ctx.trail.request_body = bytes.clone();
    let json_body = parse_body(content_type.as_deref(), &bytes)?;
    // A body subject is bound to the citizen's assertion as soon as the body is read; a
    // contract with a level whose subject cannot be found is refused, never served.
    if let (Some(assertion), Some(contract)) = (&citizen, &contract) {
        match subject_value(contract, &routed.params, json_body.as_ref()) {
            Some(subject) => bind_subject(assertion, &subject)?,
            None => {
                return Err(GatewayError::new(
                    ErrorCode::CitizenSubjectMismatch,
                    "the request names no data subject to bind the citizen assertion to",
                ));
            }
        }
    }
    if gateway.journal().is_enabled()
        && let Some(contract) = &contract
        && let Some(subject) = subject_value(contract, &routed.params, json_body.as_ref())
    {
        ctx.trail.subject_digest = Some(subject_digest(gateway, &subject));
    }
    if let Some(contract) = contract.as_ref().filter(|c| c.request_schema.is_some()) {
        contract.validate_request(&request_document(
            &routed.params,
            &routed.query,
            json_body.as_ref(),
        ))?;
    }

    // The provider's answer, schema-checked and projected; from the answer cache when
    // the contract allows it (every phase above has run either way).
    let cache_policy = contract
        .as_ref()
        .filter(|_| matches!(ctx.leg, Leg::Local | Leg::ConsumerSide))
        .and_then(|contract| contract.cache_ttl.map(|ttl| (contract, ttl)));
    let (body, answered) = match cache_policy {
        Some((contract, ttl)) => {
            let subject = subject_value(contract, &routed.params, json_body.as_ref())
                .map(|subject| subject_digest(gateway, &subject));
            let key = super::cache::CacheKey::new(
                contract,
                subject.as_deref(),
                ctx.method.as_str(),
                ctx.trail.canonical_target.as_deref().unwrap_or_default(),
                &bytes,
            );
            let fetch = async {
                let body = answer(
                    gateway,
                    ctx,
                    &provider,
                    &routed,
                    (&bytes, json_body.as_ref(), content_type.as_deref()),
                    Some(contract.as_ref()),
                )
                .await?;
                Ok((body, gateway.clock().now()))
            };
            let contract = contract.clone();
            let (cached, source) = {
                // Boxed: the cache's future is large, and sized inline it would be carried
                // (and copied) by every exchange, cached or not.
                let cached = Box::pin(gateway.cache().get_or_fetch(key, ttl, now, fetch));
                cached.await?
            };
            if source == super::cache::Source::Cached {
                ctx.leg = Leg::Cache;
            }
            (
                cached.body,
                Answered {
                    contract: Some(contract),
                    retrieved_at: cached.retrieved_at,
                    source,
                },
            )
        }
        None => {
            let body = answer(
                gateway,
                ctx,
                &provider,
                &routed,
                (&bytes, json_body.as_ref(), content_type.as_deref()),
                contract.as_deref(),
            )
            .await?;
            (
                body,
                Answered {
                    contract: contract.clone(),
                    retrieved_at: ctx.trail.response_in_at.unwrap_or(now),
                    source: super::cache::Source::Live,
                },
            )
        }
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
    if let Some(hex) = request_hash(ctx, &bytes)
        && let Ok(value) = HeaderValue::from_bytes(&hex)
    {
        headers.insert(X_ROAD_REQUEST_HASH, value);
    }
    if let Ok(value) = HeaderValue::from_str(&ctx.message_id) {
        headers.insert(X_ROAD_ID, value);
    }
    if let Ok(value) = HeaderValue::from_str(ctx.target.service_text()) {
        headers.insert(X_ROAD_SERVICE, value);
    }
    if let Some(value) = contract
        .as_ref()
        .and_then(|contract| HeaderValue::from_str(&contract.id).ok())
    {
        headers.insert(X_CONTRACT_ID, value);
    }
    if answered.source == super::cache::Source::Cached {
        let age = (now - answered.retrieved_at).whole_seconds().max(0);
        headers.insert(header::AGE, HeaderValue::from(age));
    }
    response.extensions_mut().insert(answered);
    Ok((response, body))
}

/// How an exchange's answer was obtained, attached to the response for the callers
/// inside the node (autofill's provenance): never sent on the wire.
#[derive(Debug, Clone)]
pub struct Answered {
    /// The contract that allowed it (none: forwarded for the owner to decide).
    pub contract: Option<Arc<CompiledContract>>,
    /// When the provider's answer came back.
    pub retrieved_at: time::OffsetDateTime,
    /// Live, or from the answer cache.
    pub source: super::cache::Source,
}

/// Phase 10–11: the provider's answer, its response schema, then the projection to the
/// contract's fields. A pass-through contract (whole answer, no response schema) forwards
/// the provider's bytes once they are known to be JSON.
async fn answer(
    gateway: &Gateway,
    ctx: &mut ExchangeContext,
    provider: &Provider,
    routed: &super::provider::Routed,
    (bytes, json_body, content_type): (&bytes::Bytes, Option<&serde_json::Value>, Option<&str>),
    contract: Option<&CompiledContract>,
) -> Result<bytes::Bytes, GatewayError> {
    let record = provider
        .call(gateway, ctx, routed, bytes, json_body, content_type)
        .await?;
    let to_error = |error: crate::adapters::AdapterError| error.to_gateway_error();
    let serialised = |value: &serde_json::Value| {
        serde_json::to_vec(value)
            .map(bytes::Bytes::from)
            .map_err(|_| {
                GatewayError::new(
                    ErrorCode::InternalUnexpected,
                    "the answer could not be serialised",
                )
            })
    };
    match contract {
        None => record.into_json_bytes().map_err(to_error),
        Some(contract)
            if contract.response_schema.is_none() && contract.projection.is_whole_document() =>
        {
            record.into_json_bytes().map_err(to_error)
        }
        // A copy of the owner's contract: the owner validated its backend's record and
        // projected it; projecting again can only narrow it (a stale copy denies more).
        Some(contract) if ctx.leg == Leg::ConsumerSide => {
            let record = record.into_value().map_err(to_error)?;
            serialised(&contract.projection.apply(record))
        }
        Some(contract) => {
            let record = record.into_value().map_err(to_error)?;
            contract.validate_response(&record)?;
            serialised(&contract.projection.apply(record))
        }
    }
}

/// `X-Road-Request-Hash`: SHA-256 over the method, the canonical target and the
/// body, each length-prefixed, so the consumer can prove which question was answered.
fn request_hash(ctx: &ExchangeContext, body: &[u8]) -> Option<[u8; 64]> {
    let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let canonical = ctx.trail.canonical_target.as_deref().unwrap_or_default();
    for part in [ctx.method.as_str().as_bytes(), canonical.as_bytes(), body] {
        hash.update(&(part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    let digest = hash.finish();
    let digest: &[u8; 32] = digest.as_ref().try_into().ok()?;
    Some(crate::base::hex::encode_digest(digest))
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
            limits: crate::config::Limits::build(
                &crate::config::raw::RawLimits {
                    request_body_bytes: 1024,
                    request_timeout_ms: 5_000,
                    max_concurrent_requests: 8,
                    shutdown_grace_ms: 1_000,
                    ..Default::default()
                },
                std::path::Path::new("test"),
                &mut Vec::new(),
            ),
            admin_clients: Default::default(),
            identity_providers: Vec::new(),
            forms: Default::default(),
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

    fn request(method: &str, path: &str) -> Request {
        axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("x-road-client", "VN/GOV/000.00.00.H29/dvc-portal")
            .header("x-road-id", "shortcut-check")
            .body(Body::empty())
            .expect("request")
    }

    /// Issue 12: the consumer listener serves service calls without routing. Only what the
    /// router would hand to its fallback is taken: never a metadata call (at any depth), a
    /// HEAD request, or a path outside `/r1/`.
    #[test]
    fn only_what_the_router_would_hand_to_the_pipeline_skips_routing() {
        // Paths under one provider subsystem, then whole paths.
        const P: &str = "/r1/VN/GOV/000.00.00.G10/population-db";
        for (method, tail, direct) in [
            ("GET", "/citizen/1", true),
            ("POST", "/citizen", true),
            ("GET", "", true),
            // A service whose code only starts like a metadata call's, or encodes one.
            ("GET", "/listMethodsX", true),
            ("GET", "/list%4Dethods", true),
            ("GET", "/listMethods", false),
            ("GET", "/allowedMethods", false),
            ("GET", "/getOpenAPI", false),
            ("GET", "/getOpenAPI/x/y", false),
            ("HEAD", "/citizen/1", false),
        ] {
            let path = format!("{P}{tail}");
            assert_eq!(
                routes_to_exchange(&request(method, &path)),
                direct,
                "{method} {path}"
            );
        }
        for (path, direct) in [
            ("/r1/", true),
            ("/r1/VN//000.00.00.G10/population-db/listMethods", false),
            ("/autofill/v1/birth-registration", false),
            ("/opendata/v1/api/3/action/package_list", false),
            ("/openapi.json", false),
            ("/r1", false),
        ] {
            assert_eq!(routes_to_exchange(&request("GET", path)), direct, "{path}");
        }
    }

    /// Issue 12: a service call answered without routing gets the answer the router gives
    /// it through its fallback (here the refusal of a caller without a certificate, with
    /// the caller's message id), for each method the pipeline takes.
    #[tokio::test]
    async fn a_service_call_without_routing_is_answered_as_through_the_router() {
        let (gateway, _dir) = gateway().await;
        for method in ["GET", "POST", "PUT", "DELETE"] {
            let path = "/r1/VN/GOV/000.00.00.G10/population-db/citizen/1";
            assert!(routes_to_exchange(&request(method, path)));
            let routed = consumer_router(gateway.clone())
                .oneshot(request(method, path))
                .await
                .expect("infallible");
            let direct =
                spawn_exchange(gateway.clone(), request(method, path), Arrival::Consumer).await;
            assert_eq!(routed.status(), direct.status(), "{method}");
            assert_eq!(routed.status(), 401, "{method}");
            for response in [routed, direct] {
                assert_eq!(response.headers()[X_ROAD_ID], "shortcut-check");
                let body = response.into_body().collect().await.expect("body");
                let problem: serde_json::Value =
                    serde_json::from_slice(&body.to_bytes()).expect("problem json");
                assert_eq!(problem["code"], "trust.certificate_missing", "{method}");
            }
        }
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

    /// 003 Điều 3 khoản 3: no verified certificate, no exchange.
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

    /// 004 Điều 55 khoản 3: a malformed sender (X-Road-Client) is refused, without echoing it.
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
