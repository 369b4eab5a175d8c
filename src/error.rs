//! The one error type that reaches a client.
//!
//! Every failure of an exchange ends as a [`GatewayError`]: a stable machine
//! code (`contract.purpose_not_allowed`), an HTTP status, an origin (the
//! consumer, the provider's upstream, or this node) and a message that is safe
//! to show: it never carries personal data or payload values. It is rendered
//! once, in [`GatewayError::into_problem`], as RFC 9457 `application/problem+json`
//! with the `X-Road-Id` of the exchange. Causes go to the log, never to the client.
//!
//! `docs/ERRORS.md` lists every code; a test keeps it in step with [`ErrorCode::ALL`].

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use std::time::Duration;

/// Who caused a failure: decides whether retrying can help and who must act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The calling information system sent something this node refuses.
    Consumer,
    /// The backend system (adapter) failed or answered badly.
    Upstream,
    /// This node itself failed.
    Internal,
}

/// The stable error codes. Adding a variant forces a decision in every `match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    RequestRouteNotFound,
    RequestPathInvalid,
    RequestClientMissing,
    RequestClientInvalid,
    RequestMessageIdInvalid,
    RequestHeaderDuplicated,
    RequestPurposeInvalid,
    RequestPurposeMissing,
    RequestBodyTooLarge,
    RequestBodyInvalid,
    RequestBodyNotAllowed,
    RequestSchemaInvalid,
    RequestQueryNotAllowed,
    RequestTimeout,
    RequestUriTooLong,
    RequestHeadersTooLarge,
    TrustCertificateMissing,
    TrustCertificateUnregistered,
    TrustMemberMismatch,
    TrustSubsystemNotBound,
    TrustRegistrationNotEffective,
    ContractNotFound,
    ContractOperationNotAllowed,
    ContractPurposeNotAllowed,
    ContractOutsideValidity,
    RateLimitExceeded,
    DailyQuotaExceeded,
    InFlightShareExceeded,
    ServiceUnknown,
    UpstreamTimeout,
    UpstreamUnavailable,
    UpstreamStatus,
    UpstreamRejected,
    UpstreamBodyTooLarge,
    UpstreamMalformed,
    UpstreamFault,
    UpstreamNotFound,
    UpstreamResponseInvalid,
    GatewayTimeout,
    GatewayOverloaded,
    JournalUnavailable,
    InternalUnexpected,
    SignatureMissing,
    SignatureMalformed,
    SignatureInvalid,
    SignatureComponentMissing,
    SignatureComponentNotCovered,
    SignatureAlgorithmUnsupported,
    SignatureKeyUnknown,
    SignatureKeyNotAuthorised,
    SignatureExpired,
    SignatureNotYetValid,
    SignatureReplayed,
    DigestMissing,
    DigestMismatch,
    JweMalformed,
    JweAlgorithmUnsupported,
    JweDecryptionFailed,
    FederationConfigurationMissing,
    FederationConfigurationExpired,
    FederationMisdirected,
    FederationRouteNotAllowed,
    FederationProviderUnavailable,
    FederationProviderRefused,
    FederationResponseInvalid,
    JournalOverloaded,
    AdminForbidden,
    AdminBadQuery,
    /// `citizen.assertion_missing`.
    CitizenAssertionMissing,
    /// `citizen.assertion_invalid`.
    CitizenAssertionInvalid,
    /// `citizen.issuer_unknown`.
    CitizenIssuerUnknown,
    /// `citizen.audience_mismatch`.
    CitizenAudienceMismatch,
    /// `citizen.assertion_expired`.
    CitizenAssertionExpired,
    /// `citizen.assertion_not_yet_valid`.
    CitizenAssertionNotYetValid,
    /// `citizen.step_up_required`.
    CitizenStepUpRequired,
    /// `citizen.consent_missing`.
    CitizenConsentMissing,
    /// `citizen.subject_mismatch`.
    CitizenSubjectMismatch,
    /// `autofill.form_unknown`.
    AutofillFormUnknown,
    /// `autofill.form_not_allowed`.
    AutofillFormNotAllowed,
    /// `autofill.source_timeout`.
    AutofillSourceTimeout,
    /// `autofill.value_missing`.
    AutofillValueMissing,
    /// `autofill.value_unusable`.
    AutofillValueUnusable,
    /// `cache.invalidation_not_allowed`.
    CacheInvalidationNotAllowed,
    /// `opendata.not_found`.
    OpendataNotFound,
    /// `opendata.invalid_query`.
    OpendataInvalidQuery,
    /// `opendata.rate_limited`.
    OpendataRateLimited,
    /// `opendata.unavailable`.
    OpendataUnavailable,
    /// `metadata.provider_unknown`.
    MetadataProviderUnknown,
    /// `metadata.service_unknown`.
    MetadataServiceUnknown,
    /// `metadata.service_code_invalid`.
    MetadataServiceCodeInvalid,
    /// `metadata.method_not_allowed`.
    MetadataMethodNotAllowed,
}

