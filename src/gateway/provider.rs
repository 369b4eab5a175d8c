//! The provider seam: after authorisation, who answers.
//!
//! Owns: choosing the provider of a service ([`Provider::resolve`]), what each kind
//! accepts (query parameters, a body) and the call itself. A **local** provider is an
//! adapter in front of a backend of this node; a **remote** provider is another
//! gateway, reached signed and encrypted over its exchange listener
//! ([`super::remote`]). The hub, the cache and autofill's fan-out answer through the
//! same seam.
//!
//! Does not own: the contract phases before and after the call (the same for every
//! provider: [`super::exchange`]), or how an answer is journaled.

use super::context::ExchangeContext;
use super::remote::RemoteProvider;
use super::{Backend, Gateway, Runtime};
use crate::adapters::{AdapterError, AdapterOperation, AdapterRequest, Record};
use crate::error::{ErrorCode, GatewayError};
use axum::http::Method;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::time::Instant;

/// Who answers a service.
#[derive(Debug, Clone)]
pub enum Provider {
    /// An adapter of this node.
    Local(Arc<Backend>),
    /// The provider member's gateway, over the federation.
    Remote(RemoteProvider),
}

/// A request routed to its provider: what the provider will be asked.
#[derive(Debug)]
pub struct Routed {
    /// The adapter operation (local providers).
    pub operation: Option<Arc<AdapterOperation>>,
    /// Path parameters named by the operation or contract pattern.
    pub params: BTreeMap<String, String>,
    /// The query, decoded, checked, sorted.
    pub query: Vec<(String, String)>,
    /// Whether the request may carry a body.
    pub takes_body: bool,
}

/// Whether requests with `method` may carry a body.
pub fn method_takes_body(method: &Method) -> bool {
    *method == Method::POST || *method == Method::PUT || *method == Method::PATCH
}

impl Provider {
    /// The provider of the context's service: a local adapter when this node serves it,
    /// otherwise the provider member's gateway when the federation knows it.
    pub fn resolve(
        gateway: &Gateway,
        runtime: &Runtime,
        ctx: &ExchangeContext,
    ) -> Result<Provider, GatewayError> {
        if let Some(backend) = runtime.services.get(&ctx.target.service) {
            return Ok(Provider::Local(backend.clone()));
        }
        // The provider side answers only from its own adapters: a request for another
        // member's service arriving on the exchange listener was misdirected.
        if ctx.leg == super::context::Leg::ProviderSide {
            return Err(GatewayError::new(
                ErrorCode::FederationMisdirected,
                "this node does not serve that service",
            ));
        }
        RemoteProvider::resolve(gateway, &ctx.target.service)?
            .map(Provider::Remote)
            .ok_or_else(|| {
                GatewayError::new(
                    ErrorCode::ServiceUnknown,
                    "this node does not serve that service",
                )
            })
    }

    /// Routes the request: the operation and its declared query for a local adapter;
    /// for a remote provider the query is only checked for shape (the owner's gateway
    /// checks it against its operation).
    pub fn route(&self, ctx: &ExchangeContext) -> Result<Routed, GatewayError> {
        match self {
            Provider::Local(backend) => {
                let (operation, params) = backend
                    .adapter
                    .spec
                    .route(&ctx.method, ctx.target.path())
                    .ok_or_else(|| {
                        GatewayError::new(
                            ErrorCode::ServiceUnknown,
                            "the service offers no such operation",
                        )
                    })?;
                let query = crate::protocol::parse_query(ctx.query.as_deref(), |name| {
                    operation.declares_query(name)
                })?;
                Ok(Routed {
                    takes_body: method_takes_body(operation.pattern.method()),
                    operation: Some(operation),
                    params,
                    query,
                })
            }
            Provider::Remote(_) => Ok(Routed {
                operation: None,
                params: BTreeMap::new(),
                query: crate::protocol::parse_query(ctx.query.as_deref(), |_| true)?,
                takes_body: method_takes_body(&ctx.method),
            }),
        }
    }

    /// Asks the provider. The context's trail records when the request left and the
    /// answer came back.
    pub async fn call(
        &self,
        gateway: &Gateway,
        ctx: &mut ExchangeContext,
        routed: &Routed,
        body: &bytes::Bytes,
        json_body: Option<&serde_json::Value>,
        content_type: Option<&str>,
    ) -> Result<Record, GatewayError> {
        match self {
            Provider::Local(backend) => {
                let operation = routed.operation.as_ref().ok_or_else(|| {
                    GatewayError::new(ErrorCode::InternalUnexpected, "a local call lost its route")
                })?;
                ctx.trail.request_out_at = Some(gateway.clock().now());
                let started = Instant::now();
                let answer = backend
                    .adapter
                    .call(AdapterRequest {
                        operation,
                        params: &routed.params,
                        query: &routed.query,
                        body: json_body,
                        message_id: &ctx.message_id,
                        deadline: ctx.deadline,
                    })
                    .await;
                ctx.trail.response_in_at = Some(gateway.clock().now());
                backend
                    .adapter
                    .upstream_duration()
                    .record(started.elapsed().as_secs_f64());
                answer.map(|answer| answer.record).map_err(|error| {
                    if let AdapterError::Unavailable(cause) = &error
                        && let Some(occurrences) = backend.adapter.unreachable_warning()
                    {
                        tracing::warn!(adapter = %backend.adapter.spec.name, cause = cause.as_str(), occurrences, "backend unreachable");
                    }
                    error.to_gateway_error()
                })
            }
            // Boxed: signing, encryption and fail-over make this future large, and unboxed it
            // would size (and be copied with) every local call's future too.
            Provider::Remote(remote) => {
                let call = Box::pin(remote.call(gateway, ctx, &routed.query, body, content_type));
                call.await
            }
        }
    }
}
