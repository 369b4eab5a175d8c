//! The provider side of the federation: what the exchange listener does around the
//! shared pipeline.
//!
//! Before the contract phases ([`authenticate`]): the TLS peer must be a secure
//! server or hub registered in the global configuration; the request must be meant
//! for this server (`X-Road-Target-Server`, covered); its `sig1` signature must verify
//! with the attached certificate, whose SHA-256 is the `keyid` and which the global
//! configuration registers, effective now, for the member in `X-Road-Client`; it must
//! cover the protocol's components; `created`/`expires` must be fresh and the nonce
//! new. A request relayed by a hub also carries the hub's signature over `sig1`, by
//! the hub the TLS connection came from.
//!
//! When the body is read ([`open_body`]): its `Content-Digest` is checked over the
//! bytes received, then the JWE is decrypted with this node's encryption key.
//!
//! After the pipeline ([`seal`]): every answer, refusals included, is signed over the
//! request's signature (`;req`) and a data answer is encrypted for the calling
//! gateway's encryption key.

use super::context::{ExchangeContext, Peer};
use super::federation::{
    self, Federation, HUB_CERTIFICATE, HUB_LABEL, LABEL, SIGNER_CERTIFICATE, TARGET_SERVER,
};
use super::{Gateway, Runtime};
use crate::error::{ErrorCode, GatewayError};
use crate::msgsig::{Component, DigestAlgorithm, HttpMessage, Message, ResponseWithRequest};
use crate::trust::PeerCertificate;
use crate::trust::global::Peer as GlobalPeer;
use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use std::sync::Arc;

/// The path prefix of the exchange listener.
pub const EXCHANGE_PREFIX: &str = "/exchange/v1";

/// The exchange listener's routes: the signed global configuration (central mode),
/// and `/exchange/v1/r1/...`: exchanges for this node, or relays when it is a hub.
pub fn router(gateway: Arc<Gateway>) -> axum::Router {
    axum::Router::new()
        .route(
            "/exchange/v1/globalconf",
            axum::routing::get(super::hub::serve_global_configuration),
        )
        .route(
            "/exchange/v1/contracts",
            axum::routing::get(super::publication::serve_contracts),
        )
        .route(
            "/exchange/v1/cache/invalidate",
            axum::routing::post(super::cache::invalidate),
        )
        .fallback(
            |axum::extract::State(gateway): axum::extract::State<Arc<Gateway>>,
             request: axum::extract::Request| async move {
                if super::hub::is_relay(&gateway, &request) {
                    return super::hub::relay(gateway, request).await;
                }
                super::exchange::spawn_exchange(
                    gateway,
                    request,
                    super::exchange::Arrival::Exchange,
                )
                .await
            },
        )
        .with_state(gateway)
}

/// The `/r1/...` part of an exchange-listener path.
pub fn strip_prefix(path: &str) -> Result<&str, GatewayError> {
    path.strip_prefix(EXCHANGE_PREFIX)
        .filter(|rest| rest.starts_with("/r1/"))
        .ok_or_else(|| GatewayError::new(ErrorCode::RequestRouteNotFound, "no such route"))
}

/// The request as the signature saw it: its method, the `@target-uri` computed from
/// the named server's address and the path and query as received, and its headers.
pub fn signed_view(parts: &Parts, address: &url::Url) -> Message {
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |target| target.as_str());
    let uri = format!("{}{}", address.as_str().trim_end_matches('/'), path);
    let mut message = Message::request(parts.method.as_str(), &uri);
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            message.add_header(name.as_str(), value);
        }
    }
    message
}

/// The `label` member of a `Signature` header value (`sig1=:…:`), as the signer wrote it:
/// what every node of the path journals a digest of.
pub fn signature_member(message: &dyn HttpMessage, label: &str) -> Option<String> {
    let prefix = format!("{label}=");
    message
        .header_values("signature")
        .iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .find(|member| member.starts_with(&prefix))
        .map(str::to_owned)
}

fn federation_of(gateway: &Gateway) -> Result<&Arc<Federation>, GatewayError> {
    gateway.federation().ok_or_else(|| {
        GatewayError::new(
            ErrorCode::FederationMisdirected,
            "this node takes no federated exchanges",
        )
    })
}

