//! The client-facing protocol: X-Road REST message protocol (pr-rest 1.0) shape.
//!
//! `{METHOD} /r1/{instance}/{class}/{member}/{subsystem}/{service}[/{path}]`
//! with `X-Road-Client` (required), `X-Road-Id` (generated when absent and
//! echoed), `X-Road-UserId`, `X-Road-Issue`, and our `X-Purpose`.

use crate::error::{ErrorCode, GatewayError};
use crate::identity::{ClientId, ServiceId};
use http::{HeaderMap, HeaderName, HeaderValue};

pub use crate::base::headers::*;

/// The target of a request, parsed from the `/r1/...` path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The addressed service.
    pub service: ServiceId,
    /// `/r1/{service}{path}`, kept as one string so that the digests' target, the
    /// `X-Road-Service` header and the metric label are slices of it, not formatted
    /// per request (issue 12).
    canonical: String,
    /// Where the service id ends in `canonical`.
    service_end: usize,
}

impl Target {
    /// The rest of the path after the service code in its one canonical spelling,
    /// always starting with `/` (`/` alone when there is none).
    pub fn path(&self) -> &str {
        &self.canonical[self.service_end..]
    }

    /// The service id as written: the same text as the [`ServiceId`]'s `Display`.
    pub fn service_text(&self) -> &str {
        &self.canonical["/r1/".len()..self.service_end]
    }

    /// `/r1/{service}{path}` without the query: what the digests and signatures cover.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }
}

fn path_invalid(detail: &'static str) -> GatewayError {
    GatewayError::new(ErrorCode::RequestPathInvalid, detail)
}

/// Whether `c` may not appear in a decoded identifier: a control character (C0, C1)
/// or a bidirectional formatting character, which would make logs and journals lie
/// about what was asked.
fn is_forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Checks that one path segment is in its one canonical spelling: unreserved
/// characters (`A-Z a-z 0-9 - . _ ~`) spelled plain, **every other byte**
/// percent-escaped with uppercase hex (RFC 3986 §6.2.2: so `+`, `:`, `@`, `;` and
/// UTF-8 have one spelling each), not empty, not a dot segment, decoding to valid
/// UTF-8 without `/`, `\`, control or bidirectional formatting characters. One
/// request therefore has one spelling, and one request hash.
fn check_segment(segment: &str) -> Result<(), GatewayError> {
    if segment.is_empty() {
        return Err(path_invalid(
            "empty path segments (// or a trailing /) are not allowed",
        ));
    }
    if segment == "." || segment == ".." {
        return Err(path_invalid("dot segments are not allowed in the path"));
    }
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    let bytes = segment.as_bytes();
    // Unreserved characters alone (ids, most paths) decode to themselves: nothing to check
    // further, nothing to allocate (issue 12).
    if bytes.iter().all(|&b| unreserved(b)) {
        return Ok(());
    }
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .ok_or_else(|| path_invalid("a percent-escape in the path is cut short"))?;
            let digit = |b: u8| match b {
                b'0'..=b'9' => Some(b - b'0'),
                b'A'..=b'F' => Some(b - b'A' + 10),
                _ => None,
            };
            let (Some(high), Some(low)) = (digit(hex[0]), digit(hex[1])) else {
                return Err(path_invalid(
                    "percent-escapes in the path must be two uppercase hex digits",
                ));
            };
            let value = high * 16 + low;
            if unreserved(value) {
                return Err(path_invalid(
                    "unreserved characters must not be percent-encoded in the path",
                ));
            }
            decoded.push(value);
            i += 3;
        } else if unreserved(byte) {
            decoded.push(byte);
            i += 1;
        } else {
            return Err(path_invalid(
                "characters other than A-Z a-z 0-9 - . _ ~ must be percent-encoded in the path",
            ));
        }
    }
    let text = String::from_utf8(decoded)
        .map_err(|_| path_invalid("the path does not decode to UTF-8"))?;
    if text
        .chars()
        .any(|c| c == '/' || c == '\\' || is_forbidden_char(c))
    {
        return Err(path_invalid(
            "the path encodes a separator, a control or a formatting character",
        ));
    }
    Ok(())
}

