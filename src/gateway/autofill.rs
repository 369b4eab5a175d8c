//! Once-only forms on the consumer listener (002 Điều 11 k2c; 004 Điều 54): a portal
//! asks its gateway to fill a form for the citizen who signed in, and the citizen can see
//! who accessed their data.
//!
//! - `GET /autofill/v1/{form}`: the **preview**: which fields, from which sources, under
//!   which contracts, and the consent the citizen's assertion must carry. No data.
//! - `POST /autofill/v1/{form}` with `{"subject": "<12 digits>"}` and the citizen's
//!   `X-Citizen-Assertion`: every source fetched concurrently **through the exchange
//!   pipeline** (its own `X-Road-Id`, the form's purpose, the procedure's code in
//!   `X-Road-Issue`, the assertion; contract, quota, assertion, cache and journal apply to
//!   each), each under its own deadline inside the form's; every field answered with its
//!   value and provenance, or marked `ask_citizen` with a reason code.
//! - `GET /citizen/v1/access`: the journal's accesses to the citizen's data, behind the
//!   citizen's own assertion, without embargoed entries; journaled as a query.
//!
//! Owns: the three routes, the portal's authentication for them (its certificate bound to
//! `X-Road-Client` by the registry), the form-level checks (consumer, assurance level,
//! consent to the form, subject binding), the fan-out and the answer.
//!
//! Does not own: a source request's authorisation, caching or journal record (the
//! pipeline: [`super::exchange`]), the form's grammar ([`crate::contract::form`]), or the
//! subject-access query ([`super::admin::subject_accesses`]).

use super::context::{InnerDeadline, VerifiedAssertion};
use super::exchange::{self, Answered, Arrival};
use super::{Gateway, Runtime};
use crate::contract::form::{Form, Unfilled};
use crate::error::{ErrorCode, GatewayError};
use crate::identity::ClientId;
use crate::protocol::{self, X_CITIZEN_ASSERTION, X_PURPOSE, X_ROAD_ID, X_ROAD_ISSUE};
use crate::trust::PeerCertificate;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, header, request::Parts};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::Instant;

/// The largest source answer autofill reads back from the pipeline.
const MAX_SOURCE_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// How long after a source's deadline the fan-out stops waiting: the source exchange
/// ends itself at its deadline (and is journaled); this only covers the hand-back.
const HAND_BACK_GRACE: Duration = Duration::from_millis(100);

/// The routes of this module, merged into the consumer router.
pub fn routes() -> axum::Router<Arc<Gateway>> {
    axum::Router::new()
        .route(
            "/autofill/v1/{form}",
            axum::routing::get(preview).post(fill),
        )
        .route("/citizen/v1/access", axum::routing::get(access))
}

/// A portal, authenticated: its certificate is a registered information system bound
/// to the subsystem in `X-Road-Client`. The consumer listener's other routes of the
/// node (the metadata calls, [`super::metaservices`]) identify their caller the same way.
pub(super) struct Caller {
    /// The subsystem in `X-Road-Client`, vouched for by the registry.
    pub(super) client: ClientId,
    /// The connection's client certificate.
    pub(super) certificate: PeerCertificate,
}

/// The caller's `X-Road-Id`, or a fresh one (with the refusal when the caller's is unusable).
pub(super) fn message_id(parts: &Parts) -> Result<String, (String, GatewayError)> {
    protocol::single_header(&parts.headers, &X_ROAD_ID)
        .and_then(protocol::message_id)
        .map_err(|error| (uuid::Uuid::new_v4().to_string(), error))
}

/// The caller: its certificate bound by the registry to the subsystem in `X-Road-Client`.
pub(super) fn authenticate(
    gateway: &Gateway,
    runtime: &Runtime,
    parts: &Parts,
) -> Result<Caller, GatewayError> {
    protocol::check_single_headers(&parts.headers)?;
    let client = protocol::parse_client(parts.headers.get(protocol::X_ROAD_CLIENT))?;
    let certificate = parts
        .extensions
        .get::<PeerCertificate>()
        .cloned()
        .ok_or_else(|| {
            GatewayError::new(
                ErrorCode::TrustCertificateMissing,
                "a client certificate is required",
            )
        })?;
    runtime.registry.authenticate_client(
        &certificate.fingerprint_sha256,
        &client,
        gateway.clock().now(),
    )?;
    Ok(Caller {
        client,
        certificate,
    })
}

