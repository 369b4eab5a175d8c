//! Configuration-driven mapping between a service's JSON record and a SOAP/XML backend.
//!
//! Adding a SOAP backend must never need code: everything a backend differs in is described
//! by a [`SoapOperation`] deserialized from TOML.
//!
//! This module owns:
//! - building SOAP 1.1 request envelopes ([`build_request_envelope`]) with correctly escaped
//!   parameter values;
//! - parsing SOAP responses with a real XML parser (`quick-xml`), namespace-agnostically
//!   (matching on local names), with guards against hostile documents: DTDs are rejected
//!   outright (XXE / entity-expansion defence), nesting depth and element count are bounded;
//! - recognising SOAP 1.1 faults and mapping configured fault codes to "not found";
//! - mapping the record element to a JSON object by configuration ([`extract_record`]),
//!   converting leaf text to strings, integers, numbers or booleans.
//!
//! It does not own HTTP transport (sending the envelope, the `SOAPAction` header, TLS, timeouts),
//! retries or circuit breaking, nor data-sharing contracts (which fields a consumer may see,
//! JSON-schema validation of the result). Those live with the caller.
//!
//! Privacy: no error produced here carries text content from a response document. Errors may
//! name elements, configured JSON pointers, byte positions and (sanitised) SOAP fault codes,
//! but never field values or `faultstring`s, so they are safe to log.

use std::collections::BTreeMap;
use std::fmt;

use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

/// SOAP 1.1 envelope namespace URI.
pub const SOAP11_ENVELOPE_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// Maximum element nesting depth accepted in a response (the `Envelope` is depth 1).
pub const MAX_DEPTH: usize = 64;

/// Maximum number of elements accepted in a response.
pub const MAX_ELEMENTS: usize = 100_000;

/// Longest fault code reported verbatim in [`SoapError::Fault`]; longer codes are replaced.
const MAX_FAULT_CODE_LEN: usize = 128;

/// Longest element name quoted in a [`SoapError::Malformed`] reason.
const MAX_NAME_IN_REASON: usize = 64;

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// One SOAP operation of a backend, and how its response record maps to JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoapOperation {
    /// Local name of the request body element, e.g. "GetCitizen".
    pub element: String,
    /// Value of the SOAPAction header, e.g. "urn:vn:gov:population:1#GetCitizen".
    pub action: String,
    /// Namespace URI of the request body element and its parameters.
    pub namespace: String,
    /// Request parameters in document order: child element local name -> value source.
    /// Value source syntax: "path:NAME" (a named parameter, taken from the caller's request
    /// path), "query:NAME" (a query parameter). Both end up in the `params` map passed to
    /// [`build_request_envelope`] under NAME.
    #[serde(default)]
    pub params: Vec<SoapParam>,
    /// Slash-separated local names from the SOAP Body's first child down to the record element,
    /// e.g. "GetCitizenResponse/Citizen". Namespace prefixes are ignored when matching.
    pub record: String,
    /// Output field (JSON pointer, e.g. "/address/province") -> mapping.
    pub fields: BTreeMap<String, FieldMapping>,
    /// SOAP fault codes (local part after any prefix, e.g. "Client.NotFound") that mean
    /// "no such record".
    #[serde(default)]
    pub not_found_faults: Vec<String>,
}

/// One request parameter: a child element of the request body element and where its value
/// comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoapParam {
    /// Local name of the parameter element, e.g. "CitizenId" (written as `<m:CitizenId>`).
    pub element: String,
    /// Value source: "path:NAME" or "query:NAME".
    pub from: String,
}

/// Where a request parameter's value comes from (see [`SoapParam::source`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamSource<'a> {
    /// A named parameter of the caller's request path.
    Path(&'a str),
    /// A query-string parameter of the caller's request.
    Query(&'a str),
}

impl ParamSource<'_> {
    /// The parameter NAME, i.e. the key looked up in the `params` map of
    /// [`build_request_envelope`].
    pub fn name(&self) -> &str {
        match self {
            ParamSource::Path(name) | ParamSource::Query(name) => name,
        }
    }
}

impl SoapParam {
    /// Parses [`SoapParam::from`]. [`SoapOperation::validate`] guarantees a known prefix; for an
    /// unknown prefix the whole string is returned as a path parameter name.
    pub fn source(&self) -> ParamSource<'_> {
        if let Some(name) = self.from.strip_prefix("path:") {
            ParamSource::Path(name)
        } else if let Some(name) = self.from.strip_prefix("query:") {
            ParamSource::Query(name)
        } else {
            ParamSource::Path(&self.from)
        }
    }
}

/// How one output field is read from the record element.
///
/// In TOML either a bare string (a relative element path, type string) or a table
/// `{ path = "...", type = "integer", repeated = true }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldMapping {
    /// Slash-separated element path relative to the record element; the value is a string.
    Path(String),
    /// Element path with an explicit type and cardinality.
    Typed {
        /// Slash-separated element path relative to the record element.
        path: String,
        /// JSON type the element text is converted to.
        kind: FieldKind,
        /// Collect every element matching the last path step into a JSON array.
        repeated: bool,
    },
}

impl FieldMapping {
    /// The slash-separated element path relative to the record element.
    pub fn path(&self) -> &str {
        match self {
            FieldMapping::Path(path) | FieldMapping::Typed { path, .. } => path,
        }
    }

    /// The JSON type of the field ([`FieldKind::String`] for the bare-string form).
    pub fn kind(&self) -> FieldKind {
        match self {
            FieldMapping::Path(_) => FieldKind::String,
            FieldMapping::Typed { kind, .. } => *kind,
        }
    }

