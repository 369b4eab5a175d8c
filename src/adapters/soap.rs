//! The SOAP/XML adapter kind.
//!
//! The request envelope and the mapping of the response's record element to
//! JSON come from configuration ([`super::soap_mapping`]); this file only does
//! the HTTP part: POST to the adapter's address with `SOAPAction`, accept 200
//! (answers) and 500 (SOAP 1.1 faults), and hand the body to the real XML parser.

use super::soap_mapping::{self, ParamSource, SoapError, SoapOperation};
use super::transport::{Call, Transport};
use super::{AdapterError, AdapterRequest, AdapterResponse, Record};
use bytes::Bytes;
use http::Method;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use std::collections::BTreeMap;

fn to_adapter_error(error: SoapError) -> AdapterError {
    match error {
        SoapError::NotFound => AdapterError::NotFound,
        SoapError::Fault { code } => AdapterError::Fault(code),
        SoapError::RecordMissing => {
            AdapterError::Malformed("the answer lacks the record element".into())
        }
        SoapError::FieldType { pointer } => {
            AdapterError::Malformed(format!("field {pointer} has the wrong type"))
        }
        SoapError::Malformed(reason) => AdapterError::Malformed(reason),
        other => AdapterError::Malformed(other.to_string()),
    }
}

/// Calls a SOAP 1.1 backend.
pub async fn call(
    transport: &Transport,
    operation: &SoapOperation,
    request: &AdapterRequest<'_>,
) -> Result<AdapterResponse, AdapterError> {
    let query: BTreeMap<&str, &String> = request
        .query
        .iter()
        .map(|(name, value)| (name.as_str(), value))
        .collect();
    let mut values = BTreeMap::new();
    for param in &operation.params {
        let source = param.source();
        let value = match source {
            ParamSource::Path(name) => request.params.get(name),
            ParamSource::Query(name) => query.get(name).copied(),
        };
        if let Some(value) = value {
            values.insert(source.name().to_owned(), value.clone());
        }
    }
    let envelope =
        soap_mapping::build_request_envelope(operation, &values).map_err(|e| match e {
            // A missing query parameter is the consumer's omission; the schema should catch it first.
            SoapError::MissingParam(name) => {
                AdapterError::Malformed(format!("parameter {name} is missing"))
            }
            other => to_adapter_error(other),
        })?;
    let action = HeaderValue::try_from(format!("\"{}\"", operation.action))
        .map_err(|_| AdapterError::Malformed("the SOAP action is not a header value".into()))?;
    let call = Call {
        method: Method::POST,
        uri: transport.endpoint("", None)?,
        headers: vec![
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/xml; charset=utf-8"),
            ),
            (HeaderName::from_static("soapaction"), action),
        ],
        body: Bytes::from(envelope),
    };
    // Lookups are read-only, so a retry cannot change anything.
    let answer = transport
        .execute(call, request.message_id, true, request.deadline)
        .await?;
    if answer.status != 200 && answer.status != 500 {
        return Err(AdapterError::Status(answer.status));
    }
    let record = soap_mapping::extract_record(operation, &answer.body).map_err(to_adapter_error)?;
    Ok(AdapterResponse {
        record: Record::Value(record),
        bytes: answer.body.len(),
    })
}
