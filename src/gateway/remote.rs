//! The consumer side of the federation: a service of another member, answered by
//! that member's gateway over its exchange listener.
//!
//! Owns, per attempt: choosing the provider's secure server (the global
//! configuration lists them; a hub in between when the service asks for one), the
//! JWE of the body for that server's encryption key, `Content-Digest`, the RFC 9421
//! signature (fresh nonce per attempt, so a failover retry is never a replay), the
//! call, and on the way back: the answer's signature (by that server, covering this
//! request's signature), its digest, and decrypting its payload with this node's key.
//!
//! Failover: servers are tried in turn while the deadline lasts; a connection that
//! could not be made moves on whatever the method; after a request may have reached
//! a server, only idempotent methods are sent again. All down: 503
//! `federation.provider_unavailable`.

use super::Gateway;
use super::context::ExchangeContext;
use super::federation::{self, Federation, LABEL, SIGNER_CERTIFICATE, TARGET_SERVER, read_limited};
use crate::adapters::Record;
use crate::error::{ErrorCode, GatewayError};
use crate::identity::ServiceId;
use crate::msgsig::{DigestAlgorithm, HttpMessage, Message, ResponseWithRequest};
use crate::trust::global::{GlobalConfiguration, SecureServer};
use axum::http::Method;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The largest answer accepted from a provider's gateway (the JWE of it).
pub const MAX_ANSWER_BYTES: usize = 16 << 20;

/// Spreads first attempts over a provider's servers.
static NEXT_SERVER: AtomicUsize = AtomicUsize::new(0);

/// The fail-over warnings, at most one line a second each with the count it stands for
/// (issue 12: a provider server that is down fails every request sent to it first). The
/// line names the server of the occurrence it writes; `datagate_federation_failovers_total`
/// counts every one.
static UNREACHABLE_WARNINGS: crate::observe::Throttled = crate::observe::Throttled::new();
static INTERRUPTED_WARNINGS: crate::observe::Throttled = crate::observe::Throttled::new();

/// The provider member's gateway for one service.
#[derive(Debug, Clone)]
pub struct RemoteProvider {
    service: ServiceId,
    global: Arc<GlobalConfiguration>,
}

/// Whether sending `method` twice does no more than sending it once.
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    )
}

impl RemoteProvider {
    /// The remote provider of `service`, when this node is in a federation whose
    /// configuration lists the service's member. `Ok(None)`: no federation, or the
    /// service is not the federation's.
    pub fn resolve(
        gateway: &Gateway,
        service: &ServiceId,
    ) -> Result<Option<RemoteProvider>, GatewayError> {
        let Some(federation) = gateway.federation() else {
            return Ok(None);
        };
        let global = federation.global(gateway.clock().now())?;
        if global.service(service).is_none()
            && global
                .secure_servers_of(&service.provider.member)
                .is_empty()
        {
            return Ok(None);
        }
        Ok(Some(RemoteProvider {
            service: service.clone(),
            global,
        }))
    }

    /// Sends the request, signed and encrypted, and opens the answer.
    pub async fn call(
        &self,
        gateway: &Gateway,
        ctx: &mut ExchangeContext,
        query: &[(String, String)],
        body: &bytes::Bytes,
        content_type: Option<&str>,
    ) -> Result<Record, GatewayError> {
        let federation = gateway.federation().ok_or_else(|| {
            GatewayError::new(
                ErrorCode::FederationConfigurationMissing,
                "this node is not in a federation",
            )
        })?;
        let servers = self.global.secure_servers_of(&self.service.provider.member);
        if servers.is_empty() {
            return Err(GatewayError::new(
                ErrorCode::FederationProviderUnavailable,
                "the global configuration lists no secure server for the provider",
            ));
        }
        let mut canonical = format!("/r1/{}{}", self.service, ctx.target.path());
        if !query.is_empty() {
            canonical.push('?');
            canonical.push_str(&crate::protocol::canonical_query(query));
        }
        let hub = self
            .global
            .service(&self.service)
            .and_then(|service| service.hubs.first())
            .and_then(|name| self.global.hub(name));
        let first = NEXT_SERVER.fetch_add(1, Ordering::Relaxed);
        let mut last_error = None;
        ctx.trail.request_out_at = Some(gateway.clock().now());
        for attempt in 0..servers.len() {
            let server = &servers[(first + attempt) % servers.len()];
            if tokio::time::Instant::now() >= ctx.deadline {
                break;
            }
            let sent = self
                .attempt(
                    gateway,
                    federation,
                    ctx,
                    server,
                    hub.map(|hub| &hub.address),
                    &canonical,
                    body,
                    content_type,
                )
                .await;
            match sent {
                Ok(record) => {
                    ctx.trail.response_in_at = Some(gateway.clock().now());
                    return Ok(record);
                }
                Err(Attempt::Refused(error)) => {
                    ctx.trail.response_in_at = Some(gateway.clock().now());
                    return Err(error);
                }
                Err(Attempt::Unreachable(reason)) => {
                    if let Some(occurrences) = UNREACHABLE_WARNINGS.occurrence() {
                        tracing::warn!(server = %server.name, reason, occurrences, "provider server unreachable; trying the next");
                    }
                    metrics::counter!("datagate_federation_failovers_total").increment(1);
                    last_error = Some(reason);
                }
                Err(Attempt::Interrupted(reason)) => {
                    if let Some(occurrences) = INTERRUPTED_WARNINGS.occurrence() {
                        tracing::warn!(server = %server.name, reason, occurrences, "exchange interrupted after sending");
                    }
                    last_error = Some(reason);
                    if !idempotent(&ctx.method) {
                        break;
                    }
                }
            }
        }
        ctx.trail.response_in_at = Some(gateway.clock().now());
        Err(GatewayError::new(
            ErrorCode::FederationProviderUnavailable,
            format!(
                "no secure server of the provider answered ({})",
                last_error.unwrap_or("deadline")
            ),
        ))
    }

