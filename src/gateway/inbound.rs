//! The provider side of the federation: what the exchange listener does before and
//! after the shared pipeline (authenticate the signing gateway, open the encrypted
//! body, seal the answer).

use super::context::{ExchangeContext, Peer};
use super::{Gateway, Runtime};
use crate::error::{ErrorCode, GatewayError};
use crate::trust::PeerCertificate;
use axum::body::Body;
use axum::http::request::Parts;
use axum::response::Response;

/// The exchange listener's routes: `/exchange/v1/r1/...`; everything else is 404.
pub fn router(gateway: std::sync::Arc<Gateway>) -> axum::Router {
    axum::Router::new()
        .fallback(
            |axum::extract::State(gateway): axum::extract::State<std::sync::Arc<Gateway>>,
             request: axum::extract::Request| async move {
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

/// The path prefix of the exchange listener.
pub const EXCHANGE_PREFIX: &str = "/exchange/v1";

/// The `/r1/...` part of an exchange-listener path.
pub fn strip_prefix(path: &str) -> Result<&str, GatewayError> {
    path.strip_prefix(EXCHANGE_PREFIX)
        .filter(|rest| rest.starts_with("/r1/"))
        .ok_or_else(|| GatewayError::new(ErrorCode::RequestRouteNotFound, "no such route"))
}

/// Authenticates the gateway that signed the request.
pub fn authenticate(
    _gateway: &Gateway,
    _ctx: &ExchangeContext,
    _parts: &Parts,
    _certificate: &PeerCertificate,
) -> Result<Peer, GatewayError> {
    Err(GatewayError::new(
        ErrorCode::TrustCertificateUnregistered,
        "this node takes no federated exchanges yet",
    ))
}

/// Reads and decrypts the request body.
pub async fn open_body(
    _gateway: &Gateway,
    _runtime: &Runtime,
    _ctx: &mut ExchangeContext,
    _parts: &Parts,
    _body: Body,
) -> Result<(bytes::Bytes, Option<String>), GatewayError> {
    Err(GatewayError::new(
        ErrorCode::InternalUnexpected,
        "this node takes no federated exchanges yet",
    ))
}

/// Signs (and encrypts) the answer for the calling gateway.
pub fn seal(
    _gateway: &Gateway,
    _runtime: &Runtime,
    _ctx: &mut ExchangeContext,
    response: Response,
) -> Response {
    response
}
