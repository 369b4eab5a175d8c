//! The REST/JSON adapter kind.
//!
//! The operation's `[operations.rest]` table gives the backend method and a
//! path template filled with the operation's path parameters; the query
//! parameters the operation declares (and nothing else) and the JSON body are
//! forwarded. An optional `fields` table maps
//! the backend's JSON (source pointers) to the service's record (target
//! pointers); without it the backend's document is the record.

use super::transport::{Call, Transport};
use super::{AdapterError, AdapterRequest, AdapterResponse, Record};
use crate::base::json_pointer::{insert_at, pointer_tokens};
use crate::pattern::OperationPattern;
use bytes::Bytes;
use http::Method;
use http::header::{CONTENT_TYPE, HeaderValue};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `[operations.rest]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestMapping {
    /// Backend method. Default: the consumer's method.
    #[serde(default)]
    pub method: Option<String>,
    /// Backend path template relative to the adapter's address, e.g. `/api/v1/enterprises/{tax_code}`.
    pub path: String,
    /// Record field (JSON pointer) → backend field (JSON pointer). Empty: the whole document.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Backend statuses that mean "no such record". Default: 404.
    #[serde(default = "default_not_found")]
    pub not_found_statuses: Vec<u16>,
}

fn default_not_found() -> Vec<u16> {
    vec![404]
}

impl RestMapping {
    /// Problems with the mapping, given the operation's pattern.
    pub fn validate(&self, pattern: Option<&OperationPattern>) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.path.starts_with('/') {
            problems.push("path must start with '/'".into());
        }
        if let Some(method) = &self.method
            && Method::from_bytes(method.as_bytes()).is_err()
        {
            problems.push("method must be an HTTP method".into());
        }
        if let Some(pattern) = pattern {
            let params: BTreeMap<String, String> = pattern
                .param_names()
                .map(|n| (n.to_owned(), "x".to_owned()))
                .collect();
            match OperationPattern::fill(&self.path, &params) {
                None => problems.push(
                    "path uses a {parameter} that the operation's path pattern does not name"
                        .into(),
                ),
                // The transport puts the filled path into the request line as it is.
                Some(filled)
                    if filled.contains(['?', '#'])
                        || filled.parse::<http::uri::PathAndQuery>().is_err() =>
                {
                    problems.push(
                        "path must be a URI path: no query, no fragment, characters outside \
                         A-Z a-z 0-9 - . _ ~ ! $ & ' ( ) * + , ; = : @ / percent-encoded"
                            .into(),
                    );
                }
                Some(_) => {}
            }
        }
        for (target, source) in &self.fields {
            if pointer_tokens(target).is_none() {
                problems.push(format!("fields: {target:?} is not a JSON pointer"));
            }
            if pointer_tokens(source).is_none() {
                problems.push(format!(
                    "fields: the source of {target:?} is not a JSON pointer"
                ));
            }
        }
        problems
    }

    fn map(&self, document: serde_json::Value) -> serde_json::Value {
        if self.fields.is_empty() {
            return document;
        }
        let mut record = serde_json::Value::Object(serde_json::Map::new());
        for (target, source) in &self.fields {
            if let (Some(value), Some(tokens)) = (document.pointer(source), pointer_tokens(target))
            {
                insert_at(&mut record, &tokens, value.clone());
            }
        }
        record
    }
}

/// Calls a REST/JSON backend.
pub async fn call(
    transport: &Transport,
    mapping: &RestMapping,
    request: &AdapterRequest<'_>,
) -> Result<AdapterResponse, AdapterError> {
    let path = OperationPattern::fill(&mapping.path, request.params).ok_or_else(|| {
        AdapterError::Malformed(
            "the operation's path parameters do not fill the backend path".into(),
        )
    })?;
    // Only the operation's declared parameters, as the gateway re-encoded them.
    let query = (!request.query.is_empty()).then(|| {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(request.query)
            .finish()
    });
    let uri = transport.endpoint(&path, query.as_deref())?;
    let method = match &mapping.method {
        Some(method) => Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET),
        None => request.operation.pattern.method().clone(),
    };
    let idempotent = method.is_idempotent();
    let (headers, body) = match request.body {
        Some(body) => (
            vec![(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            serde_json::to_vec(body)
                .map(Bytes::from)
                .map_err(|_| AdapterError::Malformed("the body does not serialise".into()))?,
        ),
        None => (Vec::new(), Bytes::new()),
    };
    let call = Call {
        method,
        uri,
        headers,
        body,
    };
    let answer = transport
        .execute(call, request.message_id, idempotent, request.deadline)
        .await?;
    if mapping.not_found_statuses.contains(&answer.status) {
        return Err(AdapterError::NotFound);
    }
    if !(200..300).contains(&answer.status) {
        return Err(AdapterError::Status(answer.status));
    }
    let bytes = answer.body.len();
    let record = if mapping.fields.is_empty() {
        // The document is the record: parse it only if the gateway needs the tree.
        Record::Json(answer.body)
    } else {
        Record::Value(mapping.map(Record::Json(answer.body).into_value()?))
    };
    Ok(AdapterResponse { record, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(path: &str) -> RestMapping {
        RestMapping {
            method: None,
            path: path.to_owned(),
            fields: BTreeMap::new(),
            not_found_statuses: default_not_found(),
        }
    }

    /// `datagate check` refuses a backend path the transport could not put in a request
    /// line as it is, rather than failing each call.
    #[test]
    fn a_backend_path_must_be_a_uri_path() {
        let pattern = OperationPattern::parse("get", "/{id}").expect("pattern");
        assert!(
            mapping("/api/v1/x/{id}")
                .validate(Some(&pattern))
                .is_empty()
        );
        assert!(
            mapping("/api/v1/urn:x/{id};v=1")
                .validate(Some(&pattern))
                .is_empty()
        );
        for bad in [
            "/api v1/{id}",
            "/api/{id}?full=1",
            "/api/{id}#top",
            "/api/\u{1}/{id}",
        ] {
            let problems = mapping(bad).validate(Some(&pattern));
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with("path must be a URI path")),
                "{bad:?} was accepted: {problems:?}"
            );
        }
        assert!(!mapping("/api/{other}").validate(Some(&pattern)).is_empty());
    }
}
