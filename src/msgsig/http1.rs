//! A small HTTP/1.1 message reader and writer for the operator tools
//! (`datagate message sign` / `verify`): start line, header field lines, a blank line
//! and the body, with CRLF or bare LF line endings.
//!
//! The target URI of an origin-form request (`POST /exchange/v1/x HTTP/1.1`) is taken
//! as `https://{Host}{request-target}`: the gateway only speaks HTTPS, and the Host
//! field carries the authority. An absolute-form target is used as it is.
//!
//! The body is the `Content-Length` bytes after the blank line when that field is
//! present (so a trailing newline left by an editor is not part of it), otherwise
//! everything after the blank line. Chunked transfer coding, obsolete line folding,
//! and authority-form or asterisk-form targets are refused.

use super::SignatureError;
use super::base::{HttpMessage, header_lines};

/// The start line of a parsed message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StartLine {
    Request {
        method: String,
        target: String,
        version: String,
    },
    Response {
        version: String,
        status: u16,
        reason: String,
    },
}

/// An HTTP/1.1 message read by [`parse_http1_request`] (or [`parse_http1_response`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedMessage {
    start: StartLine,
    target_uri: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

const MALFORMED: fn(&'static str) -> SignatureError = SignatureError::MessageMalformed;

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Splits the head (start line and field lines, as text) from the rest.
fn split_head(bytes: &[u8]) -> Result<(Vec<String>, &[u8]), SignatureError> {
    let mut lines = Vec::new();
    let mut rest = bytes;
    loop {
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return Err(MALFORMED("no blank line ends the header section"));
        };
        let (line, after) = rest.split_at(nl);
        rest = after.get(1..).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if lines.is_empty() {
                // Tolerate blank lines before the start line (RFC 9112 §2.2).
                continue;
            }
            return Ok((lines, rest));
        }
        let text =
            std::str::from_utf8(line).map_err(|_| MALFORMED("header section is not UTF-8"))?;
        if text.contains('\r') {
            return Err(MALFORMED("bare CR in the header section"));
        }
        lines.push(text.to_string());
    }
}

fn parse_fields(lines: &[String]) -> Result<Vec<(String, String)>, SignatureError> {
    let mut headers = Vec::with_capacity(lines.len());
    for line in lines {
        if line.starts_with([' ', '\t']) {
            return Err(MALFORMED("obsolete line folding"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(MALFORMED("a field line has no colon"))?;
        if !is_token(name) {
            return Err(MALFORMED("a field name is not a token"));
        }
        headers.push((
            name.to_string(),
            value.trim_matches([' ', '\t']).to_string(),
        ));
    }
    Ok(headers)
}

fn take_body(headers: &[(String, String)], rest: &[u8]) -> Result<Vec<u8>, SignatureError> {
    if header_lines(headers, "transfer-encoding")
        .iter()
        .any(|_| true)
    {
        return Err(MALFORMED("transfer codings are not supported"));
    }
    let lengths = header_lines(headers, "content-length");
    match lengths.as_slice() {
        [] => Ok(rest.to_vec()),
        [one] => {
            let n: usize = one
                .parse()
                .map_err(|_| MALFORMED("content-length is not a number"))?;
            rest.get(..n)
                .map(<[u8]>::to_vec)
                .ok_or(MALFORMED("the body is shorter than content-length"))
        }
        _ => Err(MALFORMED("more than one content-length")),
    }
}

/// Reads an HTTP/1.1 request.
pub fn parse_http1_request(bytes: &[u8]) -> Result<ParsedMessage, SignatureError> {
    let (lines, rest) = split_head(bytes)?;
    let (start, fields) = lines.split_first().ok_or(MALFORMED("no request line"))?;
    let mut parts = start.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(MALFORMED(
            "the request line is not method, target and version",
        ));
    };
    if !is_token(method) {
        return Err(MALFORMED("the method is not a token"));
    }
    if !version.starts_with("HTTP/") {
        return Err(MALFORMED("the version is not HTTP/x.y"));
    }
    if target.is_empty() || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(MALFORMED("the request target is not printable ASCII"));
    }
    let headers = parse_fields(fields)?;
    let target_uri = if target.starts_with('/') {
        let hosts = header_lines(&headers, "host");
        let [host] = hosts.as_slice() else {
            return Err(MALFORMED(
                "an origin-form request needs exactly one host field",
            ));
        };
        if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(MALFORMED("the host field is not an authority"));
        }
        format!("https://{host}{target}")
    } else if target.starts_with("https://") || target.starts_with("http://") {
        target.to_string()
    } else {
        return Err(MALFORMED(
            "only origin-form and absolute-form targets are supported",
        ));
    };
    target_uri
        .parse::<http::Uri>()
        .map_err(|_| MALFORMED("the target URI is not valid"))?;
    let body = take_body(&headers, rest)?;
    Ok(ParsedMessage {
        start: StartLine::Request {
            method: method.to_string(),
            target: target.to_string(),
            version: version.to_string(),
        },
        target_uri: Some(target_uri),
        headers,
        body,
    })
}

