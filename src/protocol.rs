//! The client-facing protocol: X-Road REST message protocol (pr-rest 1.0) shape.
//!
//! `{METHOD} /r1/{instance}/{class}/{member}/{subsystem}/{service}[/{path}]`
//! with `X-Road-Client` (required), `X-Road-Id` (generated when absent and
//! echoed), `X-Road-UserId`, `X-Road-Issue`, and our `X-Purpose`.

use crate::error::{ErrorCode, GatewayError};
use crate::identity::{ClientId, ServiceId};

pub use crate::base::headers::*;

/// The target of a request, parsed from the `/r1/...` path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The addressed service.
    pub service: ServiceId,
    /// The rest of the path after the service code, always starting with `/`.
    pub path: String,
}

/// Parses `/r1/{instance}/{class}/{member}/{subsystem}/{service}[/{path}]`.
pub fn parse_target(path: &str) -> Result<Target, GatewayError> {
    let rest = path.strip_prefix("/r1/").ok_or_else(|| {
        GatewayError::new(
            ErrorCode::RequestRouteNotFound,
            "only /r1/{instance}/{class}/{member}/{subsystem}/{service}[/path] is served here",
        )
    })?;
    let mut parts = rest.splitn(6, '/');
    let mut next = || parts.next().unwrap_or("");
    let ids = [next(), next(), next(), next(), next()];
    let tail = next();
    let service = ServiceId::from_parts(ids).map_err(|error| {
        GatewayError::new(
            ErrorCode::RequestPathInvalid,
            format!("the service id in the path is invalid: {error}"),
        )
    })?;
    if tail.split('/').any(|s| s == ".." || s == ".") {
        return Err(GatewayError::new(
            ErrorCode::RequestPathInvalid,
            "dot segments are not allowed in the service path",
        ));
    }
    Ok(Target {
        service,
        path: format!("/{tail}"),
    })
}

/// Parses the `X-Road-Client` header value.
pub fn parse_client(value: Option<&axum::http::HeaderValue>) -> Result<ClientId, GatewayError> {
    let value = value.ok_or_else(|| {
        GatewayError::new(
            ErrorCode::RequestClientMissing,
            "the X-Road-Client header is required",
        )
    })?;
    let text = value.to_str().map_err(|_| {
        GatewayError::new(
            ErrorCode::RequestClientInvalid,
            "X-Road-Client is not ASCII",
        )
    })?;
    text.parse().map_err(|error| {
        GatewayError::new(
            ErrorCode::RequestClientInvalid,
            format!("X-Road-Client must be instance/class/member/subsystem: {error}"),
        )
    })
}

/// Takes the caller's `X-Road-Id` or makes one. A caller's id must be 1–128
/// characters of `[A-Za-z0-9._:-]`, so it is safe in logs and headers.
pub fn message_id(value: Option<&axum::http::HeaderValue>) -> Result<String, GatewayError> {
    match value {
        None => Ok(uuid::Uuid::new_v4().to_string()),
        Some(value) => {
            let ok = value.len() <= 128
                && !value.is_empty()
                && value
                    .as_bytes()
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(b));
            if ok {
                Ok(String::from_utf8_lossy(value.as_bytes()).into_owned())
            } else {
                Err(GatewayError::new(
                    ErrorCode::RequestMessageIdInvalid,
                    "X-Road-Id must be 1-128 characters of A-Z a-z 0-9 . _ : -",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_target_with_and_without_path() {
        let t = parse_target("/r1/VN/GOV/000.00.00.G10/population-db/citizen/001085012345")
            .expect("valid");
        assert_eq!(
            t.service.to_string(),
            "VN/GOV/000.00.00.G10/population-db/citizen"
        );
        assert_eq!(t.path, "/001085012345");
        let t = parse_target("/r1/VN/GOV/000.00.00.G10/population-db/citizen").expect("valid");
        assert_eq!(t.path, "/");
    }

    #[test]
    fn rejects_short_paths_and_dot_segments() {
        assert_eq!(
            parse_target("/r1/VN/GOV/x").expect_err("short").code(),
            ErrorCode::RequestPathInvalid
        );
        assert_eq!(
            parse_target("/r1/VN/GOV/G10/db/svc/../x")
                .expect_err("dots")
                .code(),
            ErrorCode::RequestPathInvalid
        );
        assert_eq!(
            parse_target("/r2/VN").expect_err("prefix").code(),
            ErrorCode::RequestRouteNotFound
        );
    }

    #[test]
    fn message_id_is_generated_or_validated() {
        assert_eq!(message_id(None).expect("generated").len(), 36);
        let ok = axum::http::HeaderValue::from_static("abc-123");
        assert_eq!(message_id(Some(&ok)).expect("valid"), "abc-123");
        let bad = axum::http::HeaderValue::from_static("a b");
        assert!(message_id(Some(&bad)).is_err());
    }
}