    /// One attempt at one server.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        gateway: &Gateway,
        federation: &Federation,
        ctx: &mut ExchangeContext,
        server: &SecureServer,
        hub: Option<&url::Url>,
        canonical: &str,
        body: &bytes::Bytes,
        content_type: Option<&str>,
    ) -> Result<Record, Attempt> {
        let now = gateway.clock().now();
        let target_uri = federation::target_uri(&server.address, canonical);
        // The body travels as a JWE only the provider's server can open.
        let payload = if body.is_empty() {
            bytes::Bytes::new()
        } else {
            let recipient =
                crate::keystore::PublicKey::from_spki_der(server.encryption_key.spki_der())
                    .map_err(|_| {
                        Attempt::Refused(GatewayError::new(
                            ErrorCode::InternalUnexpected,
                            "the provider's encryption key is unusable",
                        ))
                    })?;
            let compact =
                crate::jwe::encrypt(body, &recipient, server.encryption_key.kid(), content_type)
                    .map_err(|error| {
                        let code = if error.code() == "jwe.too_large" {
                            ErrorCode::RequestBodyTooLarge
                        } else {
                            ErrorCode::InternalUnexpected
                        };
                        Attempt::Refused(GatewayError::new(
                            code,
                            format!("the body cannot be encrypted ({})", error.code()),
                        ))
                    })?;
            bytes::Bytes::from(compact)
        };
        let mut request = Message::request(ctx.method.as_str(), &target_uri)
            .header(
                "content-digest",
                &crate::msgsig::content_digest(&payload, DigestAlgorithm::Sha256),
            )
            .header("x-road-client", &ctx.client.to_string())
            .header("x-road-id", &ctx.message_id)
            .header(TARGET_SERVER, &server.name);
        if let Some(purpose) = &ctx.purpose {
            request.add_header("x-purpose", purpose.as_str());
        }
        if let Some(user) = &ctx.user_id {
            request.add_header("x-road-userid", user);
        }
        if let Some(issue) = &ctx.issue {
            request.add_header("x-road-issue", issue);
        }
        if let Some(assertion) = &ctx.citizen_assertion {
            request.add_header("x-citizen-assertion", &assertion.0);
        }
        if !payload.is_empty() {
            request.add_header("content-type", "application/jose");
        }
        let components = federation::request_components(&request);
        let signed = federation
            .sign(LABEL, &components, &request, now)
            .map_err(Attempt::Refused)?;
        request.add_header("signature-input", &signed.signature_input);
        request.add_header("signature", &signed.signature);
        ctx.trail.request_signature = Some(signed.signature.clone());

        // Directly to the server, or to the hub with the same path: the hub forwards to
        // the server named in the covered `X-Road-Target-Server`.
        let url = match hub {
            Some(hub) => federation::target_uri(hub, canonical),
            None => target_uri.clone(),
        };
        let mut outgoing = federation
            .client()
            .request(ctx.method.clone(), &url)
            .header(SIGNER_CERTIFICATE, federation.certificate_header())
            .body(payload);
        for (name, value) in request.headers() {
            outgoing = outgoing.header(name.as_str(), value.as_str());
        }
        let remaining = ctx
            .deadline
            .saturating_duration_since(tokio::time::Instant::now());
        let mut response = match outgoing.timeout(remaining).send().await {
            Ok(response) => response,
            Err(error) if error.is_connect() => {
                return Err(Attempt::Unreachable("connection failed"));
            }
            Err(error) if error.is_timeout() => return Err(Attempt::Interrupted("timeout")),
            Err(_) => return Err(Attempt::Interrupted("transport")),
        };
        let status = response.status().as_u16();
        let mut answer = Message::response(status);
        for (name, value) in response.headers() {
            if let Ok(value) = value.to_str() {
                answer.add_header(name.as_str(), value);
            }
        }
        let bytes = read_limited(&mut response, MAX_ANSWER_BYTES)
            .await
            .map_err(|_| Attempt::Interrupted("answer cut short or too large"))?;
        let invalid = |detail: &str| {
            Attempt::Refused(GatewayError::new(
                ErrorCode::FederationResponseInvalid,
                format!("the provider's answer failed verification: {detail}"),
            ))
        };

        // A hub's own refusal (the target server unreachable, the relay aborted) is not
        // signed by the server we asked: nothing in it can be trusted but its status,
        // which may only make us try another server (idempotent requests only).
        if hub.is_some() && status >= 500 && answer.header_values(SIGNER_CERTIFICATE).is_empty() {
            return Err(Attempt::Interrupted("the hub could not relay"));
        }
        // The answer must be signed by the server we asked, over our signature.
        let bound = ResponseWithRequest {
            response: &answer,
            request: &request,
        };
        // Freshness against the time the answer arrived, not when the attempt began.
        let signer = federation::verify_signer(
            &self.global,
            &bound,
            LABEL,
            SIGNER_CERTIFICATE,
            gateway.clock().now(),
            &federation.settings,
        )
        .map_err(|error| invalid(error.code().as_str()))?;
        match &signer.peer {
            crate::trust::global::Peer::SecureServer { member, name }
                if *member == self.service.provider.member && *name == server.name => {}
            _ => return Err(invalid("signed by another server than the one asked")),
        }
        signer
            .verified
            .require_covered(&federation::response_components())
            .map_err(|_| invalid("the signature does not cover the request's"))?;
        crate::msgsig::verify_message_content_digest(&bound, &bytes)
            .map_err(|error| invalid(error.code()))?;
        ctx.trail.remote_key_id = Some(signer.key_id);

        if status >= 400 {
            // A refusal by the provider's gateway. Its decisions about the request (the
            // contract, the request's shape, its quota) are the consumer system's to see;
            // a refusal of the gateway-to-gateway leg (this node's signature, payload or
            // registration) is not the consumer system's fault and is reported as such.
            let code = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|problem| problem["code"].as_str().map(str::to_owned));
            let known = code.as_deref().and_then(ErrorCode::from_name);
            let leg = code.as_deref().is_some_and(|code| {
                ["signature.", "digest.", "jwe.", "trust.", "federation."]
                    .iter()
                    .any(|prefix| code.starts_with(prefix))
            });
            let error = match known {
                Some(code) if !leg => {
                    GatewayError::new(code, "the provider's gateway refused the exchange")
                }
                _ => GatewayError::new(
                    ErrorCode::FederationProviderRefused,
                    format!(
                        "the provider's gateway refused this gateway's request ({})",
                        code.as_deref().unwrap_or("no code")
                    ),
                ),
            };
            return Err(Attempt::Refused(error));
        }
        if bytes.is_empty() {
            return Ok(Record::Json(bytes));
        }
        if answer
            .header_values("content-type")
            .first()
            .is_none_or(|value| !value.starts_with("application/jose"))
        {
            return Err(invalid("the answer is not encrypted"));
        }
        let compact =
            std::str::from_utf8(&bytes).map_err(|_| invalid("the answer is not a JWE"))?;
        let opened = crate::jwe::decrypt(
            compact.trim(),
            &federation.settings.encryption_key,
            &crate::jwe::Policy::production(),
        )
        .map_err(|error| invalid(error.code()))?;
        Ok(Record::Json(bytes::Bytes::from(opened.plaintext)))
    }
}

/// How one attempt failed.
enum Attempt {
    /// Nothing reached the server: try the next one.
    Unreachable(&'static str),
    /// The request may have reached the server: try again only if idempotent.
    Interrupted(&'static str),
    /// A final answer (a refusal, or an answer that failed verification).
    Refused(GatewayError),
}