impl ErrorCode {
    /// Every code, in the order of `docs/ERRORS.md`.
    pub const ALL: [ErrorCode; 91] = [
        ErrorCode::RequestRouteNotFound,
        ErrorCode::RequestPathInvalid,
        ErrorCode::RequestClientMissing,
        ErrorCode::RequestClientInvalid,
        ErrorCode::RequestMessageIdInvalid,
        ErrorCode::RequestHeaderDuplicated,
        ErrorCode::RequestPurposeInvalid,
        ErrorCode::RequestPurposeMissing,
        ErrorCode::RequestBodyTooLarge,
        ErrorCode::RequestBodyInvalid,
        ErrorCode::RequestBodyNotAllowed,
        ErrorCode::RequestSchemaInvalid,
        ErrorCode::RequestQueryNotAllowed,
        ErrorCode::RequestTimeout,
        ErrorCode::RequestUriTooLong,
        ErrorCode::RequestHeadersTooLarge,
        ErrorCode::TrustCertificateMissing,
        ErrorCode::TrustCertificateUnregistered,
        ErrorCode::TrustMemberMismatch,
        ErrorCode::TrustSubsystemNotBound,
        ErrorCode::TrustRegistrationNotEffective,
        ErrorCode::ContractNotFound,
        ErrorCode::ContractOperationNotAllowed,
        ErrorCode::ContractPurposeNotAllowed,
        ErrorCode::ContractOutsideValidity,
        ErrorCode::RateLimitExceeded,
        ErrorCode::DailyQuotaExceeded,
        ErrorCode::InFlightShareExceeded,
        ErrorCode::ServiceUnknown,
        ErrorCode::UpstreamTimeout,
        ErrorCode::UpstreamUnavailable,
        ErrorCode::UpstreamStatus,
        ErrorCode::UpstreamRejected,
        ErrorCode::UpstreamBodyTooLarge,
        ErrorCode::UpstreamMalformed,
        ErrorCode::UpstreamFault,
        ErrorCode::UpstreamNotFound,
        ErrorCode::UpstreamResponseInvalid,
        ErrorCode::GatewayTimeout,
        ErrorCode::GatewayOverloaded,
        ErrorCode::JournalUnavailable,
        ErrorCode::InternalUnexpected,
        ErrorCode::SignatureMissing,
        ErrorCode::SignatureMalformed,
        ErrorCode::SignatureInvalid,
        ErrorCode::SignatureComponentMissing,
        ErrorCode::SignatureComponentNotCovered,
        ErrorCode::SignatureAlgorithmUnsupported,
        ErrorCode::SignatureKeyUnknown,
        ErrorCode::SignatureKeyNotAuthorised,
        ErrorCode::SignatureExpired,
        ErrorCode::SignatureNotYetValid,
        ErrorCode::SignatureReplayed,
        ErrorCode::DigestMissing,
        ErrorCode::DigestMismatch,
        ErrorCode::JweMalformed,
        ErrorCode::JweAlgorithmUnsupported,
        ErrorCode::JweDecryptionFailed,
        ErrorCode::FederationConfigurationMissing,
        ErrorCode::FederationConfigurationExpired,
        ErrorCode::FederationMisdirected,
        ErrorCode::FederationRouteNotAllowed,
        ErrorCode::FederationProviderUnavailable,
        ErrorCode::FederationProviderRefused,
        ErrorCode::FederationResponseInvalid,
        ErrorCode::JournalOverloaded,
        ErrorCode::AdminForbidden,
        ErrorCode::AdminBadQuery,
        ErrorCode::CitizenAssertionMissing,
        ErrorCode::CitizenAssertionInvalid,
        ErrorCode::CitizenIssuerUnknown,
        ErrorCode::CitizenAudienceMismatch,
        ErrorCode::CitizenAssertionExpired,
        ErrorCode::CitizenAssertionNotYetValid,
        ErrorCode::CitizenStepUpRequired,
        ErrorCode::CitizenConsentMissing,
        ErrorCode::CitizenSubjectMismatch,
        ErrorCode::AutofillFormUnknown,
        ErrorCode::AutofillFormNotAllowed,
        ErrorCode::AutofillSourceTimeout,
        ErrorCode::AutofillValueMissing,
        ErrorCode::AutofillValueUnusable,
        ErrorCode::CacheInvalidationNotAllowed,
        ErrorCode::OpendataNotFound,
        ErrorCode::OpendataInvalidQuery,
        ErrorCode::OpendataRateLimited,
        ErrorCode::OpendataUnavailable,
        ErrorCode::MetadataProviderUnknown,
        ErrorCode::MetadataServiceUnknown,
        ErrorCode::MetadataServiceCodeInvalid,
        ErrorCode::MetadataMethodNotAllowed,
    ];