/// Reads an HTTP/1.1 response.
pub fn parse_http1_response(bytes: &[u8]) -> Result<ParsedMessage, SignatureError> {
    let (lines, rest) = split_head(bytes)?;
    let (start, fields) = lines.split_first().ok_or(MALFORMED("no status line"))?;
    let mut parts = start.splitn(3, ' ');
    let (Some(version), Some(status)) = (parts.next(), parts.next()) else {
        return Err(MALFORMED("the status line is not version and status"));
    };
    let reason = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/") {
        return Err(MALFORMED("the version is not HTTP/x.y"));
    }
    let status: u16 = status
        .parse()
        .ok()
        .filter(|s| (100..=999).contains(s) && status.len() == 3)
        .ok_or(MALFORMED("the status is not three digits"))?;
    let headers = parse_fields(fields)?;
    let body = take_body(&headers, rest)?;
    Ok(ParsedMessage {
        start: StartLine::Response {
            version: version.to_string(),
            status,
            reason: reason.to_string(),
        },
        target_uri: None,
        headers,
        body,
    })
}

impl ParsedMessage {
    /// The field lines, names as written.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Appends a field line (written last by [`ParsedMessage::to_http1`]).
    pub fn add_header(&mut self, name: &str, value: &str) {
        self.headers.push((name.to_string(), value.to_string()));
    }

    /// Removes every field line named `name` (case-insensitive).
    pub fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Writes the message back as HTTP/1.1, with CRLF line endings.
    pub fn to_http1(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 256);
        match &self.start {
            StartLine::Request {
                method,
                target,
                version,
            } => out.extend_from_slice(format!("{method} {target} {version}\r\n").as_bytes()),
            StartLine::Response {
                version,
                status,
                reason,
            } => out.extend_from_slice(format!("{version} {status} {reason}\r\n").as_bytes()),
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

impl HttpMessage for ParsedMessage {
    fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }
    fn target_uri(&self) -> Option<String> {
        self.target_uri.clone()
    }
    fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Request { .. } => None,
            StartLine::Response { status, .. } => Some(*status),
        }
    }
    fn header_values(&self, name: &str) -> Vec<String> {
        header_lines(&self.headers, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] = b"POST /foo?param=Value&Pet=dog HTTP/1.1\r\nHost: example.com\r\nContent-Type: application/json\r\nContent-Length: 18\r\n\r\n{\"hello\": \"world\"}";

    #[test]
    fn reads_and_writes_a_request() -> Result<(), SignatureError> {
        let mut m = parse_http1_request(REQ)?;
        assert_eq!(m.method(), Some("POST"));
        assert_eq!(
            m.target_uri().as_deref(),
            Some("https://example.com/foo?param=Value&Pet=dog")
        );
        assert_eq!(m.header_values("content-type"), vec!["application/json"]);
        assert_eq!(m.body(), br#"{"hello": "world"}"#);
        assert_eq!(m.to_http1(), REQ);
        m.add_header("Signature", "sig1=:AA==:");
        let again = parse_http1_request(&m.to_http1())?;
        assert_eq!(again.header_values("signature"), vec!["sig1=:AA==:"]);
        Ok(())
    }

    #[test]
    fn lf_endings_and_content_length_trim() -> Result<(), SignatureError> {
        let lf = b"GET /x HTTP/1.1\nHost: a.example\nContent-Length: 2\n\nok\n";
        let m = parse_http1_request(lf)?;
        assert_eq!(m.body(), b"ok");
        assert_eq!(m.target_uri().as_deref(), Some("https://a.example/x"));
        let abs = parse_http1_request(b"GET http://b.example:8080/y HTTP/1.1\r\n\r\n")?;
        assert_eq!(abs.target_uri().as_deref(), Some("http://b.example:8080/y"));
        Ok(())
    }

    #[test]
    fn malformed_requests_are_refused() {
        for bad in [
            &b""[..],
            b"GET /x HTTP/1.1\r\nHost: a\r\n",
            b"GET /x\r\nHost: a\r\n\r\n",
            b"GET /x HTTP/1.1\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: a\r\nBad Name: v\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nshort",
            b"GET /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            let err = parse_http1_request(bad).err().map(|e| e.code());
            assert_eq!(
                err,
                Some("message.malformed"),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn reads_a_response() -> Result<(), SignatureError> {
        let m = parse_http1_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")?;
        assert_eq!(m.status(), Some(200));
        assert_eq!(m.body(), b"hi");
        assert_eq!(
            m.to_http1(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
        );
        Ok(())
    }
}
