//! What a calling information system may discover about the services it can call, on the
//! consumer listener (000 Điều 8 k6, Điều 23 k3: shared data is published with its usage,
//! as APIs; issue 11 items 7–8):
//!
//! - `GET /openapi.json`: the caller's OpenAPI 3.1 document ([`super::openapi::consumer`]).
//! - X-Road's service metadata for REST (PR-MREST), so clients written for X-Road discover
//!   services unchanged: `GET /r1/{provider subsystem}/listMethods`, `…/allowedMethods` and
//!   `…/getOpenAPI?serviceCode={code}`. These paths are routed here before the exchange
//!   pipeline's fallback, so a metadata call is never taken for a service call; no service
//!   may be configured under these codes (`config::load`).
//!
//! Deny by default holds for discovery too (decision 0010): a caller sees only services
//! some contract **of its own**, in force now, names; a provider it has no such contract
//! with is `metadata.provider_unknown`, whether or not it exists, and a service it may not
//! call is `metadata.service_unknown`, whether or not it exists. `listMethods` lists every
//! endpoint of those services (the adapter's operations, for a service of this node);
//! `allowedMethods` only the endpoints the caller's contracts allow.
//!
//! The calls read configuration, not data about anyone: like the form preview they are
//! counted (`datagate_metadata_requests_total{call, outcome}`, refusals in
//! `datagate_refusals_total{code}`), not journaled.
//!
//! Owns: the routes, which contracts a caller may know of ([`contracts_of`]), X-Road's
//! service lists. Does not own: the caller's authentication ([`super::autofill`]'s, shared),
//! the OpenAPI documents ([`super::openapi`]).

use super::autofill::{self, Caller};
use super::{Gateway, Runtime};
use crate::contract::CompiledContract;
use crate::error::{ErrorCode, GatewayError};
use crate::identity::{ClientId, ServiceId};
use crate::protocol::{self, METADATA_SERVICE_CODES};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header, request::Parts};
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use time::OffsetDateTime;

/// The routes of this module, merged into the consumer router before its fallback.
pub fn routes() -> axum::Router<Arc<Gateway>> {
    let mut router = axum::Router::new().route("/openapi.json", axum::routing::any(document));
    for code in METADATA_SERVICE_CODES {
        // Anything after the call's name is refused here too, not read as a service's path.
        router = router
            .route(
                &format!("/r1/{{instance}}/{{class}}/{{member}}/{{subsystem}}/{code}"),
                axum::routing::any(metadata),
            )
            .route(
                &format!("/r1/{{instance}}/{{class}}/{{member}}/{{subsystem}}/{code}/{{*rest}}"),
                axum::routing::any(metadata),
            );
    }
    router
}

/// The contracts in force at `now` whose consumer is `client`: this node's own, then the
/// owners' verified copies for services this node does not serve; by service, then id.
pub(super) fn contracts_of(
    gateway: &Gateway,
    runtime: &Runtime,
    client: &ClientId,
    now: OffsetDateTime,
) -> Vec<Arc<CompiledContract>> {
    let in_force = |contract: &&Arc<CompiledContract>| {
        contract.consumer == *client && contract.valid_from <= now && now < contract.valid_until
    };
    let mut contracts: Vec<Arc<CompiledContract>> =
        runtime.contracts.iter().filter(in_force).cloned().collect();
    if let Some(federation) = gateway.federation() {
        let copies = federation.copies();
        contracts.extend(
            copies
                .all()
                .filter(in_force)
                .filter(|contract| !runtime.services.contains_key(&contract.service))
                .cloned(),
        );
    }
    contracts.sort_by(|a, b| (&a.service, &a.id).cmp(&(&b.service, &b.id)));
    contracts
}

fn method_not_allowed() -> GatewayError {
    GatewayError::new(
        ErrorCode::MetadataMethodNotAllowed,
        "metadata calls are read with GET",
    )
}