    /// Whether the field collects all matching elements into an array.
    pub fn repeated(&self) -> bool {
        match self {
            FieldMapping::Path(_) => false,
            FieldMapping::Typed { repeated, .. } => *repeated,
        }
    }
}

/// Table form of [`FieldMapping`]; deserialized separately so that unknown keys are rejected
/// with a precise message instead of serde's generic "did not match any variant".
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TypedFieldMapping {
    path: String,
    #[serde(rename = "type", default)]
    kind: FieldKind,
    #[serde(default)]
    repeated: bool,
}

impl<'de> Deserialize<'de> for FieldMapping {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldMappingVisitor;

        impl<'de> Visitor<'de> for FieldMappingVisitor {
            type Value = FieldMapping;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an element path string or a table { path, type, repeated }")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldMapping, E> {
                Ok(FieldMapping::Path(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<FieldMapping, E> {
                Ok(FieldMapping::Path(v))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FieldMapping, A::Error> {
                let t = TypedFieldMapping::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(FieldMapping::Typed {
                    path: t.path,
                    kind: t.kind,
                    repeated: t.repeated,
                })
            }
        }

        deserializer.deserialize_any(FieldMappingVisitor)
    }
}

/// JSON type an element's text is converted to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    /// The trimmed, unescaped text as a JSON string.
    #[default]
    String,
    /// A signed 64-bit integer (JSON number).
    Integer,
    /// A finite 64-bit float (JSON number).
    Number,
    /// `true`/`false`/`1`/`0` (XML Schema boolean lexical forms).
    Boolean,
}

impl SoapOperation {
    /// Checks the configuration and returns every problem found (empty when valid), each
    /// naming the offending key, so that a config checker can list them all at once.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();

        if self.element.is_empty() {
            problems.push("element: must not be empty".to_owned());
        } else if !is_ncname(&self.element) {
            problems.push(format!(
                "element: {:?} is not a valid XML local name",
                self.element
            ));
        }
        if self.action.chars().any(char::is_control) {
            problems.push("action: must not contain control characters".to_owned());
        }
        if self.namespace.trim().is_empty() {
            problems.push("namespace: must not be empty".to_owned());
        } else if self.namespace.chars().any(char::is_control) {
            problems.push("namespace: must not contain control characters".to_owned());
        }

        let mut seen_params: Vec<&str> = Vec::new();
        for (i, param) in self.params.iter().enumerate() {
            if param.element.is_empty() {
                problems.push(format!("params[{i}].element: must not be empty"));
            } else if !is_ncname(&param.element) {
                problems.push(format!(
                    "params[{i}].element: {:?} is not a valid XML local name",
                    param.element
                ));
            } else if seen_params.contains(&param.element.as_str()) {
                problems.push(format!(
                    "params[{i}].element: duplicate parameter element {:?}",
                    param.element
                ));
            } else {
                seen_params.push(&param.element);
            }
            let name = if let Some(n) = param.from.strip_prefix("path:") {
                Some(n)
            } else {
                param.from.strip_prefix("query:")
            };
            match name {
                None => problems.push(format!(
                    "params[{i}].from: {:?} must start with \"path:\" or \"query:\"",
                    param.from
                )),
                Some("") => problems.push(format!(
                    "params[{i}].from: parameter name after the prefix must not be empty"
                )),
                Some(_) => {}
            }
        }

        if self.record.is_empty() {
            problems.push("record: must not be empty".to_owned());
        } else if let Err(why) = check_element_path(&self.record) {
            problems.push(format!("record: {why}"));
        }

        if self.fields.is_empty() {
            problems.push("fields: at least one field mapping is required".to_owned());
        }
        let mut pointers: Vec<(&str, Vec<String>)> = Vec::new();
        for (pointer, mapping) in &self.fields {
            match parse_pointer(pointer) {
                Ok(tokens) => pointers.push((pointer, tokens)),
                Err(why) => problems.push(format!("fields.{pointer:?}: JSON pointer {why}")),
            }
            if mapping.path().is_empty() {
                problems.push(format!("fields.{pointer:?}: path must not be empty"));
            } else if let Err(why) = check_element_path(mapping.path()) {
                problems.push(format!("fields.{pointer:?}: path {why}"));
            }
        }
        for (i, (a, ta)) in pointers.iter().enumerate() {
            for (b, tb) in pointers.iter().skip(i + 1) {
                let (short, long, ts, tl) = if ta.len() <= tb.len() {
                    (a, b, ta, tb)
                } else {
                    (b, a, tb, ta)
                };
                if tl.starts_with(ts) {
                    problems.push(format!(
                        "fields.{long:?}: JSON pointer conflicts with fields.{short:?} \
                         (a value cannot also be an object)"
                    ));
                }
            }
        }

        for (i, code) in self.not_found_faults.iter().enumerate() {
            if code.trim().is_empty() {
                problems.push(format!("not_found_faults[{i}]: must not be empty"));
            }
        }

        problems
    }
}

/// Is `s` an XML NCName (a name without a colon)? Accepts non-ASCII letters.
fn is_ncname(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '\u{B7}'))
}

/// Checks a slash-separated element path whose steps may carry an (ignored) prefix.
fn check_element_path(path: &str) -> Result<(), String> {
    for step in path.split('/') {
        if step.is_empty() {
            return Err(format!("{path:?} has an empty step"));
        }
        let local = local_part(step);
        let prefix_ok = match step.split_once(':') {
            Some((prefix, _)) => is_ncname(prefix),
            None => true,
        };
        if !prefix_ok || !is_ncname(local) {
            return Err(format!("{path:?}: {step:?} is not a valid XML name"));
        }
    }
    Ok(())
}

