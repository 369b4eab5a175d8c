//! The ops listener: `/healthz` (the process answers), `/readyz` (configuration
//! loaded and every backend passed its last health check), `/metrics`
//! (Prometheus text), `/status/v1/federation` (the global configuration held, this
//! node's key id and role), `/status/v1/opendata/usage` (daily summaries of open-data
//! reads, by dataset, action and edge). Plain HTTP: bind it to loopback or a management network.

use super::Gateway;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;

/// The ops router.
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status/v1/federation", get(federation))
        .route(
            "/status/v1/opendata/usage",
            get(|State(gateway): State<Arc<Gateway>>| async move {
                axum::Json(gateway.opendata_usage().summary())
            }),
        )
        .route("/status/v1/journal/{message_id}", get(journal))
        .with_state(gateway)
}

async fn readyz(State(gateway): State<Arc<Gateway>>) -> impl IntoResponse {
    let runtime = gateway.runtime();
    let mut down: Vec<&str> = runtime
        .backends
        .iter()
        .filter(|(_, b)| !b.healthy.load(std::sync::atomic::Ordering::Relaxed))
        .map(|(name, _)| name.as_str())
        .collect();
    down.sort_unstable();
    let journal = gateway.journal();
    let ready = runtime.ready() && journal.ready();
    let body = serde_json::json!({
        "ready": ready,
        "contracts": runtime.contracts.len(),
        "secure_servers": runtime.registry.len(),
        "backends_down": down,
        "journal": journal.health(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}

/// This node's journal records of one `X-Road-Id`: what reconciliation between the
/// consumer's, the hub's and the provider's nodes matches (digests, never payloads).
async fn journal(
    State(gateway): State<Arc<Gateway>>,
    axum::extract::Path(message_id): axum::extract::Path<String>,
) -> axum::response::Response {
    let valid = axum::http::HeaderValue::from_str(&message_id)
        .ok()
        .is_some_and(|value| crate::protocol::message_id(Some(&value)).is_ok());
    if !valid {
        return (StatusCode::BAD_REQUEST, "not an X-Road-Id\n").into_response();
    }
    match gateway.journal().find(&message_id).await {
        Ok(records) if records.is_empty() => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({ "records": [] })),
        )
            .into_response(),
        Ok(records) => axum::Json(serde_json::json!({ "records": records })).into_response(),
        Err(error) => {
            tracing::error!(error = %error, "journal lookup failed");
            (StatusCode::SERVICE_UNAVAILABLE, "journal unavailable\n").into_response()
        }
    }
}

/// The federation as this node sees it: 404 when the node is in none.
async fn federation(State(gateway): State<Arc<Gateway>>) -> axum::response::Response {
    let Some(federation) = gateway.federation() else {
        return (StatusCode::NOT_FOUND, "this node is in no federation\n").into_response();
    };
    let now = gateway.clock().now();
    let held = federation.held();
    let rfc3339 = |at: time::OffsetDateTime| {
        at.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    axum::Json(serde_json::json!({
        "instance": federation.settings.instance,
        "server_name": federation.settings.server_name,
        "key_id": federation.key_id(),
        "hub": federation.settings.hub,
        "global_configuration": held.as_ref().map(|held| serde_json::json!({
            "version": held.version(),
            "expires_at": rfc3339(held.expires_at()),
            "expired": held.is_expired(now),
        })),
        "nonces_held": federation.nonces.len(),
        "contract_copies": federation.copies().summary(),
    }))
    .into_response()
}

async fn metrics() -> impl IntoResponse {
    match crate::observe::metrics_handle() {
        Some(handle) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            "# metrics recorder unavailable\n".to_owned(),
        ),
    }
}