/// Parses `/r1/{instance}/{class}/{member}/{subsystem}/{service}[/{path}]`,
/// refusing every spelling but the canonical one (see [`check_segment`]).
pub fn parse_target(path: &str) -> Result<Target, GatewayError> {
    let rest = path.strip_prefix("/r1/").ok_or_else(|| {
        GatewayError::new(
            ErrorCode::RequestRouteNotFound,
            "only /r1/{instance}/{class}/{member}/{subsystem}/{service}[/path] is served here",
        )
    })?;
    let mut segments = crate::base::path::segments(rest);
    let mut ids = [""; 5];
    let mut service_end = "/r1/".len();
    for (index, id) in ids.iter_mut().enumerate() {
        *id = segments.next().unwrap_or("");
        check_segment(id)?;
        service_end += id.len() + usize::from(index > 0);
    }
    let service = ServiceId::from_parts(ids).map_err(|error| {
        GatewayError::new(
            ErrorCode::RequestPathInvalid,
            format!("the service id in the path is invalid: {error}"),
        )
    })?;
    // The accepted path is its own canonical spelling; only a missing tail becomes `/`.
    let mut canonical = String::with_capacity(path.len() + 1);
    canonical.push_str(&path[..service_end]);
    for segment in segments {
        check_segment(segment)?;
        canonical.push('/');
        canonical.push_str(segment);
    }
    if canonical.len() == service_end {
        canonical.push('/');
    }
    Ok(Target {
        service,
        canonical,
        service_end,
    })
}

/// The service codes of X-Road's service metadata for REST (PR-MREST §4–5): on the consumer
/// listener `/r1/{provider subsystem}/{code}` is a metadata call answered by this node,
/// never a service call, so no service may be configured under one of these codes.
pub const METADATA_SERVICE_CODES: [&str; 3] = ["listMethods", "allowedMethods", "getOpenAPI"];

/// The one value of a header that must not be repeated: `None` when absent,
/// `request.header_duplicated` when sent more than once (first-wins or
/// last-wins would let two parties read one request differently).
pub fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'h HeaderValue>, GatewayError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(GatewayError::new(
            ErrorCode::RequestHeaderDuplicated,
            format!("the {name} header is sent more than once"),
        ));
    }
    Ok(first)
}

/// Headers of the protocol that must appear at most once.
pub const SINGLE_HEADERS: [HeaderName; 7] = [
    X_ROAD_CLIENT,
    X_ROAD_ID,
    X_PURPOSE,
    X_ROAD_USER_ID,
    X_ROAD_ISSUE,
    X_CITIZEN_ASSERTION,
    http::header::CONTENT_TYPE,
];

/// Refuses a request that repeats any of [`SINGLE_HEADERS`].
pub fn check_single_headers(headers: &HeaderMap) -> Result<(), GatewayError> {
    // As many names as values: no header at all is repeated, so none of these is
    // (issue 12: most requests end here, without seven look-ups).
    if headers.keys_len() == headers.len() {
        return Ok(());
    }
    for name in &SINGLE_HEADERS {
        single_header(headers, name)?;
    }
    Ok(())
}

/// A field value without its surrounding whitespace (RFC 9110 §5.5: OWS is not part
/// of the value). HTTP/1.1's parser strips it already; HTTP/2 delivers it, so one
/// request reads the same over both.
fn field_value(value: &HeaderValue) -> &[u8] {
    value.as_bytes().trim_ascii()
}