    /// The code whose stable name is `name` (a peer gateway's problem answer).
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL
            .into_iter()
            .find(|code| code.as_str() == name)
    }

    /// The stable, namespaced machine code clients may match on.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::RequestRouteNotFound => "request.route_not_found",
            ErrorCode::RequestPathInvalid => "request.path_invalid",
            ErrorCode::RequestClientMissing => "request.client_missing",
            ErrorCode::RequestClientInvalid => "request.client_invalid",
            ErrorCode::RequestMessageIdInvalid => "request.message_id_invalid",
            ErrorCode::RequestHeaderDuplicated => "request.header_duplicated",
            ErrorCode::RequestPurposeInvalid => "request.purpose_invalid",
            ErrorCode::RequestPurposeMissing => "request.purpose_missing",
            ErrorCode::RequestBodyTooLarge => "request.body_too_large",
            ErrorCode::RequestBodyInvalid => "request.body_invalid",
            ErrorCode::RequestBodyNotAllowed => "request.body_not_allowed",
            ErrorCode::RequestSchemaInvalid => "request.schema_invalid",
            ErrorCode::RequestQueryNotAllowed => "request.query_not_allowed",
            ErrorCode::RequestTimeout => "request.timeout",
            ErrorCode::RequestUriTooLong => "request.uri_too_long",
            ErrorCode::RequestHeadersTooLarge => "request.headers_too_large",
            ErrorCode::TrustCertificateMissing => "trust.certificate_missing",
            ErrorCode::TrustCertificateUnregistered => "trust.certificate_unregistered",
            ErrorCode::TrustMemberMismatch => "trust.member_mismatch",
            ErrorCode::TrustSubsystemNotBound => "trust.subsystem_not_bound",
            ErrorCode::TrustRegistrationNotEffective => "trust.registration_not_effective",
            ErrorCode::ContractNotFound => "contract.not_found",
            ErrorCode::ContractOperationNotAllowed => "contract.operation_not_allowed",
            ErrorCode::ContractPurposeNotAllowed => "contract.purpose_not_allowed",
            ErrorCode::ContractOutsideValidity => "contract.outside_validity",
            ErrorCode::RateLimitExceeded => "ratelimit.exceeded",
            ErrorCode::DailyQuotaExceeded => "ratelimit.daily_quota_exceeded",
            ErrorCode::InFlightShareExceeded => "ratelimit.in_flight_share_exceeded",
            ErrorCode::ServiceUnknown => "route.service_unknown",
            ErrorCode::UpstreamTimeout => "upstream.timeout",
            ErrorCode::UpstreamUnavailable => "upstream.unavailable",
            ErrorCode::UpstreamStatus => "upstream.bad_status",
            ErrorCode::UpstreamRejected => "upstream.rejected",
            ErrorCode::UpstreamBodyTooLarge => "upstream.body_too_large",
            ErrorCode::UpstreamMalformed => "upstream.malformed",
            ErrorCode::UpstreamFault => "upstream.fault",
            ErrorCode::UpstreamNotFound => "upstream.not_found",
            ErrorCode::UpstreamResponseInvalid => "upstream.response_invalid",
            ErrorCode::GatewayTimeout => "gateway.timeout",
            ErrorCode::GatewayOverloaded => "gateway.overloaded",
            ErrorCode::JournalUnavailable => "journal.unavailable",
            ErrorCode::InternalUnexpected => "internal.unexpected",
            ErrorCode::SignatureMissing => "signature.missing",
            ErrorCode::SignatureMalformed => "signature.malformed",
            ErrorCode::SignatureInvalid => "signature.invalid",
            ErrorCode::SignatureComponentMissing => "signature.component_missing",
            ErrorCode::SignatureComponentNotCovered => "signature.component_not_covered",
            ErrorCode::SignatureAlgorithmUnsupported => "signature.algorithm_unsupported",
            ErrorCode::SignatureKeyUnknown => "signature.key_unknown",
            ErrorCode::SignatureKeyNotAuthorised => "signature.key_not_authorised",
            ErrorCode::SignatureExpired => "signature.expired",
            ErrorCode::SignatureNotYetValid => "signature.not_yet_valid",
            ErrorCode::SignatureReplayed => "signature.replayed",
            ErrorCode::DigestMissing => "digest.missing",
            ErrorCode::DigestMismatch => "digest.mismatch",
            ErrorCode::JweMalformed => "jwe.malformed",
            ErrorCode::JweAlgorithmUnsupported => "jwe.algorithm_unsupported",
            ErrorCode::JweDecryptionFailed => "jwe.decryption_failed",
            ErrorCode::FederationConfigurationMissing => "federation.configuration_missing",
            ErrorCode::FederationConfigurationExpired => "federation.configuration_expired",
            ErrorCode::FederationMisdirected => "federation.misdirected",
            ErrorCode::FederationRouteNotAllowed => "federation.route_not_allowed",
            ErrorCode::FederationProviderUnavailable => "federation.provider_unavailable",
            ErrorCode::FederationProviderRefused => "federation.provider_refused",
            ErrorCode::FederationResponseInvalid => "federation.response_invalid",
            ErrorCode::JournalOverloaded => "journal.overloaded",
            ErrorCode::AdminForbidden => "admin.forbidden",
            ErrorCode::AdminBadQuery => "admin.bad_query",
            ErrorCode::CitizenAssertionMissing => "citizen.assertion_missing",
            ErrorCode::CitizenAssertionInvalid => "citizen.assertion_invalid",
            ErrorCode::CitizenIssuerUnknown => "citizen.issuer_unknown",
            ErrorCode::CitizenAudienceMismatch => "citizen.audience_mismatch",
            ErrorCode::CitizenAssertionExpired => "citizen.assertion_expired",
            ErrorCode::CitizenAssertionNotYetValid => "citizen.assertion_not_yet_valid",
            ErrorCode::CitizenStepUpRequired => "citizen.step_up_required",
            ErrorCode::CitizenConsentMissing => "citizen.consent_missing",
            ErrorCode::CitizenSubjectMismatch => "citizen.subject_mismatch",
            ErrorCode::AutofillFormUnknown => "autofill.form_unknown",
            ErrorCode::AutofillFormNotAllowed => "autofill.form_not_allowed",
            ErrorCode::AutofillSourceTimeout => "autofill.source_timeout",
            ErrorCode::AutofillValueMissing => "autofill.value_missing",
            ErrorCode::AutofillValueUnusable => "autofill.value_unusable",
            ErrorCode::CacheInvalidationNotAllowed => "cache.invalidation_not_allowed",
            ErrorCode::OpendataNotFound => "opendata.not_found",
            ErrorCode::OpendataInvalidQuery => "opendata.invalid_query",
            ErrorCode::OpendataRateLimited => "opendata.rate_limited",
            ErrorCode::OpendataUnavailable => "opendata.unavailable",
            ErrorCode::MetadataProviderUnknown => "metadata.provider_unknown",
            ErrorCode::MetadataServiceUnknown => "metadata.service_unknown",
            ErrorCode::MetadataServiceCodeInvalid => "metadata.service_code_invalid",
            ErrorCode::MetadataMethodNotAllowed => "metadata.method_not_allowed",
        }
    }

    /// The HTTP status the code is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::RequestBodyNotAllowed => StatusCode::BAD_REQUEST,
            ErrorCode::RequestHeaderDuplicated => StatusCode::BAD_REQUEST,
            ErrorCode::RequestPurposeInvalid => StatusCode::BAD_REQUEST,
            ErrorCode::RequestQueryNotAllowed => StatusCode::BAD_REQUEST,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::RequestUriTooLong => StatusCode::URI_TOO_LONG,
            ErrorCode::RequestHeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::TrustSubsystemNotBound => StatusCode::FORBIDDEN,
            ErrorCode::InFlightShareExceeded => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::UpstreamRejected => StatusCode::BAD_GATEWAY,
            ErrorCode::RequestRouteNotFound => StatusCode::NOT_FOUND,
            ErrorCode::RequestPathInvalid
            | ErrorCode::RequestClientMissing
            | ErrorCode::RequestClientInvalid
            | ErrorCode::RequestMessageIdInvalid
            | ErrorCode::RequestPurposeMissing
            | ErrorCode::RequestBodyInvalid => StatusCode::BAD_REQUEST,
            ErrorCode::RequestBodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RequestSchemaInvalid => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::TrustCertificateMissing => StatusCode::UNAUTHORIZED,
            ErrorCode::TrustCertificateUnregistered
            | ErrorCode::TrustMemberMismatch
            | ErrorCode::TrustRegistrationNotEffective
            | ErrorCode::ContractNotFound
            | ErrorCode::ContractOperationNotAllowed
            | ErrorCode::ContractPurposeNotAllowed
            | ErrorCode::ContractOutsideValidity => StatusCode::FORBIDDEN,
            ErrorCode::RateLimitExceeded | ErrorCode::DailyQuotaExceeded => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ErrorCode::ServiceUnknown | ErrorCode::UpstreamNotFound => StatusCode::NOT_FOUND,
            ErrorCode::UpstreamTimeout | ErrorCode::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::UpstreamUnavailable
            | ErrorCode::UpstreamStatus
            | ErrorCode::UpstreamBodyTooLarge
            | ErrorCode::UpstreamMalformed
            | ErrorCode::UpstreamFault
            | ErrorCode::UpstreamResponseInvalid => StatusCode::BAD_GATEWAY,
            ErrorCode::GatewayOverloaded | ErrorCode::JournalUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorCode::InternalUnexpected => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::SignatureMissing => StatusCode::UNAUTHORIZED,
            ErrorCode::SignatureMalformed => StatusCode::BAD_REQUEST,
            ErrorCode::SignatureInvalid => StatusCode::UNAUTHORIZED,
            ErrorCode::SignatureComponentMissing => StatusCode::BAD_REQUEST,
            ErrorCode::SignatureComponentNotCovered => StatusCode::UNAUTHORIZED,
            ErrorCode::SignatureAlgorithmUnsupported => StatusCode::BAD_REQUEST,
            ErrorCode::SignatureKeyUnknown => StatusCode::UNAUTHORIZED,
            ErrorCode::SignatureKeyNotAuthorised => StatusCode::FORBIDDEN,
            ErrorCode::SignatureExpired => StatusCode::UNAUTHORIZED,
            ErrorCode::SignatureNotYetValid => StatusCode::UNAUTHORIZED,
            ErrorCode::SignatureReplayed => StatusCode::UNAUTHORIZED,
            ErrorCode::DigestMissing => StatusCode::BAD_REQUEST,
            ErrorCode::DigestMismatch => StatusCode::BAD_REQUEST,
            ErrorCode::JweMalformed => StatusCode::BAD_REQUEST,
            ErrorCode::JweAlgorithmUnsupported => StatusCode::BAD_REQUEST,
            ErrorCode::JweDecryptionFailed => StatusCode::BAD_REQUEST,
            ErrorCode::FederationConfigurationMissing => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::FederationConfigurationExpired => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::FederationMisdirected => StatusCode::MISDIRECTED_REQUEST,
            ErrorCode::FederationRouteNotAllowed => StatusCode::FORBIDDEN,
            ErrorCode::FederationProviderUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::FederationProviderRefused => StatusCode::BAD_GATEWAY,
            ErrorCode::FederationResponseInvalid => StatusCode::BAD_GATEWAY,
            ErrorCode::JournalOverloaded => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::AdminForbidden => StatusCode::FORBIDDEN,
            ErrorCode::AdminBadQuery => StatusCode::BAD_REQUEST,
            ErrorCode::CitizenAssertionMissing => StatusCode::UNAUTHORIZED,
            ErrorCode::CitizenAssertionInvalid => StatusCode::UNAUTHORIZED,
            ErrorCode::CitizenIssuerUnknown => StatusCode::UNAUTHORIZED,
            ErrorCode::CitizenAudienceMismatch => StatusCode::UNAUTHORIZED,
            ErrorCode::CitizenAssertionExpired => StatusCode::UNAUTHORIZED,
            ErrorCode::CitizenAssertionNotYetValid => StatusCode::UNAUTHORIZED,
            ErrorCode::CitizenStepUpRequired => StatusCode::UNAUTHORIZED,
            ErrorCode::CitizenConsentMissing => StatusCode::FORBIDDEN,
            ErrorCode::CitizenSubjectMismatch => StatusCode::FORBIDDEN,
            ErrorCode::AutofillFormUnknown => StatusCode::NOT_FOUND,
            ErrorCode::AutofillFormNotAllowed => StatusCode::FORBIDDEN,
            ErrorCode::AutofillSourceTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::AutofillValueMissing => StatusCode::BAD_GATEWAY,
            ErrorCode::AutofillValueUnusable => StatusCode::BAD_GATEWAY,
            ErrorCode::CacheInvalidationNotAllowed => StatusCode::FORBIDDEN,
            ErrorCode::OpendataNotFound => StatusCode::NOT_FOUND,
            ErrorCode::OpendataInvalidQuery => StatusCode::CONFLICT,
            ErrorCode::OpendataRateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::OpendataUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::MetadataProviderUnknown => StatusCode::NOT_FOUND,
            ErrorCode::MetadataServiceUnknown => StatusCode::NOT_FOUND,
            ErrorCode::MetadataServiceCodeInvalid => StatusCode::BAD_REQUEST,
            ErrorCode::MetadataMethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// Who caused the failure.
    pub fn origin(self) -> Origin {
        match self {
            ErrorCode::RequestBodyNotAllowed => Origin::Consumer,
            ErrorCode::RequestHeaderDuplicated => Origin::Consumer,
            ErrorCode::RequestPurposeInvalid => Origin::Consumer,
            ErrorCode::RequestQueryNotAllowed => Origin::Consumer,
            ErrorCode::RequestTimeout => Origin::Consumer,
            ErrorCode::RequestUriTooLong => Origin::Consumer,
            ErrorCode::RequestHeadersTooLarge => Origin::Consumer,
            ErrorCode::TrustSubsystemNotBound => Origin::Consumer,
            ErrorCode::InFlightShareExceeded => Origin::Consumer,
            ErrorCode::UpstreamRejected => Origin::Upstream,
            ErrorCode::RequestRouteNotFound
            | ErrorCode::RequestPathInvalid
            | ErrorCode::RequestClientMissing
            | ErrorCode::RequestClientInvalid
            | ErrorCode::RequestMessageIdInvalid
            | ErrorCode::RequestPurposeMissing
            | ErrorCode::RequestBodyTooLarge
            | ErrorCode::RequestBodyInvalid
            | ErrorCode::RequestSchemaInvalid
            | ErrorCode::TrustCertificateMissing
            | ErrorCode::TrustCertificateUnregistered
            | ErrorCode::TrustMemberMismatch
            | ErrorCode::TrustRegistrationNotEffective
            | ErrorCode::ContractNotFound
            | ErrorCode::ContractOperationNotAllowed
            | ErrorCode::ContractPurposeNotAllowed
            | ErrorCode::ContractOutsideValidity
            | ErrorCode::RateLimitExceeded
            | ErrorCode::DailyQuotaExceeded
            | ErrorCode::ServiceUnknown => Origin::Consumer,
            ErrorCode::UpstreamTimeout
            | ErrorCode::UpstreamUnavailable
            | ErrorCode::UpstreamStatus
            | ErrorCode::UpstreamBodyTooLarge
            | ErrorCode::UpstreamMalformed
            | ErrorCode::UpstreamFault
            | ErrorCode::UpstreamNotFound
            | ErrorCode::UpstreamResponseInvalid => Origin::Upstream,
            ErrorCode::GatewayTimeout
            | ErrorCode::GatewayOverloaded
            | ErrorCode::JournalUnavailable
            | ErrorCode::InternalUnexpected => Origin::Internal,
            ErrorCode::SignatureMissing => Origin::Consumer,
            ErrorCode::SignatureMalformed => Origin::Consumer,
            ErrorCode::SignatureInvalid => Origin::Consumer,
            ErrorCode::SignatureComponentMissing => Origin::Consumer,
            ErrorCode::SignatureComponentNotCovered => Origin::Consumer,
            ErrorCode::SignatureAlgorithmUnsupported => Origin::Consumer,
            ErrorCode::SignatureKeyUnknown => Origin::Consumer,
            ErrorCode::SignatureKeyNotAuthorised => Origin::Consumer,
            ErrorCode::SignatureExpired => Origin::Consumer,
            ErrorCode::SignatureNotYetValid => Origin::Consumer,
            ErrorCode::SignatureReplayed => Origin::Consumer,
            ErrorCode::DigestMissing => Origin::Consumer,
            ErrorCode::DigestMismatch => Origin::Consumer,
            ErrorCode::JweMalformed => Origin::Consumer,
            ErrorCode::JweAlgorithmUnsupported => Origin::Consumer,
            ErrorCode::JweDecryptionFailed => Origin::Consumer,
            ErrorCode::FederationConfigurationMissing => Origin::Internal,
            ErrorCode::FederationConfigurationExpired => Origin::Internal,
            ErrorCode::FederationMisdirected => Origin::Consumer,
            ErrorCode::FederationRouteNotAllowed => Origin::Consumer,
            ErrorCode::FederationProviderUnavailable => Origin::Upstream,
            ErrorCode::FederationProviderRefused => Origin::Upstream,
            ErrorCode::FederationResponseInvalid => Origin::Upstream,
            ErrorCode::JournalOverloaded => Origin::Internal,
            ErrorCode::AdminForbidden => Origin::Consumer,
            ErrorCode::AdminBadQuery => Origin::Consumer,
            ErrorCode::CitizenAssertionMissing => Origin::Consumer,
            ErrorCode::CitizenAssertionInvalid => Origin::Consumer,
            ErrorCode::CitizenIssuerUnknown => Origin::Consumer,
            ErrorCode::CitizenAudienceMismatch => Origin::Consumer,
            ErrorCode::CitizenAssertionExpired => Origin::Consumer,
            ErrorCode::CitizenAssertionNotYetValid => Origin::Consumer,
            ErrorCode::CitizenStepUpRequired => Origin::Consumer,
            ErrorCode::CitizenConsentMissing => Origin::Consumer,
            ErrorCode::CitizenSubjectMismatch => Origin::Consumer,
            ErrorCode::AutofillFormUnknown => Origin::Consumer,
            ErrorCode::AutofillFormNotAllowed => Origin::Consumer,
            ErrorCode::AutofillSourceTimeout => Origin::Upstream,
            ErrorCode::AutofillValueMissing => Origin::Upstream,
            ErrorCode::AutofillValueUnusable => Origin::Upstream,
            ErrorCode::CacheInvalidationNotAllowed => Origin::Consumer,
            ErrorCode::OpendataNotFound => Origin::Consumer,
            ErrorCode::OpendataInvalidQuery => Origin::Consumer,
            ErrorCode::OpendataRateLimited => Origin::Consumer,
            ErrorCode::OpendataUnavailable => Origin::Internal,
            ErrorCode::MetadataProviderUnknown => Origin::Consumer,
            ErrorCode::MetadataServiceUnknown => Origin::Consumer,
            ErrorCode::MetadataServiceCodeInvalid => Origin::Consumer,
            ErrorCode::MetadataMethodNotAllowed => Origin::Consumer,
        }
    }

    /// The X-Road error type of pr-rest 1.0 (§4.3, §4.6) that goes in `X-Road-Error`
    /// before the stable code: `Client` for the caller's own faults; `Server.ClientProxy`
    /// when the node refused on entry, before any provider was involved (shedding);
    /// `Server.ServerProxy` when the provider side failed (its backend, its deadline,
    /// its journal). A provider's own answer never carries the header.
    pub fn xroad_error_type(self) -> &'static str {
        match self.origin() {
            Origin::Consumer => "Client",
            Origin::Upstream => "Server.ServerProxy",
            Origin::Internal => match self {
                ErrorCode::GatewayOverloaded => "Server.ClientProxy",
                _ => "Server.ServerProxy",
            },
        }
    }

    /// The whole `X-Road-Error` value: type, then the stable code.
    pub fn xroad_error(self) -> String {
        format!("{}.{}", self.xroad_error_type(), self.as_str())
    }

    /// Whether the same request may succeed if sent again later, unchanged.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimitExceeded
                | ErrorCode::DailyQuotaExceeded
                | ErrorCode::RequestTimeout
                | ErrorCode::InFlightShareExceeded
                | ErrorCode::UpstreamTimeout
                | ErrorCode::UpstreamUnavailable
                | ErrorCode::UpstreamStatus
                | ErrorCode::GatewayTimeout
                | ErrorCode::GatewayOverloaded
                | ErrorCode::JournalUnavailable
                | ErrorCode::JournalOverloaded
                | ErrorCode::FederationConfigurationMissing
                | ErrorCode::FederationConfigurationExpired
                | ErrorCode::FederationProviderUnavailable
                | ErrorCode::AutofillSourceTimeout
                | ErrorCode::OpendataRateLimited
                | ErrorCode::OpendataUnavailable
        )
    }
}