/// Local part of a possibly prefixed name (`"pop:Citizen"` -> `"Citizen"`).
fn local_part(name: &str) -> &str {
    match name.split_once(':') {
        Some((_, local)) => local,
        None => name,
    }
}

/// Splits a JSON pointer (RFC 6901) into unescaped reference tokens. The root pointer and
/// empty tokens are rejected: every field must land on a named object member.
fn parse_pointer(pointer: &str) -> Result<Vec<String>, &'static str> {
    if !pointer.starts_with('/') {
        return Err("must start with '/'");
    }
    let tokens = crate::base::json_pointer::pointer_tokens(pointer)
        .ok_or("has an invalid escape ('~' must be followed by 0 or 1)")?;
    if tokens.iter().any(String::is_empty) {
        return Err("must not contain empty reference tokens");
    }
    Ok(tokens)
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Errors of envelope building and response mapping. Display messages never contain text
/// content of a response document, so they are safe to log and to return to operators.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SoapError {
    /// A configured request parameter NAME was not supplied by the caller.
    #[error("missing request parameter `{0}`")]
    MissingParam(String),
    /// The response is not a well-formed, acceptable SOAP envelope. The reason names only
    /// element names, byte positions and limits.
    #[error("malformed SOAP response: {0}")]
    Malformed(String),
    /// The backend answered with a SOAP fault not configured as "not found". `code` is the
    /// fault code's local part; the fault string is deliberately dropped.
    #[error("SOAP fault `{code}`")]
    Fault {
        /// Local part of `faultcode`, e.g. "Server.Unavailable".
        code: String,
    },
    /// The backend answered with a fault listed in `not_found_faults`.
    #[error("record not found")]
    NotFound,
    /// The envelope had no fault but the configured record element was absent.
    #[error("record element missing from SOAP response")]
    RecordMissing,
    /// A field's text could not be converted to its configured type.
    #[error("field {pointer}: value does not match the configured type")]
    FieldType {
        /// The output JSON pointer of the field.
        pointer: String,
    },
    /// The operation's configuration is unusable at run time (it fails
    /// [`SoapOperation::validate`]).
    #[error("invalid SOAP operation configuration: {0}")]
    InvalidConfig(String),
}

// ---------------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------------

/// Builds the SOAP 1.1 request envelope for `op`, taking each parameter's value from `params`
/// by NAME (see [`SoapParam::source`]). Parameter elements are written in configuration
/// order, qualified by `op.namespace`; values are XML-escaped.
pub fn build_request_envelope(
    op: &SoapOperation,
    params: &BTreeMap<String, String>,
) -> Result<String, SoapError> {
    if !is_ncname(&op.element) {
        return Err(SoapError::InvalidConfig(
            "element is not a valid XML local name".to_owned(),
        ));
    }
    let mut xml = String::with_capacity(256);
    xml.push_str("<soap:Envelope xmlns:soap=\"");
    xml.push_str(SOAP11_ENVELOPE_NS);
    xml.push_str("\"><soap:Body><m:");
    xml.push_str(&op.element);
    xml.push_str(" xmlns:m=\"");
    xml.push_str(&escape(op.namespace.as_str()));
    xml.push_str("\">");
    for (i, param) in op.params.iter().enumerate() {
        if !is_ncname(&param.element) {
            return Err(SoapError::InvalidConfig(format!(
                "params[{i}].element is not a valid XML local name"
            )));
        }
        let name = param.source().name().to_owned();
        let Some(value) = params.get(&name) else {
            return Err(SoapError::MissingParam(name));
        };
        xml.push_str("<m:");
        xml.push_str(&param.element);
        xml.push('>');
        xml.push_str(&escape(value.as_str()));
        xml.push_str("</m:");
        xml.push_str(&param.element);
        xml.push('>');
    }
    xml.push_str("</m:");
    xml.push_str(&op.element);
    xml.push_str("></soap:Body></soap:Envelope>");
    Ok(xml)
}

// ---------------------------------------------------------------------------------------------
// Response parsing
// ---------------------------------------------------------------------------------------------

/// A parsed element: local name, concatenated direct text, children, `xsi:nil` flag.
#[derive(Debug, Default)]
struct Node {
    name: String,
    text: String,
    children: Vec<Node>,
    nil: bool,
}

impl Node {
    fn from_start(start: &BytesStart<'_>, pos: u64) -> Result<Self, SoapError> {
        let mut nil = false;
        for attr in start.attributes() {
            let attr = attr.map_err(|_| malformed_at("invalid attribute", pos))?;
            if attr.key.local_name().as_ref() == "nil" {
                nil = matches!(attr.value.trim(), "true" | "1");
            }
        }
        Ok(Node {
            name: start.local_name().as_ref().to_owned(),
            nil,
            ..Node::default()
        })
    }

    fn child(&self, local: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == local)
    }
}

fn malformed_at(what: &str, pos: u64) -> SoapError {
    SoapError::Malformed(format!("{what} at byte {pos}"))
}

/// Quotes an element name for an error reason, shortened so a hostile name cannot flood logs.
fn quoted_name(name: &str) -> String {
    let short: String = name.chars().take(MAX_NAME_IN_REASON).collect();
    if short.len() < name.len() {
        format!("<{short}…>")
    } else {
        format!("<{short}>")
    }
}

