//! The request head's size limits (`[limits] max_uri_bytes`, `max_headers`,
//! `max_header_bytes`), for every route of the consumer and public listeners.
//!
//! Owns: [`check`] (what the exchange pipeline runs first in its head phase) and [`layer`]
//! (the same check as middleware for the routes that are not exchanges: forms, metadata,
//! open data, the public listener), so a limit holds on every path of a listener, not only
//! on `/r1/…`. Answers 414 `request.uri_too_long` and 431 `request.headers_too_large`.
//!
//! Does not own: what hyper refuses before us (its own caps, set at twice ours in
//! `listener`), or the rest of the head's parsing (`exchange`).

use super::Gateway;
use crate::config::Limits;
use crate::error::{ErrorCode, GatewayError};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// Refuses a head over the limits: the target first, then the header fields.
pub fn check(parts: &Parts, limits: &Limits) -> Result<(), GatewayError> {
    let target = parts
        .uri
        .path_and_query()
        .map_or(1, |target| target.as_str().len());
    if target > limits.max_uri_bytes {
        return Err(GatewayError::new(
            ErrorCode::RequestUriTooLong,
            format!("the request target exceeds {} bytes", limits.max_uri_bytes),
        ));
    }
    let header_bytes: usize = parts
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if parts.headers.len() > limits.max_headers || header_bytes > limits.max_header_bytes {
        return Err(GatewayError::new(
            ErrorCode::RequestHeadersTooLarge,
            format!(
                "at most {} header fields and {} bytes of them are accepted",
                limits.max_headers, limits.max_header_bytes
            ),
        ));
    }
    Ok(())
}

/// [`check`] as middleware, with the running configuration's limits.
pub async fn layer(State(gateway): State<Arc<Gateway>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if let Err(error) = check(&parts, &gateway.runtime().limits) {
        metrics::counter!("datagate_refusals_total", "code" => error.code().as_str()).increment(1);
        return error.into_problem(None);
    }
    next.run(Request::from_parts(parts, body)).await
}