/// One violation of a JSON Schema: where, and which rule. Never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaViolation {
    /// JSON pointer into the validated document.
    pub path: String,
    /// The schema keyword that failed (`type`, `pattern`, `required`, …).
    pub rule: String,
}

/// A failed exchange, as the client will see it.
#[derive(Debug, Clone)]
pub struct GatewayError {
    code: ErrorCode,
    detail: String,
    retry_after: Option<Duration>,
    violations: Vec<SchemaViolation>,
    required_level: Option<&'static str>,
}

impl GatewayError {
    /// A new error; `detail` must be safe to show (no personal data, no payload values).
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        GatewayError {
            code,
            detail: detail.into(),
            retry_after: None,
            violations: Vec::new(),
            required_level: None,
        }
    }

    /// How long to wait before retrying, when the refusal says.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The assurance level a step-up must reach (`citizen.step_up_required`,
    /// `citizen.assertion_missing`): the problem's `requiredLevel`.
    pub fn with_required_level(mut self, level: &'static str) -> Self {
        self.required_level = Some(level);
        self
    }

    /// Sets `Retry-After` (rounded up to whole seconds, at least one).
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// Attaches schema violations (paths and rules only).
    pub fn with_violations(mut self, violations: Vec<SchemaViolation>) -> Self {
        self.violations = violations;
        self
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The safe human-readable detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// Renders the problem document with the exchange's message id.
    pub fn into_problem(self, message_id: Option<&str>) -> Response {
        let (parts, body) = self.into_problem_parts(message_id);
        Response::from_parts(parts, axum::body::Body::from(body))
    }

    /// The problem answer as a response head and its body bytes (for answers that are
    /// signed over their bytes before they leave, between gateways).
    pub fn into_problem_parts(
        self,
        message_id: Option<&str>,
    ) -> (axum::http::response::Parts, bytes::Bytes) {
        let status = self.code.status();
        let body = Problem {
            problem_type: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            code: self.code.as_str(),
            detail: &self.detail,
            origin: self.code.origin(),
            retryable: self.code.retryable(),
            message_id,
            errors: &self.violations,
            required_level: self.required_level,
        };
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        let (mut parts, ()) = Response::new(()).into_parts();
        parts.status = status;
        let headers = &mut parts.headers;
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(wait) = self.retry_after {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if let Ok(value) = HeaderValue::from_str(&self.code.xroad_error()) {
            headers.insert(crate::base::headers::X_ROAD_ERROR, value);
        }
        if let Some(id) = message_id.and_then(|id| HeaderValue::from_str(id).ok()) {
            headers.insert(crate::base::headers::X_ROAD_ID, id);
        }
        (parts, bytes::Bytes::from(json))
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail)
    }
}

