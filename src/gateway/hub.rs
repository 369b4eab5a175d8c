//! The hub (NDXP): relays exchanges between member gateways it cannot read, and (in
//! central mode) serves the signed global configuration.
//!
//! A relay, in order: the TLS peer is a registered secure server; the request names
//! a target server of the service's member, and the global configuration lists this
//! hub for that service; the sender's `sig1` verifies over the head (which covers
//! `Content-Digest`) with the certificate the global configuration registers for the
//! member in `X-Road-Client`, fresh and never seen before; the hub adds its own
//! signature (`hub`) over `sig1`, the method, the target and the message id, so the
//! provider can tell the path; then it streams the body to the target server,
//! checking the digest as the bytes pass and aborting the relay if they do not
//! match, and streams the answer back untouched (it is signed by the provider over
//! `sig1` and encrypted for the consumer's gateway: the hub holds no key that opens it).
//! Each relay is journaled (leg `hub`) before the answer's head goes back.

use super::Gateway;
use super::federation::{
    self, HUB_CERTIFICATE, HUB_LABEL, LABEL, SIGNER_CERTIFICATE, TARGET_SERVER,
};
use super::inbound::{EXCHANGE_PREFIX, hub_components, signature_member, signed_view};
use crate::error::{ErrorCode, GatewayError, Origin};
use crate::journal::ExchangeRecord;
use crate::msgsig::DigestVerifier;
use crate::protocol;
use crate::trust::PeerCertificate;
use crate::trust::global::Peer as GlobalPeer;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Request headers a hub forwards (everything else stays on the hop).
const FORWARDED_REQUEST: [&str; 12] = [
    "content-type",
    "content-digest",
    "signature-input",
    "signature",
    "x-road-client",
    "x-road-id",
    "x-road-userid",
    "x-road-issue",
    "x-purpose",
    "x-citizen-assertion",
    TARGET_SERVER,
    SIGNER_CERTIFICATE,
];
/// Answer headers a hub passes back.
const FORWARDED_RESPONSE: [&str; 9] = [
    "content-type",
    "content-digest",
    "signature-input",
    "signature",
    "x-road-id",
    "x-road-error",
    "retry-after",
    SIGNER_CERTIFICATE,
    "x-road-request-hash",
];

/// `GET /exchange/v1/globalconf`: the signed global configuration this node serves in
/// central mode (404 otherwise). It is signed, so who fetches it needs no registration.
pub async fn serve_global_configuration(State(gateway): State<Arc<Gateway>>) -> Response {
    let Some(path) = gateway
        .federation()
        .and_then(|f| f.settings.serve_global_configuration.clone())
    else {
        return GatewayError::new(ErrorCode::RequestRouteNotFound, "no such route")
            .into_problem(None);
    };
    match tokio::fs::read(&path).await {
        Ok(signed) => (
            [(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/jose"),
            )],
            signed,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(error = %error, "cannot read the global configuration to serve");
            GatewayError::new(
                ErrorCode::FederationConfigurationMissing,
                "the global configuration is unavailable",
            )
            .into_problem(None)
        }
    }
}

/// Whether this request is for this node's hub to relay: the node is a hub, and the
/// request names a target server other than this node.
pub fn is_relay(gateway: &Gateway, request: &Request) -> bool {
    let Some(federation) = gateway.federation() else {
        return false;
    };
    federation.settings.hub
        && request
            .headers()
            .get(TARGET_SERVER)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|target| target.trim() != federation.settings.server_name)
}

/// What a relay learned, for its journal record.
#[derive(Default)]
struct RelayTrail {
    client: Option<String>,
    service: Option<String>,
    signature: Option<String>,
    sender_key_id: Option<String>,
    request_out_at: Option<time::OffsetDateTime>,
    response_in_at: Option<time::OffsetDateTime>,
}

/// Relays one exchange (see the module doc), on a task of its own.
pub async fn relay(gateway: Arc<Gateway>, request: Request) -> Response {
    // Boxed, as an exchange's task is (`exchange::spawn_exchange`): the task then moves a pointer.
    match tokio::spawn(Box::pin(relay_journaled(gateway, request))).await {
        Ok(response) => response,
        Err(_) => GatewayError::new(
            ErrorCode::InternalUnexpected,
            "the node failed unexpectedly",
        )
        .into_problem(None),
    }
}

/// The warnings of failed relays, one throttle per code.
static RELAY_WARNINGS: crate::observe::ThrottledByCode = crate::observe::ThrottledByCode::new();