/// Authenticates the gateway that signed the request (see the module doc), and
/// remembers what the answer's signature must be bound to.
pub fn authenticate(
    gateway: &Gateway,
    ctx: &mut ExchangeContext,
    parts: &Parts,
    certificate: &PeerCertificate,
) -> Result<Peer, GatewayError> {
    let federation = federation_of(gateway)?;
    let now = gateway.clock().now();
    let global = federation.global(now)?;
    let settings = &federation.settings;
    let target = crate::protocol::single_header(
        &parts.headers,
        &axum::http::HeaderName::from_static(TARGET_SERVER),
    )?
    .and_then(|value| value.to_str().ok())
    .map(str::trim)
    .unwrap_or_default();
    // One signer certificate, one digest: a repeated header would be ambiguous.
    for name in [SIGNER_CERTIFICATE, "content-digest", HUB_CERTIFICATE] {
        crate::protocol::single_header(&parts.headers, &axum::http::HeaderName::from_static(name))?;
    }
    if target != settings.server_name {
        return Err(GatewayError::new(
            ErrorCode::FederationMisdirected,
            "the request is meant for another secure server",
        ));
    }
    let gateway_member = &gateway.runtime().member;
    let own = global
        .secure_servers_of(gateway_member)
        .iter()
        .find(|server| server.name == settings.server_name)
        .ok_or_else(|| {
            GatewayError::new(
                ErrorCode::FederationConfigurationMissing,
                "the global configuration does not list this secure server",
            )
        })?;
    let view = signed_view(parts, &own.address);
    // From here on the answer is signed, bound to the request's `sig1` as received, even
    // when the request is refused: the caller can trust who refused it.
    if signature_member(&view, LABEL).is_some() {
        let mut bound = Message::request(
            parts.method.as_str(),
            &view.target_uri().unwrap_or_default(),
        );
        for name in ["signature", "signature-input"] {
            for value in view.header_values(name) {
                bound.add_header(name, &value);
            }
        }
        ctx.trail.bound_request = Some(bound);
    }
    let tls_peer = global
        .authenticate_peer(&certificate.fingerprint_sha256, now)
        .map_err(|error| match error.code() {
            "globalconf.peer_unknown" => GatewayError::new(
                ErrorCode::TrustCertificateUnregistered,
                "the TLS certificate is not a registered secure server or hub",
            ),
            _ => GatewayError::new(
                ErrorCode::TrustRegistrationNotEffective,
                "the TLS certificate's registration is not effective now",
            ),
        })?;
    let (signer, name) =
        federation::authenticate_sender(federation, &global, &view, &ctx.client.member, now)?;
    match &tls_peer {
        GlobalPeer::SecureServer { .. } if certificate.fingerprint_sha256 == signer.key_id => {}
        GlobalPeer::SecureServer { .. } => {
            return Err(GatewayError::new(
                ErrorCode::SignatureKeyNotAuthorised,
                "the TLS peer is neither the signer nor a hub",
            ));
        }
        GlobalPeer::Hub { name: hub, .. } => {
            // Only a hub the global configuration routes this service through may relay it.
            if !global
                .service(&ctx.target.service)
                .is_some_and(|service| service.hubs.contains(hub))
            {
                return Err(GatewayError::new(
                    ErrorCode::FederationRouteNotAllowed,
                    "the global configuration does not route this service through that hub",
                ));
            }
            // The hub's countersignature: by the hub on the connection, over `sig1`.
            let relay = federation::verify_signer(
                &global,
                &view,
                HUB_LABEL,
                HUB_CERTIFICATE,
                now,
                settings,
            )?;
            match &relay.peer {
                GlobalPeer::Hub { name, .. }
                    if name == hub && relay.key_id == certificate.fingerprint_sha256 => {}
                _ => {
                    return Err(GatewayError::new(
                        ErrorCode::SignatureKeyNotAuthorised,
                        "the relay signature is not the connecting hub's",
                    ));
                }
            }
            relay
                .verified
                .require_covered(&hub_components())
                .map_err(|error| federation::signature_error(&error))?;
        }
    }
    federation::remember_nonce(federation, &signer, now)?;
    // What the journal matches legs by, and who the answer is encrypted for.
    ctx.trail.request_signature = signature_member(&view, LABEL);
    ctx.trail.remote_key_id = Some(signer.key_id.clone());
    Ok(Peer::SecureServer {
        member: ctx.client.member.clone(),
        name,
        key_id: signer.key_id,
    })
}

/// What a hub's signature covers: the sender's signature, the method, the target and
/// the message id.
pub fn hub_components() -> Vec<Component> {
    vec![
        Component::DictionaryMember {
            name: "signature".into(),
            key: LABEL.into(),
            req: false,
        },
        Component::Method,
        Component::TargetUri,
        Component::Header("x-road-id".into()),
    ]
}