/// The form `id`, for `caller`.
fn form_for(runtime: &Runtime, id: &str, caller: &Caller) -> Result<Arc<Form>, GatewayError> {
    let form = runtime.forms.get(id).cloned().ok_or_else(|| {
        GatewayError::new(ErrorCode::AutofillFormUnknown, "no such form on this node")
    })?;
    if !form.consumers.contains(&caller.client) {
        return Err(GatewayError::new(
            ErrorCode::AutofillFormNotAllowed,
            "this form is not offered to the calling subsystem",
        ));
    }
    Ok(form)
}

fn json_response(message_id: &str, body: &Value) -> Response {
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        serde_json::to_vec(body).unwrap_or_default(),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(message_id) {
        response.headers_mut().insert(X_ROAD_ID, value);
    }
    response
}

/// The answer of a handler: its JSON, or its problem (consumer faults at DEBUG only).
pub(super) fn respond(
    message_id: &str,
    outcome: Result<Value, GatewayError>,
    what: &'static str,
) -> Response {
    match outcome {
        Ok(body) => json_response(message_id, &body),
        Err(error) => {
            let code = error.code();
            metrics::counter!("datagate_refusals_total", "code" => code.as_str()).increment(1);
            if code.origin() == crate::error::Origin::Consumer {
                tracing::debug!(code = code.as_str(), what, "refused");
            } else {
                tracing::warn!(
                    code = code.as_str(),
                    what,
                    detail = error.detail(),
                    "failed"
                );
            }
            error.into_problem(Some(message_id))
        }
    }
}

/// The contract a source request of `form` would be served under, for `client`: this
/// node's own, or the owner's published copy; none when neither allows it.
fn source_contract(
    gateway: &Gateway,
    runtime: &Runtime,
    client: &ClientId,
    form: &Form,
    source: &crate::contract::form::FormSource,
) -> Result<Arc<crate::contract::CompiledContract>, GatewayError> {
    let path = source.path("000000000000");
    let now = gateway.clock().now();
    let authorise = |set: &crate::contract::ContractSet| {
        set.authorise(
            client,
            &source.service,
            &Method::GET,
            &path,
            Some(&form.purpose),
            now,
        )
        .map(|grant| grant.contract)
    };
    if runtime.services.contains_key(&source.service) {
        return authorise(&runtime.contracts);
    }
    let copies = gateway.federation().map(|federation| federation.copies());
    match copies
        .as_ref()
        .and_then(|copies| copies.of(&source.service.provider.member))
    {
        Some(copy) => authorise(copy),
        None => Err(GatewayError::new(
            ErrorCode::ContractNotFound,
            "no contract of the owner is held for this source yet",
        )),
    }
}

fn contract_summary(contract: &crate::contract::CompiledContract) -> Value {
    json!({
        "id": contract.id,
        "legalBasis": contract.legal_basis,
        "classification": contract.classification,
        "assuranceLevel": contract.assurance_level,
        "cache": contract.cache_ttl.map(|ttl| json!({"allowed": true, "ttlSeconds": ttl.as_secs()}))
            .unwrap_or_else(|| json!({"allowed": false})),
    })
}

/// `GET /autofill/v1/{form}`: what the form would use, before the citizen consents.
async fn preview(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let (message_id, refusal) = match message_id(&parts) {
        Ok(id) => (id, None),
        Err((id, error)) => (id, Some(error)),
    };
    let outcome = match refusal {
        Some(error) => Err(error),
        None => preview_of(&gateway, &parts, &id),
    };
    respond(&message_id, outcome, "autofill preview")
}

fn preview_of(gateway: &Gateway, parts: &Parts, id: &str) -> Result<Value, GatewayError> {
    let runtime = gateway.runtime();
    let caller = authenticate(gateway, &runtime, parts)?;
    let form = form_for(&runtime, id, &caller)?;
    let sources: Vec<Value> = form
        .sources
        .iter()
        .map(|source| {
            let contract = source_contract(gateway, &runtime, &caller.client, &form, source);
            json!({
                "name": source.name,
                "service": source.service.to_string(),
                "provider": source.service.provider.member.to_string(),
                "timeoutMs": source.timeout.as_millis() as u64,
                "contract": contract.as_ref().ok().map(|c| contract_summary(c)),
                "refusal": contract.as_ref().err().map(|e| e.code().as_str()),
            })
        })
        .collect();
    let fields: Vec<Value> = form
        .fields
        .iter()
        .map(|field| {
            json!({
                "name": field.name,
                "label": field.label,
                "source": form.sources[field.source].name,
                "reads": field.value.pointers(),
                "transform": field.transform,
            })
        })
        .collect();
    Ok(json!({
        "form": form.id,
        "title": form.title,
        "titleEn": form.title_en,
        "procedure": form.procedure,
        "legalBasis": form.legal_basis,
        "purpose": form.purpose,
        "assuranceLevel": form.assurance_level,
        "deadlineMs": form.deadline.as_millis() as u64,
        "consent": {
            "form": form.id,
            "services": form.sources.iter().map(|s| s.service.to_string()).collect::<Vec<_>>(),
        },
        "sources": sources,
        "fields": fields,
    }))
}