async fn relay_journaled(gateway: Arc<Gateway>, request: Request) -> Response {
    let request_in_at = gateway.clock().now();
    let started = tokio::time::Instant::now();
    let method = request.method().to_string();
    let fingerprint = request
        .extensions()
        .get::<PeerCertificate>()
        .map(|peer| peer.fingerprint_sha256.clone());
    let (message_id, refusal) =
        match protocol::single_header(request.headers(), &crate::protocol::X_ROAD_ID)
            .and_then(protocol::message_id)
        {
            Ok(id) => (id, None),
            Err(error) => (uuid::Uuid::new_v4().to_string(), Some(error)),
        };
    let mut trail = RelayTrail::default();
    // As at a gateway's admission: while the hub's journal cannot record, nothing is
    // relayed (the provider is not called for an exchange the hub could not journal).
    let refusal = refusal.or_else(|| super::exchange::journal_accepting(&gateway).err());
    let outcome = match refusal {
        Some(error) => Err(error),
        None => relay_exchange(&gateway, request, &mut trail).await,
    };
    let (mut response, code) = match outcome {
        Ok(response) => (response, None),
        Err(error) => {
            let code = error.code();
            if code.origin() == Origin::Consumer {
                tracing::debug!(code = code.as_str(), "relay refused");
            } else if let Some(occurrences) = RELAY_WARNINGS.occurrence(code) {
                // At most one line per code and second, as for exchanges.
                tracing::warn!(
                    code = code.as_str(),
                    detail = error.detail(),
                    occurrences,
                    "relay failed"
                );
            }
            (error.into_problem(Some(&message_id)), Some(code))
        }
    };
    let journal = gateway.journal();
    if journal.is_enabled() {
        let record = ExchangeRecord {
            message_id: message_id.clone(),
            client: trail.client,
            service: trail.service,
            method,
            operation: None,
            purpose: None,
            contract_id: None,
            peer_fingerprint: fingerprint,
            status: response.status().as_u16(),
            error_code: code.map(|c| c.as_str().to_owned()),
            request_in_at,
            request_out_at: trail.request_out_at,
            response_in_at: trail.response_in_at,
            response_out_at: gateway.clock().now(),
            // The body streams through: its size and digest are the endpoints' to record.
            request_bytes: 0,
            response_bytes: 0,
            request_digest: journal.digest(&[message_id.as_bytes()]),
            response_digest: None,
            subject_digest: None,
            leg: super::context::Leg::Hub.as_str(),
            signature_digest: trail
                .signature
                .as_deref()
                .map(|signature| crate::journal::plain_digest(signature.as_bytes())),
            remote_key_id: trail.sender_key_id,
            key_id: journal.key_id().to_owned(),
        };
        if let Err(error) = journal.append(record).await {
            tracing::error!(error = %error, "journal append failed; refusing to relay the answer");
            response = super::exchange::journal_refusal(&error).into_problem(Some(&message_id));
        }
    }
    let status = response.status().as_u16().to_string();
    metrics::counter!("datagate_relays_total", "status" => status).increment(1);
    if let Some(code) = code {
        metrics::counter!("datagate_refusals_total", "code" => code.as_str()).increment(1);
    }
    metrics::histogram!("datagate_relay_duration_seconds").record(started.elapsed().as_secs_f64());
    response
}