/// Describes a quick-xml error without its Display text, which may quote document content.
fn describe_xml_error(err: &quick_xml::Error) -> String {
    use quick_xml::errors::{IllFormedError, SyntaxError};
    match err {
        quick_xml::Error::Syntax(s) => match s {
            SyntaxError::UnclosedTag => "unclosed tag",
            SyntaxError::UnclosedComment => "unclosed comment",
            SyntaxError::UnclosedCData => "unclosed CDATA section",
            SyntaxError::UnclosedDoctype => "unclosed DOCTYPE",
            SyntaxError::UnclosedPI | SyntaxError::UnclosedXmlDecl => {
                "unclosed processing instruction"
            }
            SyntaxError::UnclosedSingleQuotedAttributeValue
            | SyntaxError::UnclosedDoubleQuotedAttributeValue => "unclosed attribute value",
            _ => "invalid markup",
        }
        .to_owned(),
        quick_xml::Error::IllFormed(e) => match e {
            IllFormedError::MismatchedEndTag { expected, found } => format!(
                "end tag {} does not match start tag {}",
                quoted_name(found),
                quoted_name(expected)
            ),
            IllFormedError::UnmatchedEndTag(name) => {
                format!("end tag {} without start tag", quoted_name(name))
            }
            IllFormedError::MissingEndTag(name) => {
                format!("element {} not closed", quoted_name(name))
            }
            _ => "ill-formed document".to_owned(),
        },
        quick_xml::Error::InvalidAttr(_) => "invalid attribute".to_owned(),
        quick_xml::Error::Encoding(_) => "invalid character encoding".to_owned(),
        quick_xml::Error::Escape(_) => "invalid character or entity reference".to_owned(),
        quick_xml::Error::Namespace(_) => "namespace error".to_owned(),
        _ => "XML error".to_owned(),
    }
}

/// Parses `xml` into an element tree, enforcing the DTD ban, depth and element-count limits.
fn parse_tree(xml: &[u8]) -> Result<Node, SoapError> {
    let text = std::str::from_utf8(xml).map_err(|e| {
        SoapError::Malformed(format!("not valid UTF-8 at byte {}", e.valid_up_to()))
    })?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut reader = Reader::from_str(text);
    {
        let config = reader.config_mut();
        config.check_end_names = true;
        config.expand_empty_elements = false;
        config.trim_text(false);
    }

    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let mut elements = 0usize;

    loop {
        let pos = reader.buffer_position();
        let event = reader.read_event().map_err(|e| {
            SoapError::Malformed(format!(
                "{} at byte {}",
                describe_xml_error(&e),
                reader.error_position()
            ))
        })?;
        match event {
            Event::DocType(_) => return Err(SoapError::Malformed("DTD not allowed".to_owned())),
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(malformed_at("element after the root element", pos));
            }
            Event::Start(ref start) | Event::Empty(ref start) => {
                elements += 1;
                if elements > MAX_ELEMENTS {
                    return Err(SoapError::Malformed(format!(
                        "more than {MAX_ELEMENTS} elements"
                    )));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(SoapError::Malformed(format!(
                        "nesting deeper than {MAX_DEPTH} elements at byte {pos}"
                    )));
                }
                let node = Node::from_start(start, pos)?;
                if matches!(event, Event::Start(_)) {
                    // Completed by its end tag.
                    stack.push(node);
                } else {
                    // An empty element is complete at once.
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(node),
                        None => root = Some(node),
                    }
                }
            }
            Event::End(end) => {
                let Some(node) = stack.pop() else {
                    return Err(malformed_at("end tag without start tag", pos));
                };
                if end.local_name().as_ref() != node.name {
                    return Err(SoapError::Malformed(format!(
                        "end tag does not match start tag {} at byte {pos}",
                        quoted_name(&node.name)
                    )));
                }
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                match stack.last_mut() {
                    Some(node) => node.text.push_str(&content),
                    None if content.trim().is_empty() => {}
                    None => return Err(malformed_at("text outside the root element", pos)),
                }
            }
            Event::CData(c) => match stack.last_mut() {
                Some(node) => node.text.push_str(&c.xml10_content()),
                None => return Err(malformed_at("CDATA outside the root element", pos)),
            },
            Event::GeneralRef(r) => {
                let Some(node) = stack.last_mut() else {
                    return Err(malformed_at(
                        "entity reference outside the root element",
                        pos,
                    ));
                };
                if r.is_char_ref() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => node.text.push(c),
                        _ => return Err(malformed_at("invalid character reference", pos)),
                    }
                } else if let Some(s) = resolve_predefined_entity(&r) {
                    node.text.push_str(s);
                } else {
                    return Err(malformed_at("undefined entity reference", pos));
                }
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }

    if let Some(open) = stack.last() {
        return Err(SoapError::Malformed(format!(
            "unexpected end of document: element {} not closed",
            quoted_name(&open.name)
        )));
    }
    root.ok_or_else(|| SoapError::Malformed("no root element".to_owned()))
}

/// Follows `path` (slash-separated, prefixes ignored) from `start`, taking the first match at
/// each step.
fn descend<'n>(start: &'n Node, path: &str) -> Option<&'n Node> {
    path.split('/')
        .try_fold(start, |node, step| node.child(local_part(step)))
}

/// Converts an element's text per `kind`; `None` means the conversion failed.
fn convert(node: &Node, kind: FieldKind) -> Option<Value> {
    if node.nil {
        return Some(Value::Null);
    }
    let text = node.text.trim();
    match kind {
        FieldKind::String => Some(Value::String(text.to_owned())),
        FieldKind::Integer => text.parse::<i64>().ok().map(Value::from),
        FieldKind::Number => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number),
        FieldKind::Boolean => match text {
            "true" | "1" => Some(Value::Bool(true)),
            "false" | "0" => Some(Value::Bool(false)),
            _ => None,
        },
    }
}