impl std::error::Error for GatewayError {}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    problem_type: &'static str,
    title: &'static str,
    status: u16,
    code: &'static str,
    detail: &'a str,
    origin: Origin,
    retryable: bool,
    #[serde(rename = "messageId", skip_serializing_if = "Option::is_none")]
    message_id: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [SchemaViolation],
    #[serde(rename = "requiredLevel", skip_serializing_if = "Option::is_none")]
    required_level: Option<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_namespaced() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate {}", code.as_str());
            assert!(
                code.as_str().contains('.'),
                "{} lacks a namespace",
                code.as_str()
            );
            assert!(code.status().is_client_error() || code.status().is_server_error());
        }
    }

    #[test]
    fn retry_after_is_rounded_up_to_whole_seconds() {
        let response = GatewayError::new(ErrorCode::RateLimitExceeded, "slow down")
            .with_retry_after(Duration::from_millis(1200))
            .into_problem(Some("abc"));
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert_eq!(response.headers()["x-road-id"], "abc");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }

    /// pr-rest 1.0 §4.3/§4.6: every error the node produces carries `X-Road-Error`.
    #[test]
    fn every_refusal_names_its_xroad_error_type() {
        for code in ErrorCode::ALL {
            let response = GatewayError::new(code, "x").into_problem(Some("id"));
            let value = response.headers()["x-road-error"]
                .to_str()
                .expect("ASCII")
                .to_owned();
            assert!(value.ends_with(code.as_str()), "{value}");
            let expected = match code.origin() {
                Origin::Consumer => "Client.",
                Origin::Upstream => "Server.ServerProxy.",
                Origin::Internal => "Server.",
            };
            assert!(value.starts_with(expected), "{value}");
        }
        assert_eq!(
            ErrorCode::GatewayOverloaded.xroad_error(),
            "Server.ClientProxy.gateway.overloaded"
        );
        assert_eq!(
            ErrorCode::UpstreamTimeout.xroad_error(),
            "Server.ServerProxy.upstream.timeout"
        );
        assert_eq!(
            ErrorCode::ContractNotFound.xroad_error(),
            "Client.contract.not_found"
        );
    }

    #[test]
    fn errors_md_lists_every_code() {
        let table = include_str!("../docs/ERRORS.md");
        let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| `")).collect();
        assert_eq!(
            rows.len(),
            ErrorCode::ALL.len(),
            "docs/ERRORS.md rows vs ErrorCode::ALL"
        );
        for (row, code) in rows.iter().zip(ErrorCode::ALL) {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            assert_eq!(cells[1], format!("`{}`", code.as_str()), "order or name");
            assert_eq!(
                cells[2],
                code.status().as_u16().to_string(),
                "{}",
                code.as_str()
            );
            let origin = serde_json::to_value(code.origin()).expect("serialises");
            assert_eq!(Some(cells[3]), origin.as_str(), "{}", code.as_str());
            let retryable = if code.retryable() { "yes" } else { "no" };
            assert_eq!(cells[4], retryable, "{}", code.as_str());
        }
    }
}