async fn relay_exchange(
    gateway: &Gateway,
    request: Request,
    trail: &mut RelayTrail,
) -> Result<Response, GatewayError> {
    let federation = gateway.federation().ok_or_else(|| {
        GatewayError::new(ErrorCode::FederationMisdirected, "this node is not a hub")
    })?;
    let settings = &federation.settings;
    let now = gateway.clock().now();
    let global = federation.global(now)?;
    let (parts, body) = request.into_parts();
    let limits = gateway.runtime().limits;
    protocol::check_single_headers(&parts.headers)?;
    for name in [TARGET_SERVER, "content-digest", SIGNER_CERTIFICATE] {
        protocol::single_header(&parts.headers, &HeaderName::from_static(name))?;
    }

    // The connection: a registered secure server (hubs do not relay to each other).
    let certificate = parts.extensions.get::<PeerCertificate>().ok_or_else(|| {
        GatewayError::new(
            ErrorCode::TrustCertificateMissing,
            "a client certificate is required",
        )
    })?;
    match global.authenticate_peer(&certificate.fingerprint_sha256, now) {
        Ok(GlobalPeer::SecureServer { .. }) => {}
        Ok(GlobalPeer::Hub { .. }) | Err(_) => {
            return Err(GatewayError::new(
                ErrorCode::TrustCertificateUnregistered,
                "the TLS certificate is not a registered, effective secure server",
            ));
        }
    }

    // The route: a target server of the service's member, through this hub.
    let path = super::inbound::strip_prefix(parts.uri.path())?;
    let target = protocol::parse_target(path)?;
    let client = protocol::parse_client(parts.headers.get(protocol::X_ROAD_CLIENT))?;
    trail.client = Some(client.to_string());
    trail.service = Some(target.service.to_string());
    let not_allowed =
        |detail: &'static str| GatewayError::new(ErrorCode::FederationRouteNotAllowed, detail);
    let named = parts
        .headers
        .get(TARGET_SERVER)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .unwrap_or_default();
    let server = global
        .secure_servers_of(&target.service.provider.member)
        .iter()
        .find(|server| server.name == named)
        .ok_or_else(|| {
            not_allowed("the target server is not a secure server of the service's member")
        })?;
    if !global
        .service(&target.service)
        .is_some_and(|service| service.hubs.contains(&settings.server_name))
    {
        return Err(not_allowed(
            "the global configuration does not route this service through this hub",
        ));
    }

    // The sender: its signature over the head, by the member's registered server.
    let view = signed_view(&parts, &server.address);
    let (signer, _) =
        federation::authenticate_sender(federation, &global, &view, &client.member, now)?;
    if signer.key_id != certificate.fingerprint_sha256 {
        return Err(GatewayError::new(
            ErrorCode::SignatureKeyNotAuthorised,
            "the signer is not the connecting secure server",
        ));
    }
    federation::remember_nonce(federation, &signer, now)?;
    trail.signature = signature_member(&view, LABEL);
    trail.sender_key_id = Some(signer.key_id.clone());
    // The sender's share of the hub's in-flight relays, as on any other listener.
    let wait_until = tokio::time::Instant::now() + super::admission::WAIT_AT_MOST;
    let _ticket = gateway
        .admission()
        .admit_or_wait(&client, &limits, wait_until)
        .await?;

    // The hub's countersignature, appended to the sender's.
    let countersigned = federation.sign(HUB_LABEL, &hub_components(), &view, now)?;
    let digest = parts
        .headers
        .get("content-digest")
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| GatewayError::new(ErrorCode::DigestMissing, "no Content-Digest"))?;
    let verifier =
        DigestVerifier::new(digest).map_err(|error| federation::signature_error(&error))?;

    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or(EXCHANGE_PREFIX, |target| target.as_str());
    let url = format!(
        "{}{}",
        server.address.as_str().trim_end_matches('/'),
        path_and_query
    );
    let mut outgoing = federation
        .client()
        .request(parts.method.clone(), url)
        .header(HUB_CERTIFICATE, federation.certificate_header());
    for name in FORWARDED_REQUEST {
        for value in parts.headers.get_all(name) {
            let value = match name {
                "signature-input" => format!(
                    "{}, {}",
                    value.to_str().unwrap_or_default(),
                    countersigned.signature_input
                ),
                "signature" => format!(
                    "{}, {}",
                    value.to_str().unwrap_or_default(),
                    countersigned.signature
                ),
                _ => value.to_str().unwrap_or_default().to_owned(),
            };
            outgoing = outgoing.header(name, value);
        }
    }
    // The body streams through, checked against its digest on the way; a mismatch ends
    // the stream with an error, which aborts the call to the provider.
    let tampered = Arc::new(AtomicBool::new(false));
    let limit = federation::jwe_body_limit(&limits);
    let stream = futures_util::stream::unfold(
        (
            body.into_data_stream(),
            Some(verifier),
            0usize,
            tampered.clone(),
        ),
        move |(mut data, mut verifier, seen, tampered)| async move {
            match data.next().await {
                Some(Ok(chunk)) => {
                    let seen = seen + chunk.len();
                    if seen > limit {
                        return Some((
                            Err(std::io::Error::other("body too large")),
                            (data, None, seen, tampered),
                        ));
                    }
                    if let Some(verifier) = verifier.as_mut() {
                        verifier.update(&chunk);
                    }
                    Some((Ok(chunk), (data, verifier, seen, tampered)))
                }
                Some(Err(_)) => Some((
                    Err(std::io::Error::other("the sender's body failed")),
                    (data, None, seen, tampered),
                )),
                None => match verifier.take().map(DigestVerifier::finish) {
                    Some(Err(_)) => {
                        tampered.store(true, Ordering::SeqCst);
                        Some((
                            Err(std::io::Error::other("digest mismatch")),
                            (data, None, seen, tampered),
                        ))
                    }
                    _ => None,
                },
            }
        },
    );
    trail.request_out_at = Some(gateway.clock().now());
    let deadline = limits.request_timeout;
    let sent = outgoing
        .body(reqwest::Body::wrap_stream(stream))
        .timeout(deadline)
        .send()
        .await;
    trail.response_in_at = Some(gateway.clock().now());
    if tampered.load(Ordering::SeqCst) {
        return Err(GatewayError::new(
            ErrorCode::DigestMismatch,
            "the body does not match its Content-Digest; the relay was aborted",
        ));
    }
    let answer = sent.map_err(|error| {
        GatewayError::new(
            ErrorCode::FederationProviderUnavailable,
            if error.is_connect() {
                "the target server could not be reached"
            } else {
                "the target server did not answer"
            },
        )
    })?;
    let mut response = Response::builder()
        .status(StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY));
    for name in FORWARDED_RESPONSE {
        for value in answer.headers().get_all(name) {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value.as_bytes()),
            ) {
                response = response.header(name, value);
            }
        }
    }
    response
        .body(Body::from_stream(answer.bytes_stream()))
        .map_err(|_| GatewayError::new(ErrorCode::InternalUnexpected, "cannot relay the answer"))
}