/// The caller of a metadata call: `GET`, authenticated as on every consumer route.
fn caller(gateway: &Gateway, runtime: &Runtime, parts: &Parts) -> Result<Caller, GatewayError> {
    if parts.method != Method::GET {
        return Err(method_not_allowed());
    }
    autofill::authenticate(gateway, runtime, parts)
}

/// Counts the call and renders its answer (`Allow: GET` on a wrong method).
fn finish(message_id: &str, call: &'static str, outcome: Result<Value, GatewayError>) -> Response {
    let label = if outcome.is_ok() { "200" } else { "refused" };
    metrics::counter!("datagate_metadata_requests_total", "call" => call, "outcome" => label)
        .increment(1);
    let wrong_method =
        matches!(&outcome, Err(error) if error.code() == ErrorCode::MetadataMethodNotAllowed);
    let mut response = autofill::respond(message_id, outcome, "metadata");
    if wrong_method {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
    }
    response
}

/// `GET /openapi.json`: the caller's document.
async fn document(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let (message_id, refusal) = match autofill::message_id(&parts) {
        Ok(id) => (id, None),
        Err((id, error)) => (id, Some(error)),
    };
    let outcome = match refusal {
        Some(error) => Err(error),
        None => caller_document(&gateway, &parts),
    };
    finish(&message_id, "openapi", outcome)
}

fn caller_document(gateway: &Gateway, parts: &Parts) -> Result<Value, GatewayError> {
    let runtime = gateway.runtime();
    let caller = caller(gateway, &runtime, parts)?;
    protocol::parse_query(parts.uri.query(), |_| false)?;
    let contracts = contracts_of(gateway, &runtime, &caller.client, gateway.clock().now());
    Ok(super::openapi::consumer(
        gateway,
        &runtime,
        &caller.client,
        &contracts,
    ))
}

/// The metadata call a path names, for the metrics label (a bounded set).
fn call_of(path: &str) -> &'static str {
    let name = path.split('/').nth(6).unwrap_or_default();
    METADATA_SERVICE_CODES
        .into_iter()
        .find(|code| *code == name)
        .unwrap_or("unknown")
}

/// `GET /r1/{provider subsystem}/{listMethods|allowedMethods|getOpenAPI}`.
async fn metadata(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let (message_id, refusal) = match autofill::message_id(&parts) {
        Ok(id) => (id, None),
        Err((id, error)) => (id, Some(error)),
    };
    let call = call_of(parts.uri.path());
    let outcome = match refusal {
        Some(error) => Err(error),
        None => metadata_answer(&gateway, &parts),
    };
    finish(&message_id, call, outcome)
}

fn metadata_answer(gateway: &Gateway, parts: &Parts) -> Result<Value, GatewayError> {
    let runtime = gateway.runtime();
    let caller = caller(gateway, &runtime, parts)?;
    // The path in its one canonical spelling, as every `/r1/…` request.
    let target = protocol::parse_target(parts.uri.path())?;
    if target.path() != "/" {
        return Err(GatewayError::new(
            ErrorCode::RequestRouteNotFound,
            "a metadata call takes nothing after its name",
        ));
    }
    let provider = &target.service.provider;
    let call = target.service.code.as_str();
    // Input first, then what the caller may know.
    let service_code = if call == "getOpenAPI" {
        let query = protocol::parse_query(parts.uri.query(), |name| name == "serviceCode")?;
        let code = query
            .into_iter()
            .next()
            .map(|(_, value)| value)
            .ok_or_else(|| {
                GatewayError::new(
                    ErrorCode::MetadataServiceCodeInvalid,
                    "getOpenAPI needs the serviceCode query parameter",
                )
            })?;
        let service = format!("{provider}/{code}")
            .parse::<ServiceId>()
            .ok()
            .filter(|service| service.provider == *provider)
            .ok_or_else(|| {
                GatewayError::new(
                    ErrorCode::MetadataServiceCodeInvalid,
                    "serviceCode must be 1-64 characters of A-Z a-z 0-9 - _ . starting with a letter or digit",
                )
            })?;
        Some(service)
    } else {
        protocol::parse_query(parts.uri.query(), |_| false)?;
        None
    };
    let contracts: Vec<Arc<CompiledContract>> =
        contracts_of(gateway, &runtime, &caller.client, gateway.clock().now())
            .into_iter()
            .filter(|contract| contract.service.provider == *provider)
            .collect();
    if contracts.is_empty() {
        return Err(GatewayError::new(
            ErrorCode::MetadataProviderUnknown,
            "no contract of the calling subsystem names a service of this provider",
        ));
    }
    match (call, service_code) {
        ("getOpenAPI", Some(service)) => {
            if !contracts.iter().any(|contract| contract.service == service) {
                return Err(GatewayError::new(
                    ErrorCode::MetadataServiceUnknown,
                    "no contract of the calling subsystem names this service",
                ));
            }
            Ok(super::openapi::service(
                &runtime,
                &caller.client,
                &service,
                &contracts,
            ))
        }
        ("listMethods", _) => Ok(service_list(&runtime, &contracts, true)),
        _ => Ok(service_list(&runtime, &contracts, false)),
    }
}