/// The body of `POST /autofill/v1/{form}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FillRequest {
    subject: String,
}

/// `POST /autofill/v1/{form}`: the filled form.
async fn fill(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let (message_id, refusal) = match message_id(&parts) {
        Ok(id) => (id, None),
        Err((id, error)) => (id, Some(error)),
    };
    let outcome = match refusal {
        Some(error) => Err(error),
        None => fill_form(&gateway, &parts, body, &id, &message_id, started).await,
    };
    let status = if outcome.is_ok() { "200" } else { "refused" };
    metrics::counter!("datagate_autofill_requests_total", "outcome" => status).increment(1);
    metrics::histogram!("datagate_autofill_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    respond(&message_id, outcome, "autofill")
}

async fn fill_form(
    gateway: &Arc<Gateway>,
    parts: &Parts,
    body: Body,
    id: &str,
    message_id: &str,
    started: Instant,
) -> Result<Value, GatewayError> {
    let runtime = gateway.runtime();
    let caller = authenticate(gateway, &runtime, parts)?;
    let form = form_for(&runtime, id, &caller)?;
    let bytes = exchange::read_body(
        parts,
        body,
        runtime.limits.request_body_bytes,
        started + runtime.limits.request_receive_timeout,
    )
    .await?;
    let request: FillRequest = serde_json::from_slice(&bytes).map_err(|_| {
        GatewayError::new(
            ErrorCode::RequestBodyInvalid,
            "the body must be {\"subject\": \"<12-digit citizen id>\"}",
        )
    })?;
    if request.subject.len() != 12 || !request.subject.bytes().all(|b| b.is_ascii_digit()) {
        return Err(GatewayError::new(
            ErrorCode::RequestBodyInvalid,
            "subject must be a 12-digit citizen id",
        ));
    }
    // The form's level, consent to this form, and the subject: before any source is asked.
    let token = protocol::single_header(&parts.headers, &X_CITIZEN_ASSERTION)?
        .and_then(|value| value.to_str().ok())
        .map(str::trim);
    let now = gateway.clock().now();
    let assertion = exchange::verify_citizen(
        gateway,
        &runtime,
        token,
        &caller.client,
        form.assurance_level,
        now,
    )?;
    if assertion.consent.form.as_deref() != Some(form.id.as_str()) {
        return Err(GatewayError::new(
            ErrorCode::CitizenConsentMissing,
            "the citizen did not consent to this form",
        ));
    }
    exchange::bind_subject(&assertion, &request.subject)?;
    let token = token.unwrap_or_default();

    // Fan-out: every source at once, each through the pipeline under its own deadline.
    let form_deadline = started + form.deadline;
    let fetches = form.sources.iter().map(|source| {
        let deadline = (started + source.timeout).min(form_deadline);
        let sub_id = uuid::Uuid::new_v4().to_string();
        let mut request = source_request(
            &caller,
            &form,
            source,
            &request.subject,
            token,
            &sub_id,
            deadline,
        );
        // Verified once for the form: each source request carries the result, so the
        // pipeline does not verify the same JWS again (it still checks level and consent).
        request.extensions_mut().insert(VerifiedAssertion {
            token_digest: VerifiedAssertion::digest(token),
            assertion: assertion.clone(),
        });
        let gateway = gateway.clone();
        async move {
            let outcome = tokio::time::timeout_at(
                deadline + HAND_BACK_GRACE,
                exchange::spawn_exchange(gateway, request, Arrival::Consumer),
            )
            .await;
            let fetched = match outcome {
                Ok(response) => read_source(response, deadline).await,
                Err(_) => Err(ErrorCode::AutofillSourceTimeout),
            };
            (sub_id, fetched)
        }
    });
    let fetched = futures_util::future::join_all(fetches).await;
    Ok(answer(gateway, &form, &fetched, message_id))
}

/// A source request, as a portal would send it to `/r1/…`, with the portal's verified
/// certificate and the source's deadline attached.
fn source_request(
    caller: &Caller,
    form: &Form,
    source: &crate::contract::form::FormSource,
    subject: &str,
    assertion: &str,
    message_id: &str,
    deadline: Instant,
) -> Request {
    let target = format!("/r1/{}{}", source.service, source.path(subject));
    let mut request = Request::new(Body::empty());
    *request.method_mut() = Method::GET;
    if let Ok(uri) = target.parse() {
        *request.uri_mut() = uri;
    }
    let headers = request.headers_mut();
    for (name, value) in [
        (protocol::X_ROAD_CLIENT, caller.client.to_string()),
        (X_ROAD_ID, message_id.to_owned()),
        (X_PURPOSE, form.purpose.clone()),
        (X_ROAD_ISSUE, form.procedure.clone()),
        (X_CITIZEN_ASSERTION, assertion.to_owned()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    request.extensions_mut().insert(caller.certificate.clone());
    request.extensions_mut().insert(InnerDeadline(deadline));
    request
}

/// A source's answer: its record and how it was obtained, or the reason code its fields
/// are left to the citizen.
type Fetched = Result<(Value, Answered), ErrorCode>;

async fn read_source(response: Response, deadline: Instant) -> Fetched {
    let status = response.status();
    let answered = response.extensions().get::<Answered>().cloned();
    let collect = http_body_util::Limited::new(response.into_body(), MAX_SOURCE_ANSWER_BYTES);
    #[allow(clippy::disallowed_methods)] // Bounded: `Limited` caps it, the deadline ends it.
    let body = tokio::time::timeout_at(deadline + HAND_BACK_GRACE, collect.collect())
        .await
        .map_err(|_| ErrorCode::AutofillSourceTimeout)?
        .map_err(|_| ErrorCode::UpstreamBodyTooLarge)?
        .to_bytes();
    let value: Value = serde_json::from_slice(&body).map_err(|_| ErrorCode::UpstreamMalformed)?;
    match answered {
        Some(answered) if status.is_success() => Ok((value, answered)),
        _ => {
            let code = value
                .get("code")
                .and_then(Value::as_str)
                .and_then(|code| ErrorCode::ALL.iter().copied().find(|c| c.as_str() == code))
                .unwrap_or(ErrorCode::UpstreamStatus);
            Err(match code {
                ErrorCode::GatewayTimeout | ErrorCode::UpstreamTimeout => {
                    ErrorCode::AutofillSourceTimeout
                }
                other => other,
            })
        }
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The filled form: every field with its value and provenance, or `ask_citizen` and why.
fn answer(
    gateway: &Gateway,
    form: &Form,
    fetched: &[(String, Fetched)],
    message_id: &str,
) -> Value {
    let now = gateway.clock().now();
    let fields: Vec<Value> = form
        .fields
        .iter()
        .map(|field| {
            let source = &form.sources[field.source];
            let (source_message, outcome) = &fetched[field.source];
            let filled = outcome
                .as_ref()
                .map_err(|code| *code)
                .and_then(|(record, answered)| {
                    field
                        .extract(record)
                        .map(|value| (value, answered))
                        .map_err(|unfilled| match unfilled {
                            Unfilled::Missing => ErrorCode::AutofillValueMissing,
                            Unfilled::Unusable => ErrorCode::AutofillValueUnusable,
                        })
                });
            match filled {
                Ok((value, answered)) => {
                    let cached = answered.source == super::cache::Source::Cached;
                    let contract = answered.contract.as_deref();
                    let mut provenance = json!({
                        "source": source.name,
                        "service": source.service.to_string(),
                        "provider": source.service.provider.member.to_string(),
                        "messageId": source_message,
                        "retrievedAt": rfc3339(answered.retrieved_at),
                        "mode": if cached { "cached" } else { "live" },
                        "contract": contract.map(|c| c.id.clone()),
                        "legalBasis": contract.map(|c| c.legal_basis.clone()),
                        "classification": contract.map(|c| c.classification),
                    });
                    if cached {
                        provenance["ageSeconds"] =
                            json!((now - answered.retrieved_at).whole_seconds().max(0));
                    }
                    json!({
                        "name": field.name,
                        "label": field.label,
                        "status": "filled",
                        "value": value,
                        "provenance": provenance,
                    })
                }
                Err(reason) => json!({
                    "name": field.name,
                    "label": field.label,
                    "status": "ask_citizen",
                    "reason": reason.as_str(),
                    "source": source.name,
                }),
            }
        })
        .collect();
    let complete = fields.iter().all(|field| field["status"] == "filled");
    let sources: Vec<Value> = form
        .sources
        .iter()
        .zip(fetched)
        .map(|(source, (source_message, outcome))| match outcome {
            Ok((_, answered)) => json!({
                "name": source.name,
                "service": source.service.to_string(),
                "messageId": source_message,
                "status": "answered",
                "mode": if answered.source == super::cache::Source::Cached { "cached" } else { "live" },
            }),
            Err(reason) => json!({
                "name": source.name,
                "service": source.service.to_string(),
                "messageId": source_message,
                "status": "failed",
                "reason": reason.as_str(),
            }),
        })
        .collect();
    json!({
        "form": form.id,
        "title": form.title,
        "procedure": form.procedure,
        "legalBasis": form.legal_basis,
        "messageId": message_id,
        "complete": complete,
        "fields": fields,
        "sources": sources,
    })
}

/// `GET /citizen/v1/access`: who accessed the citizen's data, as the citizen may see it.
async fn access(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let request_in_at = gateway.clock().now();
    let (parts, _) = request.into_parts();
    let (message_id, refusal) = match message_id(&parts) {
        Ok(id) => (id, None),
        Err((id, error)) => (id, Some(error)),
    };
    let mut subject_digest = None;
    let mut client = None;
    let outcome = match refusal {
        Some(error) => Err(error),
        None => accesses_of(&gateway, &parts, &mut client, &mut subject_digest).await,
    };
    let bytes = outcome
        .as_ref()
        .ok()
        .map(|body| serde_json::to_vec(body).unwrap_or_default());
    let error_code = outcome.as_ref().err().map(GatewayError::code);
    let mut response = respond(&message_id, outcome, "citizen access view");
    if gateway.journal().is_enabled() {
        let record = super::admin::query_record(
            &gateway,
            super::admin::QueryRecord {
                message_id: &message_id,
                client,
                parts: &parts,
                operation: Some("citizen-access".to_owned()),
                peer_fingerprint: parts
                    .extensions
                    .get::<PeerCertificate>()
                    .map(|peer| peer.fingerprint_sha256.clone()),
                status: response.status().as_u16(),
                error_code,
                request_in_at,
                response_bytes: bytes.as_ref().map_or(0, |b| b.len() as u64),
                response_digest: bytes.as_ref().map(|b| gateway.journal().digest(&[b])),
                subject_digest,
            },
        );
        // Journaled before acknowledged, as every exchange.
        if let Err(error) = gateway.journal().append(record).await {
            tracing::error!(error = %error, "journal append failed; refusing to answer");
            response = exchange::journal_refusal(&error).into_problem(Some(&message_id));
        }
    }
    response
}

async fn accesses_of(
    gateway: &Gateway,
    parts: &Parts,
    client: &mut Option<String>,
    subject_digest: &mut Option<String>,
) -> Result<Value, GatewayError> {
    if parts.uri.query().is_some_and(|query| !query.is_empty()) {
        return Err(GatewayError::new(
            ErrorCode::RequestQueryNotAllowed,
            "this route takes no query parameters",
        ));
    }
    let runtime = gateway.runtime();
    let caller = authenticate(gateway, &runtime, parts)?;
    *client = Some(caller.client.to_string());
    let token = protocol::single_header(&parts.headers, &X_CITIZEN_ASSERTION)?
        .and_then(|value| value.to_str().ok())
        .map(str::trim);
    let assertion = exchange::verify_citizen(
        gateway,
        &runtime,
        token,
        &caller.client,
        crate::contract::AssuranceLevel::Medium,
        gateway.clock().now(),
    )?;
    let citizen = super::admin::CitizenId::parse(&assertion.subject).ok_or_else(|| {
        GatewayError::new(
            ErrorCode::CitizenAssertionInvalid,
            "the assertion's subject is not a citizen id",
        )
    })?;
    *subject_digest = Some(citizen.digest(gateway));
    let accesses = super::admin::subject_accesses(
        gateway,
        &citizen,
        super::admin::Period::default(),
        super::admin::Viewer::Citizen,
    )
    .await?;
    serde_json::to_value(&accesses).map_err(|_| {
        GatewayError::new(
            ErrorCode::InternalUnexpected,
            "the accesses could not be serialised",
        )
    })
}