/// Inserts `value` at the JSON pointer `pointer` of `out`, creating intermediate objects.
fn insert_at(out: &mut Map<String, Value>, pointer: &str, value: Value) -> Result<(), SoapError> {
    let tokens = parse_pointer(pointer).map_err(|why| {
        SoapError::InvalidConfig(format!("fields.{pointer:?}: JSON pointer {why}"))
    })?;
    let conflict = || {
        SoapError::InvalidConfig(format!(
            "fields.{pointer:?}: JSON pointer conflicts with another field"
        ))
    };
    let Some((last, parents)) = tokens.split_last() else {
        return Err(conflict());
    };
    let mut target = out;
    for token in parents {
        let entry = target
            .entry(token.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        match entry {
            Value::Object(map) => target = map,
            _ => return Err(conflict()),
        }
    }
    if target.contains_key(last) {
        return Err(conflict());
    }
    target.insert(last.clone(), value);
    Ok(())
}

/// Parses a SOAP 1.1 response and maps its record element to a JSON object per `op.fields`.
///
/// Faults are checked first: a `faultcode` listed in `op.not_found_faults` yields
/// [`SoapError::NotFound`], any other fault [`SoapError::Fault`] (code only). Otherwise the
/// record is located by `op.record` ([`SoapError::RecordMissing`] if absent) and each field is
/// resolved under it: absent elements are omitted from the output (for `repeated` fields: when
/// no element matches), present ones are converted per their [`FieldKind`]; an element with
/// `xsi:nil="true"` maps to JSON `null`.
pub fn extract_record(op: &SoapOperation, xml: &[u8]) -> Result<Value, SoapError> {
    let root = parse_tree(xml)?;
    if root.name != "Envelope" {
        return Err(SoapError::Malformed(format!(
            "root element is {}, expected <Envelope>",
            quoted_name(&root.name)
        )));
    }
    let body = root
        .child("Body")
        .ok_or_else(|| SoapError::Malformed("<Envelope> has no <Body>".to_owned()))?;

    if let Some(fault) = body.child("Fault") {
        let code_node = fault
            .child("faultcode")
            .ok_or_else(|| SoapError::Malformed("<Fault> has no <faultcode>".to_owned()))?;
        let code = local_part(code_node.text.trim());
        if op
            .not_found_faults
            .iter()
            .any(|nf| local_part(nf.trim()) == code)
        {
            return Err(SoapError::NotFound);
        }
        return Err(SoapError::Fault {
            code: sanitize_fault_code(code),
        });
    }

    let mut steps = op.record.split('/');
    let first = steps.next().map(local_part).unwrap_or_default();
    let record = body
        .children
        .first()
        .filter(|c| c.name == first)
        .and_then(|start| steps.try_fold(start, |node, step| node.child(local_part(step))))
        .ok_or(SoapError::RecordMissing)?;

    let mut out = Map::new();
    for (pointer, mapping) in &op.fields {
        let type_error = || SoapError::FieldType {
            pointer: pointer.clone(),
        };
        let path = mapping.path();
        let value = if mapping.repeated() {
            let (parent, last) = match path.rsplit_once('/') {
                Some((parent_path, last)) => (descend(record, parent_path), last),
                None => (Some(record), path),
            };
            let last = local_part(last);
            let Some(parent) = parent else { continue };
            let items = parent
                .children
                .iter()
                .filter(|c| c.name == last)
                .map(|c| convert(c, mapping.kind()).ok_or_else(type_error))
                .collect::<Result<Vec<_>, _>>()?;
            if items.is_empty() {
                continue;
            }
            Value::Array(items)
        } else {
            let Some(node) = descend(record, path) else {
                continue;
            };
            convert(node, mapping.kind()).ok_or_else(type_error)?
        };
        insert_at(&mut out, pointer, value)?;
    }
    Ok(Value::Object(out))
}

/// Keeps a fault code only if it looks like a SOAP fault code (a dotted name of bounded
/// length), so a misbehaving backend cannot smuggle free text (e.g. personal data) into
/// errors and logs through `faultcode`.
fn sanitize_fault_code(code: &str) -> String {
    let plausible = !code.is_empty()
        && code.len() <= MAX_FAULT_CODE_LEN
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if plausible {
        code.to_owned()
    } else {
        "<unrecognised fault code>".to_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const OP_TOML: &str = r#"
element = "GetCitizen"
action = "urn:vn:gov:population:1#GetCitizen"
namespace = "urn:vn:gov:population:1"
record = "GetCitizenResponse/Citizen"
not_found_faults = ["Client.NotFound"]

[[params]]
element = "CitizenId"
from = "path:id"

[fields]
"/id" = "CitizenId"
"/full_name" = "FullName"
"/date_of_birth" = "DateOfBirth"
"/sex" = "Sex"
"/address/province" = "PermanentAddress/Province"
"/address/district" = "PermanentAddress/District"
"/address/ward" = "PermanentAddress/Ward"
"/address/street" = "PermanentAddress/Street"
"/ethnicity" = "Ethnicity"
"/nationality" = "Nationality"
"/religion" = "Religion"
"#;

    fn op() -> SoapOperation {
        let op: SoapOperation = toml::from_str(OP_TOML).expect("test config parses");
        assert_eq!(op.validate(), Vec::<String>::new());
        op
    }

    fn op_with(extra_fields: &str) -> SoapOperation {
        let text = format!("{OP_TOML}{extra_fields}");
        let op: SoapOperation = toml::from_str(&text).expect("test config parses");
        assert_eq!(op.validate(), Vec::<String>::new());
        op
    }

    const ENV_OPEN: &str =
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>"#;
    const ENV_CLOSE: &str = "</soap:Body></soap:Envelope>";

    fn citizen(inner_extra: &str) -> String {
        format!(
            "{ENV_OPEN}<pop:GetCitizenResponse xmlns:pop=\"urn:vn:gov:population:1\"><pop:Citizen>\
             <pop:CitizenId>001085012345</pop:CitizenId>\
             <pop:FullName>Nguyễn Thị Lan</pop:FullName>\
             <pop:DateOfBirth>1985-03-02</pop:DateOfBirth>\
             <pop:Sex>F</pop:Sex>\
             <pop:PermanentAddress><pop:Province>Hà Nội</pop:Province>\
             <pop:District>Quận Ba Đình</pop:District><pop:Ward>Phường Kim Mã</pop:Ward>\
             <pop:Street>12 Ngõ 5 &amp; Kim Mã &lt;B&gt; &#x110;ường</pop:Street></pop:PermanentAddress>\
             <pop:Ethnicity>Kinh</pop:Ethnicity><pop:Nationality>VN</pop:Nationality>{inner_extra}\
             </pop:Citizen></pop:GetCitizenResponse>{ENV_CLOSE}"
        )
    }

    fn fault(code: &str, string: &str) -> String {
        format!(
            "{ENV_OPEN}<soap:Fault><faultcode>{code}</faultcode><faultstring>{string}</faultstring>\
             </soap:Fault>{ENV_CLOSE}"
        )
    }

    fn malformed(result: Result<Value, SoapError>) -> String {
        match result {
            Err(SoapError::Malformed(reason)) => reason,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn builds_exact_wire_format() {
        let params = BTreeMap::from([("id".to_owned(), "001085012345".to_owned())]);
        let xml = build_request_envelope(&op(), &params).unwrap();
        assert_eq!(
            xml,
            "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>\
             <m:GetCitizen xmlns:m=\"urn:vn:gov:population:1\"><m:CitizenId>001085012345</m:CitizenId>\
             </m:GetCitizen></soap:Body></soap:Envelope>"
        );
    }

    #[test]
    fn envelope_round_trip_escapes_values() {
        let mut op = op();
        op.params.push(SoapParam {
            element: "Purpose".to_owned(),
            from: "query:purpose".to_owned(),
        });
        assert_eq!(op.params[1].source(), ParamSource::Query("purpose"));
        let hostile = r#"a<b>&c"d'</m:Purpose><x/>"#;
        let params = BTreeMap::from([
            ("id".to_owned(), "001085012345".to_owned()),
            ("purpose".to_owned(), hostile.to_owned()),
        ]);
        let xml = build_request_envelope(&op, &params).unwrap();
        assert!(xml.contains("&lt;b&gt;&amp;c&quot;d"), "{xml}");
        assert!(!xml.contains(hostile));

        // Parse it back with quick-xml: the values come back verbatim, in order.
        let mut reader = Reader::from_str(&xml);
        let mut names = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        let mut current = String::new();
        loop {
            match reader.read_event().unwrap() {
                Event::Start(s) => {
                    names.push(s.name().as_ref().to_owned());
                    current.clear();
                }
                Event::Text(t) => current.push_str(&t.xml10_content()),
                Event::GeneralRef(r) => {
                    current.push_str(resolve_predefined_entity(&r).unwrap());
                }
                Event::End(_) if !current.is_empty() => {
                    texts.push(std::mem::take(&mut current));
                }
                Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(
            names,
            [
                "soap:Envelope",
                "soap:Body",
                "m:GetCitizen",
                "m:CitizenId",
                "m:Purpose"
            ]
        );
        assert_eq!(texts, ["001085012345", hostile]);
    }

    #[test]
    fn missing_param_is_reported_by_name() {
        let err = build_request_envelope(&op(), &BTreeMap::new()).unwrap_err();
        assert_eq!(err, SoapError::MissingParam("id".to_owned()));
    }

    #[test]
    fn extracts_nested_fields_with_vietnamese_text_and_entities() {
        let value = extract_record(&op(), citizen("").as_bytes()).unwrap();
        assert_eq!(
            value,
            json!({
                "id": "001085012345",
                "full_name": "Nguyễn Thị Lan",
                "date_of_birth": "1985-03-02",
                "sex": "F",
                "address": {
                    "province": "Hà Nội",
                    "district": "Quận Ba Đình",
                    "ward": "Phường Kim Mã",
                    "street": "12 Ngõ 5 & Kim Mã <B> Đường",
                },
                "ethnicity": "Kinh",
                "nationality": "VN",
            })
        );
        // "/religion" is configured but absent: omitted, not null.
        assert!(value.get("religion").is_none());
    }

    #[test]
    fn tolerates_header_whitespace_prolog_and_other_prefixes() {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- c -->\n\
             <S:Envelope xmlns:S=\"http://schemas.xmlsoap.org/soap/envelope/\">\n  <S:Header/>\n  <S:Body>\n\
             <GetCitizenResponse xmlns=\"urn:vn:gov:population:1\">\n <Citizen>\n\
             <FullName>\n   <![CDATA[Trần <Văn> An]]>\n</FullName>\n <Sex xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:nil=\"true\"/>\n\
             </Citizen></GetCitizenResponse></S:Body></S:Envelope>\n";
        let value = extract_record(&op(), xml.as_bytes()).unwrap();
        assert_eq!(value, json!({"full_name": "Trần <Văn> An", "sex": null}));
    }

    #[test]
    fn typed_and_repeated_fields() {
        let op = op_with(
            r#"
"/age" = { path = "Age", type = "integer" }
"/score" = { path = "Score", type = "number" }
"/alive" = { path = "Alive", type = "boolean" }
"/verified" = { path = "Verified", type = "boolean" }
"/phones" = { path = "Phones/Phone", repeated = true }
"/children_ids" = { path = "Child", type = "integer", repeated = true }
"/aliases" = { path = "Aliases/Alias", repeated = true }
"/a~1b/c~0d" = "Sex"
"#,
        );
        let xml = citizen(
            "<pop:Age> 40 </pop:Age><pop:Score>9.5</pop:Score><pop:Alive>true</pop:Alive>\
             <pop:Verified>0</pop:Verified>\
             <pop:Phones><pop:Phone>0901</pop:Phone><pop:Other>x</pop:Other><pop:Phone>0902</pop:Phone></pop:Phones>\
             <pop:Child>1</pop:Child><pop:Child>2</pop:Child><pop:Child>3</pop:Child>",
        );
        let value = extract_record(&op, xml.as_bytes()).unwrap();
        assert_eq!(value["age"], json!(40));
        assert!(value["age"].is_i64());
        assert_eq!(value["score"], json!(9.5));
        assert_eq!(value["alive"], json!(true));
        assert_eq!(value["verified"], json!(false));
        assert_eq!(value["phones"], json!(["0901", "0902"]));
        assert_eq!(value["children_ids"], json!([1, 2, 3]));
        assert!(value.get("aliases").is_none());
        assert_eq!(value["a/b"]["c~d"], json!("F"));
    }

    #[test]
    fn type_conversion_error_names_only_the_pointer() {
        let op = op_with("\"/age\" = { path = \"Age\", type = \"integer\" }\n");
        let xml = citizen("<pop:Age>bốn mươi SECRET</pop:Age>");
        let err = extract_record(&op, xml.as_bytes()).unwrap_err();
        assert_eq!(
            err,
            SoapError::FieldType {
                pointer: "/age".to_owned()
            }
        );
        let shown = err.to_string();
        assert!(shown.contains("/age"));
        assert!(
            !shown.contains("SECRET") && !shown.contains("bốn"),
            "{shown}"
        );

        let op = op_with("\"/ok\" = { path = \"Sex\", type = \"boolean\" }\n");
        let err = extract_record(&op, citizen("").as_bytes()).unwrap_err();
        assert_eq!(
            err,
            SoapError::FieldType {
                pointer: "/ok".to_owned()
            }
        );
        let op = op_with("\"/n\" = { path = \"Sex\", type = \"number\" }\n");
        let xml = citizen("").replace("<pop:Sex>F<", "<pop:Sex>NaN<");
        assert!(matches!(
            extract_record(&op, xml.as_bytes()),
            Err(SoapError::FieldType { .. })
        ));
    }

    #[test]
    fn not_found_fault() {
        let xml = fault(
            "soap:Client.NotFound",
            "Không tìm thấy công dân 001085012345",
        );
        assert_eq!(
            extract_record(&op(), xml.as_bytes()),
            Err(SoapError::NotFound)
        );
    }

    #[test]
    fn other_fault_reports_code_only() {
        let xml = fault(
            "soap:Server.Unavailable",
            "Database error while reading Nguyễn Thị Lan 001085012345",
        );
        let err = extract_record(&op(), xml.as_bytes()).unwrap_err();
        assert_eq!(
            err,
            SoapError::Fault {
                code: "Server.Unavailable".to_owned()
            }
        );
        let shown = err.to_string();
        assert!(shown.contains("Server.Unavailable"));
        assert!(
            !shown.contains("Nguyễn")
                && !shown.contains("001085012345")
                && !shown.contains("Database"),
            "{shown}"
        );

        // Free text smuggled through faultcode is not echoed either.
        let xml = fault("Citizen Nguyễn Thị Lan", "x");
        let shown = extract_record(&op(), xml.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(!shown.contains("Nguyễn"), "{shown}");
    }

    #[test]
    fn missing_record() {
        let other = format!(
            "{ENV_OPEN}<pop:GetCitizenResponse xmlns:pop=\"urn:x\"><pop:Nothing/></pop:GetCitizenResponse>{ENV_CLOSE}"
        );
        assert_eq!(
            extract_record(&op(), other.as_bytes()),
            Err(SoapError::RecordMissing)
        );
        let empty_body = format!("{ENV_OPEN}{ENV_CLOSE}");
        assert_eq!(
            extract_record(&op(), empty_body.as_bytes()),
            Err(SoapError::RecordMissing)
        );
    }

    #[test]
    fn malformed_xml_is_rejected_without_leaking_text() {
        let full = citizen("");
        let truncated = &full.as_bytes()[..full.len() / 2];
        let reason = malformed(extract_record(&op(), truncated));
        assert!(!reason.contains("Nguyễn"), "{reason}");

        let mismatched = full.replace("</pop:FullName>", "</pop:Name>");
        let reason = malformed(extract_record(&op(), mismatched.as_bytes()));
        assert!(reason.contains("byte"), "{reason}");
        assert!(!reason.contains("Nguyễn"), "{reason}");

        for bad in [
            &b""[..],
            b"   ",
            b"not xml at all SECRET",
            b"<a><b></a>",
            b"<Envelope><Body/></Envelope><Envelope/>",
            b"<Envelope><Body>&undefined;</Body></Envelope>",
            b"<Envelope><Body>\xff\xfe</Body></Envelope>",
        ] {
            let reason = malformed(extract_record(&op(), bad));
            assert!(!reason.contains("SECRET"), "{reason}");
        }
    }

    /// 002 Điều 26 khoản 2: hostile XML (DTDs, entity expansion) is refused.
    #[test]
    fn doctype_is_rejected() {
        let lol = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>
<GetCitizenResponse><Citizen><FullName>&lol3;</FullName></Citizen></GetCitizenResponse>
</soap:Body></soap:Envelope>"#;
        assert_eq!(
            extract_record(&op(), lol.as_bytes()),
            Err(SoapError::Malformed("DTD not allowed".to_owned()))
        );
        let xxe = r#"<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><x>&xxe;</x>"#;
        assert_eq!(
            extract_record(&op(), xxe.as_bytes()),
            Err(SoapError::Malformed("DTD not allowed".to_owned()))
        );
    }

    /// 002 Điều 26 khoản 2: deeply nested or huge XML is refused.
    #[test]
    fn depth_and_element_limits() {
        // Exactly MAX_DEPTH levels is fine (the record is simply missing).
        let ok = format!(
            "{ENV_OPEN}{}{}{ENV_CLOSE}",
            "<d>".repeat(MAX_DEPTH - 2),
            "</d>".repeat(MAX_DEPTH - 2)
        );
        assert_eq!(
            extract_record(&op(), ok.as_bytes()),
            Err(SoapError::RecordMissing)
        );
        let deep = format!(
            "{ENV_OPEN}{}{}{ENV_CLOSE}",
            "<d>".repeat(MAX_DEPTH - 1),
            "</d>".repeat(MAX_DEPTH - 1)
        );
        let reason = malformed(extract_record(&op(), deep.as_bytes()));
        assert!(reason.contains("nesting"), "{reason}");
        // Unclosed deep nesting is rejected by the depth guard before running out of input.
        let bomb = "<d>".repeat(100_000);
        let reason = malformed(extract_record(&op(), bomb.as_bytes()));
        assert!(reason.contains("nesting"), "{reason}");

        let wide = format!("{ENV_OPEN}{}{ENV_CLOSE}", "<e/>".repeat(MAX_ELEMENTS));
        let reason = malformed(extract_record(&op(), wide.as_bytes()));
        assert!(reason.contains("elements"), "{reason}");
    }

    #[test]
    fn non_envelope_root_and_missing_body() {
        let reason = malformed(extract_record(
            &op(),
            b"<GetCitizenResponse><Citizen/></GetCitizenResponse>",
        ));
        assert!(reason.contains("root"), "{reason}");
        let reason = malformed(extract_record(
            &op(),
            br#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Header/></soap:Envelope>"#,
        ));
        assert!(reason.contains("Body"), "{reason}");
    }

    #[test]
    fn validate_reports_every_problem() {
        let bad = r#"
element = ""
action = "urn:x"
namespace = ""
record = "GetCitizenResponse//Citizen"
not_found_faults = [""]

[[params]]
element = "CitizenId"
from = "path:id"

[[params]]
element = "CitizenId"
from = "header:id"

[fields]
"/x" = "A"
"x" = "B"
"/y/" = "C"
"/z~2" = "D"
"/addr" = "E"
"/addr/province" = "F"
"/empty" = ""
"/bad" = "A/1B"
"#;
        let op: SoapOperation = toml::from_str(bad).unwrap();
        let problems = op.validate();
        let expect = [
            "element: must not be empty",
            "namespace: must not be empty",
            "params[1].element: duplicate parameter element",
            "params[1].from:",
            "record:",
            "fields.\"x\": JSON pointer must start with '/'",
            "fields.\"/y/\": JSON pointer must not contain empty",
            "fields.\"/z~2\": JSON pointer has an invalid escape",
            "fields.\"/addr/province\": JSON pointer conflicts with fields.\"/addr\"",
            "fields.\"/empty\": path must not be empty",
            "fields.\"/bad\": path",
            "not_found_faults[0]: must not be empty",
        ];
        for e in expect {
            assert!(
                problems.iter().any(|p| p.starts_with(e)),
                "missing {e:?} in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), expect.len(), "{problems:#?}");
        assert_eq!(op.params[1].source(), ParamSource::Path("header:id"));
    }

    #[test]
    fn config_rejects_unknown_keys_and_types() {
        let with_typo = format!("{OP_TOML}\"/age\" = {{ path = \"Age\", tpye = \"integer\" }}\n");
        let err = toml::from_str::<SoapOperation>(&with_typo)
            .unwrap_err()
            .to_string();
        assert!(err.contains("tpye"), "{err}");
        let bad_kind = format!("{OP_TOML}\"/age\" = {{ path = \"Age\", type = \"int\" }}\n");
        let err = toml::from_str::<SoapOperation>(&bad_kind)
            .unwrap_err()
            .to_string();
        assert!(err.contains("int"), "{err}");
        let unknown_top = format!("colour = \"red\"\n{OP_TOML}");
        assert!(toml::from_str::<SoapOperation>(&unknown_top).is_err());
        let typed: FieldMapping = toml::from_str::<BTreeMap<String, FieldMapping>>(
            "f = { path = \"P\", type = \"boolean\", repeated = true }",
        )
        .unwrap()
        .remove("f")
        .unwrap();
        assert_eq!(
            typed,
            FieldMapping::Typed {
                path: "P".to_owned(),
                kind: FieldKind::Boolean,
                repeated: true
            }
        );
        assert_eq!(typed.kind(), FieldKind::Boolean);
        assert!(typed.repeated());
    }
}