/// Parses the `X-Road-Client` header value.
pub fn parse_client(value: Option<&HeaderValue>) -> Result<ClientId, GatewayError> {
    let value = value.ok_or_else(|| {
        GatewayError::new(
            ErrorCode::RequestClientMissing,
            "the X-Road-Client header is required",
        )
    })?;
    let text = std::str::from_utf8(field_value(value))
        .ok()
        .filter(|text| text.is_ascii())
        .ok_or_else(|| {
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

/// A purpose code as sent in `X-Purpose`: 1–64 characters of `A-Z a-z 0-9 - _ .`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Purpose(String);

impl Purpose {
    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Parses `X-Purpose`: absent is `None`; anything that is not a purpose code
/// (non-ASCII, free text, too long) is `request.purpose_invalid`.
pub fn parse_purpose(value: Option<&HeaderValue>) -> Result<Option<Purpose>, GatewayError> {
    let Some(value) = value else { return Ok(None) };
    let bytes = field_value(value);
    let ok = !bytes.is_empty()
        && bytes.len() <= 64
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b));
    if !ok {
        return Err(GatewayError::new(
            ErrorCode::RequestPurposeInvalid,
            "X-Purpose must be a purpose code: 1-64 characters of A-Z a-z 0-9 - _ .",
        ));
    }
    Ok(Some(Purpose(String::from_utf8_lossy(bytes).into_owned())))
}

/// The longest query string accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 2048;

/// The query parameters of a request, decoded, checked against the names an
/// operation declares and sorted by name: what is forwarded and what the
/// request hash covers. Anything undeclared, repeated, or a query longer than
/// [`MAX_QUERY_BYTES`] is `request.query_not_allowed`.
pub fn parse_query(
    query: Option<&str>,
    declared: impl Fn(&str) -> bool,
) -> Result<Vec<(String, String)>, GatewayError> {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(Vec::new());
    };
    let refuse =
        |detail: &'static str| GatewayError::new(ErrorCode::RequestQueryNotAllowed, detail);
    if query.len() > MAX_QUERY_BYTES {
        return Err(refuse("the query string is longer than 2048 bytes"));
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if !declared(&name) {
            return Err(refuse(
                "the query holds a parameter the operation does not declare",
            ));
        }
        if pairs.iter().any(|(seen, _)| *seen == name) {
            return Err(refuse("a query parameter is repeated"));
        }
        // U+FFFD stands for bytes that were not UTF-8: forwarding it would send the backend
        // something the caller never sent.
        if name
            .chars()
            .chain(value.chars())
            .any(|c| c == '\u{FFFD}' || is_forbidden_char(c))
        {
            return Err(refuse(
                "the query holds a control or formatting character, or bytes that are not UTF-8",
            ));
        }
        pairs.push((name.into_owned(), value.into_owned()));
    }
    pairs.sort();
    Ok(pairs)
}

/// The canonical query string of sorted, decoded pairs (form-urlencoded).
pub fn canonical_query(pairs: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Takes the caller's `X-Road-Id` or makes one. A caller's id must be 1–128
/// characters of `[A-Za-z0-9._:-]`, so it is safe in logs and headers.
pub fn message_id(value: Option<&HeaderValue>) -> Result<String, GatewayError> {
    match value {
        None => Ok(uuid::Uuid::new_v4().to_string()),
        Some(value) => {
            let bytes = field_value(value);
            let ok = bytes.len() <= 128
                && !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(b));
            if ok {
                Ok(String::from_utf8_lossy(bytes).into_owned())
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
        assert_eq!(t.path(), "/001085012345");
        assert_eq!(
            t.service_text(),
            "VN/GOV/000.00.00.G10/population-db/citizen"
        );
        assert_eq!(
            t.canonical(),
            "/r1/VN/GOV/000.00.00.G10/population-db/citizen/001085012345"
        );
        let t = parse_target("/r1/VN/GOV/000.00.00.G10/population-db/citizen").expect("valid");
        assert_eq!(t.path(), "/");
        assert_eq!(
            t.canonical(),
            "/r1/VN/GOV/000.00.00.G10/population-db/citizen/"
        );
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

    /// Finding 7 of issue 7: one request, one spelling.
    #[test]
    fn refuses_every_non_canonical_spelling_of_a_path() {
        let base = "/r1/VN/GOV/000.00.00.G10/population-db/citizen";
        for bad in [
            "/r1/VN/GOV/000.00.00.G10/../population-db/citizen/1",
            "/r1/VN/GOV/000.00.00.G10/population-db/citizen//001097175464",
            "/r1/VN/GOV/000.00.00.G10/population-db/citizen/001097175464/",
            "/r1/VN/GOV/000.00.00.G10/population-db/citizen/",
            "/r1/VN/GOV/000.00.00.G10/population-db/citizen/%2e%2e/x",
            "/r1/VN/GOV/000.00.00.G10/population-db/citizen/%30%30",
            "/r1/VN/GOV/000.00.00.G10/population-db/citizen/a%2Fb",
            "/r1/VN/GOV/000.00.00.G10/population-db/citizen/a%2fb",
            "/r1/VN/GOV/000.00.00.G10/population-db/citizen/a%00b",
            "/r1/VN/GOV/000.00.00.G10/population-db/citizen/a%5Cb",
            "/r1/VN/GOV/000.00.00.G10/population-db/citizen/a%2",
            "/r1/VN/GOV/000.00.00.G10/population-db/citizen/a%zz",
            "/r1/VN/GOV/000.00.00.G10/population-db/citizen/./1",
            "/r1/VN/GOV//population-db/citizen/1",
            "/r1/VN/GOV/000.00.00.G10/population-db/citizen/a+b",
            "/r1/VN/GOV/000.00.00.G10/population-db/citizen/a:b",
            "/r1/VN/GOV/000.00.00.G10/population-db/citizen/a@b",
            "/r1/VN/GOV/000.00.00.G10/population-db/citizen/a!",
            "/r1/VN/GOV/000.00.00.G10/population-db/citizen/\u{e9}",
            "/r1/VN/GOV/000.00.00.G10/population-db/citizen/%FF",
            "/r1/VN/GOV/000.00.00.G10/population-db/citizen/a%C0%AE",
            "/r1/VN/GOV/000.00.00.G10/population-db/citizen/a%C2%85b",
            "/r1/VN/GOV/000.00.00.G10/population-db/citizen/%E2%80%AE",
        ] {
            assert_eq!(
                parse_target(bad).expect_err(bad).code(),
                ErrorCode::RequestPathInvalid,
                "{bad}"
            );
        }
        assert_eq!(parse_target(base).expect("bare service").path(), "/");
        assert_eq!(
            parse_target(&format!("{base}/a%20b"))
                .expect("escaped space")
                .path(),
            "/a%20b"
        );
    }

    /// Finding 6 of issue 7: an X-Road header sent twice is ambiguous.
    #[test]
    fn refuses_repeated_protocol_headers() {
        for name in SINGLE_HEADERS {
            let mut headers = HeaderMap::new();
            headers.append(&name, HeaderValue::from_static("a"));
            assert!(check_single_headers(&headers).is_ok());
            headers.append(&name, HeaderValue::from_static("b"));
            assert_eq!(
                check_single_headers(&headers).expect_err("twice").code(),
                ErrorCode::RequestHeaderDuplicated
            );
        }
    }

    #[test]
    fn surrounding_whitespace_is_not_part_of_a_value() {
        let padded = HeaderValue::from_static("HOUSEHOLD-REGISTRATION\t");
        assert_eq!(
            parse_purpose(Some(&padded))
                .expect("code")
                .expect("some")
                .as_str(),
            "HOUSEHOLD-REGISTRATION"
        );
        let client = HeaderValue::from_static(" VN/GOV/000.00.00.H29/dvc-portal ");
        assert_eq!(
            parse_client(Some(&client)).expect("client").to_string(),
            "VN/GOV/000.00.00.H29/dvc-portal"
        );
        let id = HeaderValue::from_static("abc-123 ");
        assert_eq!(message_id(Some(&id)).expect("id"), "abc-123");
    }

    #[test]
    fn purpose_must_be_a_code() {
        let ok = HeaderValue::from_static("HOUSEHOLD-REGISTRATION");
        assert_eq!(
            parse_purpose(Some(&ok))
                .expect("code")
                .expect("some")
                .as_str(),
            "HOUSEHOLD-REGISTRATION"
        );
        assert_eq!(parse_purpose(None).expect("absent"), None);
        let accented = HeaderValue::from_bytes("MỤC-ĐÍCH".as_bytes()).expect("bytes");
        for bad in [
            accented,
            HeaderValue::from_static("for marketing"),
            HeaderValue::from_static(""),
        ] {
            assert_eq!(
                parse_purpose(Some(&bad)).expect_err("not a code").code(),
                ErrorCode::RequestPurposeInvalid
            );
        }
    }

    /// Finding 5 of issue 7: only declared query parameters pass.
    /// 004 Điều 3: only the query parameters the operation declares are accepted.
    #[test]
    fn query_keeps_only_declared_parameters() {
        let declared = |name: &str| name == "include" || name == "lang";
        assert_eq!(
            parse_query(Some("lang=vi&include=a+b"), declared).expect("declared"),
            vec![
                ("include".into(), "a b".into()),
                ("lang".into(), "vi".into())
            ]
        );
        for bad in [
            "include=x&fields=all",
            "%00=%00",
            "include=a&include=b",
            "include=%07",
            "include=%FF",
            "include=%E2%80%AE",
        ] {
            assert_eq!(
                parse_query(Some(bad), declared).expect_err(bad).code(),
                ErrorCode::RequestQueryNotAllowed
            );
        }
        let long = format!("include={}", "a".repeat(MAX_QUERY_BYTES));
        assert!(parse_query(Some(&long), declared).is_err());
        assert_eq!(parse_query(Some(""), declared).expect("empty"), vec![]);
        assert_eq!(
            canonical_query(&parse_query(Some("lang=vi&include=a+b"), declared).expect("ok")),
            canonical_query(&parse_query(Some("include=a%20b&lang=vi"), declared).expect("ok"))
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