/// Reads the request body (a JWE, capped, under the receive deadline), checks its
/// `Content-Digest` over the bytes received, and decrypts it. Returns the plaintext and
/// its content type (the JWE's `cty`).
pub async fn open_body(
    gateway: &Gateway,
    runtime: &Runtime,
    ctx: &mut ExchangeContext,
    parts: &Parts,
    body: Body,
) -> Result<(bytes::Bytes, Option<String>), GatewayError> {
    let federation = federation_of(gateway)?;
    let limit = federation::jwe_body_limit(&runtime.limits);
    let received = super::exchange::read_body(parts, body, limit, ctx.receive_deadline).await?;
    let digest = crate::protocol::single_header(
        &parts.headers,
        &axum::http::HeaderName::from_static("content-digest"),
    )?
    .and_then(|value| value.to_str().ok())
    .ok_or_else(|| GatewayError::new(ErrorCode::DigestMissing, "no Content-Digest"))?;
    crate::msgsig::verify_content_digest(digest, &received)
        .map_err(|error| federation::signature_error(&error))?;
    if received.is_empty() {
        return Ok((received, None));
    }
    let is_jose = super::exchange::media_type(
        parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    )
    .is_some_and(|media| media == "application/jose");
    let compact = std::str::from_utf8(&received)
        .ok()
        .filter(|_| is_jose)
        .ok_or_else(|| {
            GatewayError::new(
                ErrorCode::JweMalformed,
                "the body is not an application/jose compact JWE",
            )
        })?;
    let opened = federation
        .opener()
        .decrypt(compact.trim())
        .map_err(|error| federation::jwe_error(&error))?;
    Ok((
        bytes::Bytes::from(opened.plaintext),
        opened.header.cty.clone(),
    ))
}

/// Signs the answer over the request's signature and, for a data answer (which only a
/// verified request gets), encrypts its body for the calling gateway. A request
/// refused before this node knew where it stands (no global configuration, not meant
/// for this server, no `sig1`) gets its problem unsigned; the caller's gateway treats
/// such an answer as unverifiable.
pub fn seal(
    gateway: &Gateway,
    ctx: &ExchangeContext,
    mut parts: axum::http::response::Parts,
    body: bytes::Bytes,
) -> Response {
    let Some(bound) = ctx.trail.bound_request.as_ref() else {
        return Response::from_parts(parts, Body::from(body));
    };
    let message_id = ctx.message_id.clone();
    let sealed = (move || -> Result<Response, GatewayError> {
        let federation = federation_of(gateway)?;
        let now = gateway.clock().now();
        let global = federation.global(now)?;
        let mut body = body;
        if parts.status.is_success() && !body.is_empty() {
            let (server, _) = ctx
                .trail
                .remote_key_id
                .as_deref()
                .and_then(|key_id| global.server_by_fingerprint(key_id))
                .ok_or_else(|| {
                    GatewayError::new(
                        ErrorCode::FederationConfigurationMissing,
                        "the calling server left the global configuration",
                    )
                })?;
            let content_type = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            let compact = federation
                .recipient(&server.encryption_key)?
                .encrypt(&body, server.encryption_key.kid(), content_type)
                .map_err(|error| {
                    GatewayError::new(
                        ErrorCode::InternalUnexpected,
                        format!("the answer could not be encrypted ({})", error.code()),
                    )
                })?;
            body = bytes::Bytes::from(compact);
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jose"),
            );
        }
        let digest = crate::msgsig::content_digest(&body, DigestAlgorithm::Sha256);
        let answer = Message::response(parts.status.as_u16())
            .header("content-digest", &digest)
            .header("x-road-id", &ctx.message_id);
        let view = ResponseWithRequest {
            response: &answer,
            request: bound,
        };
        let signed = federation.sign(LABEL, &federation::response_components(), &view, now)?;
        let headers = &mut parts.headers;
        for (name, value) in [
            ("content-digest", digest.as_str()),
            ("signature-input", signed.signature_input.as_str()),
            ("signature", signed.signature.as_str()),
            (SIGNER_CERTIFICATE, federation.certificate_header()),
            ("x-road-id", ctx.message_id.as_str()),
        ] {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(axum::http::HeaderName::from_static(name), value);
            }
        }
        headers.remove(header::CONTENT_LENGTH);
        Ok(Response::from_parts(parts, Body::from(body)))
    })();
    sealed.unwrap_or_else(|error| {
        tracing::error!(code = error.code().as_str(), "cannot seal an answer");
        error.into_problem(Some(&message_id))
    })
}