/// An endpoint as X-Road lists it: the method and the path after the service code, each
/// `{parameter}` written `*`.
fn endpoint(pattern: &crate::pattern::OperationPattern) -> (String, String) {
    let text = pattern.to_string();
    let path = text.split_once(' ').map_or("/", |(_, path)| path);
    let path: Vec<&str> = path
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "*"
            } else {
                segment
            }
        })
        .collect();
    (path.join("/"), pattern.method().to_string())
}

/// X-Road's `{"service": [...]}` (PR-MREST Annex B) for the services `contracts` name: with
/// every endpoint the service offers (`all`: `listMethods`), or those the contracts allow.
fn service_list(runtime: &Runtime, contracts: &[Arc<CompiledContract>], all: bool) -> Value {
    let mut services: BTreeMap<&ServiceId, BTreeSet<(String, String)>> = BTreeMap::new();
    for contract in contracts {
        let endpoints = services.entry(&contract.service).or_default();
        endpoints.extend(contract.operations.iter().map(endpoint));
    }
    if all {
        for (service, endpoints) in &mut services {
            // A service of this node offers its adapter's operations; of another member's,
            // this node knows only what the owner's published contracts say.
            if let Some(backend) = runtime.services.get(*service) {
                endpoints.extend(
                    backend
                        .adapter
                        .spec
                        .operations
                        .iter()
                        .map(|operation| endpoint(&operation.pattern)),
                );
            }
        }
    }
    let list: Vec<Value> = services
        .into_iter()
        .map(|(service, endpoints)| {
            let member = &service.provider.member;
            json!({
                "object_type": "SERVICE",
                "xroad_instance": member.instance,
                "member_class": member.class.as_str(),
                "member_code": member.code,
                "subsystem_code": service.provider.subsystem,
                "service_code": service.code,
                // Every listed service has a description: getOpenAPI answers for it.
                "service_type": "OPENAPI",
                "endpoint_list": endpoints
                    .into_iter()
                    .map(|(path, method)| json!({"method": method, "path": path}))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "service": list })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_written_with_x_road_wildcards() {
        let pattern =
            crate::pattern::OperationPattern::parse("GET", "/{citizen_id}/cards/{n}").expect("ok");
        assert_eq!(
            endpoint(&pattern),
            ("/*/cards/*".to_owned(), "GET".to_owned())
        );
        let root = crate::pattern::OperationPattern::parse("POST", "/").expect("ok");
        assert_eq!(endpoint(&root), ("/".to_owned(), "POST".to_owned()));
    }

    #[test]
    fn the_metrics_label_is_one_of_the_calls() {
        assert_eq!(
            call_of("/r1/VN/GOV/000.00.00.G10/db/listMethods"),
            "listMethods"
        );
        assert_eq!(
            call_of("/r1/VN/GOV/000.00.00.G10/db/getOpenAPI/x"),
            "getOpenAPI"
        );
        assert_eq!(call_of("/r1/VN/GOV/x"), "unknown");
    }
}
