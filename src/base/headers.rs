//! Header names of the client-facing protocol (X-Road REST, pr-rest 1.0, plus ours).
//!
//! Here, on the ground floor, so the error renderer and the protocol parser can
//! both name them without importing each other.

use http::HeaderName;

/// `X-Road-Client`: the calling subsystem, `instance/class/member/subsystem`.
pub const X_ROAD_CLIENT: HeaderName = HeaderName::from_static("x-road-client");
/// `X-Road-Id`: the message id of one exchange.
pub const X_ROAD_ID: HeaderName = HeaderName::from_static("x-road-id");
/// `X-Road-UserId`: the end user at the client, opaque to the gateway.
pub const X_ROAD_USER_ID: HeaderName = HeaderName::from_static("x-road-userid");
/// `X-Road-Issue`: the case or dossier the request is about.
pub const X_ROAD_ISSUE: HeaderName = HeaderName::from_static("x-road-issue");
/// `X-Purpose`: the purpose code the contract must allow.
pub const X_PURPOSE: HeaderName = HeaderName::from_static("x-purpose");
/// `X-Road-Request-Hash`: digest binding the response to the request.
pub const X_ROAD_REQUEST_HASH: HeaderName = HeaderName::from_static("x-road-request-hash");
/// `X-Road-Service`: the service that answered.
pub const X_ROAD_SERVICE: HeaderName = HeaderName::from_static("x-road-service");
/// `X-Contract-Id`: the contract under which the data was shared.
pub const X_CONTRACT_ID: HeaderName = HeaderName::from_static("x-contract-id");
/// The citizen's assertion (a JWS from an identity provider), for contracts with an
/// assurance level.
pub const X_CITIZEN_ASSERTION: HeaderName = HeaderName::from_static("x-citizen-assertion");
/// `X-Legal-Basis`: the legal basis of that contract.
pub const X_LEGAL_BASIS: HeaderName = HeaderName::from_static("x-legal-basis");
/// `X-Road-Error`: set on every error this node produces (pr-rest 1.0 §4.3, §4.6).
pub const X_ROAD_ERROR: HeaderName = HeaderName::from_static("x-road-error");
