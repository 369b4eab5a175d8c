//! Covered components, signature parameters, the message view and the signature
//! base (RFC 9421 §2).

use std::fmt;

use sfv::{
    BareItem, Dictionary, FieldType as _, InnerList, Item, ItemSerializer, KeyRef, List, ListEntry,
    Parameters, Parser, StringRef,
};

use super::{Algorithm, SignatureError};

/// A read-only view of an HTTP message, as the signature base needs it.
///
/// Header names are passed lowercase. `header_values` returns the values of every
/// field line with that name, in order; the base joins them with `", "` (§2.1).
pub trait HttpMessage {
    /// The request method (`None` for a response).
    fn method(&self) -> Option<&str>;
    /// The absolute target URI, e.g. `https://lgsp-b.example/exchange/v1/x` (`None`
    /// for a response).
    fn target_uri(&self) -> Option<String>;
    /// The status code (`None` for a request).
    fn status(&self) -> Option<u16>;
    /// The values of each field line named `name` (lowercase), in message order.
    fn header_values(&self, name: &str) -> Vec<String>;
    /// The request that a response answers, for components with `;req`.
    fn related_request(&self) -> Option<&dyn HttpMessage> {
        None
    }
}

/// A plain owned message: a request (method, target URI) or a response (status),
/// its header field lines and, for a response, the request it answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    method: Option<String>,
    target_uri: Option<String>,
    status: Option<u16>,
    headers: Vec<(String, String)>,
    request: Option<Box<Message>>,
}

impl Message {
    /// A request with `method` and an absolute `target_uri`.
    pub fn request(method: &str, target_uri: &str) -> Self {
        Message {
            method: Some(method.to_string()),
            target_uri: Some(target_uri.to_string()),
            ..Message::default()
        }
    }

    /// A response with `status`.
    pub fn response(status: u16) -> Self {
        Message {
            status: Some(status),
            ..Message::default()
        }
    }

    /// Adds a field line (builder form).
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.add_header(name, value);
        self
    }

    /// Adds a field line.
    pub fn add_header(&mut self, name: &str, value: &str) {
        self.headers.push((name.to_string(), value.to_string()));
    }

    /// Removes every field line named `name` (case-insensitive).
    pub fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Attaches the request this response answers.
    #[must_use]
    pub fn with_request(mut self, request: Message) -> Self {
        self.request = Some(Box::new(request));
        self
    }

    /// The field lines, in order, with their names as given.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
}

impl HttpMessage for Message {
    fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }
    fn target_uri(&self) -> Option<String> {
        self.target_uri.clone()
    }
    fn status(&self) -> Option<u16> {
        self.status
    }
    fn header_values(&self, name: &str) -> Vec<String> {
        header_lines(&self.headers, name)
    }
    fn related_request(&self) -> Option<&dyn HttpMessage> {
        self.request.as_deref().map(|r| r as &dyn HttpMessage)
    }
}

pub(crate) fn header_lines(headers: &[(String, String)], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .collect()
}

fn header_map_lines(headers: &http::HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

/// An [`http::Request`]: its URI when absolute, otherwise `https://{Host}{path?query}`.
impl<B> HttpMessage for http::Request<B> {
    fn method(&self) -> Option<&str> {
        Some(self.method().as_str())
    }
    fn target_uri(&self) -> Option<String> {
        let uri = self.uri();
        if uri.scheme().is_some() && uri.authority().is_some() {
            return Some(uri.to_string());
        }
        let host = self.headers().get(http::header::HOST)?.to_str().ok()?;
        let pq = uri.path_and_query().map_or("/", |p| p.as_str());
        Some(format!("https://{host}{pq}"))
    }
    fn status(&self) -> Option<u16> {
        None
    }
    fn header_values(&self, name: &str) -> Vec<String> {
        header_map_lines(self.headers(), name)
    }
}

impl<B> HttpMessage for http::Response<B> {
    fn method(&self) -> Option<&str> {
        None
    }
    fn target_uri(&self) -> Option<String> {
        None
    }
    fn status(&self) -> Option<u16> {
        Some(self.status().as_u16())
    }
    fn header_values(&self, name: &str) -> Vec<String> {
        header_map_lines(self.headers(), name)
    }
}

/// A response seen together with the request it answers (for `;req` components).
#[derive(Clone, Copy)]
pub struct ResponseWithRequest<'a> {
    /// The response.
    pub response: &'a dyn HttpMessage,
    /// The request it answers.
    pub request: &'a dyn HttpMessage,
}

impl fmt::Debug for ResponseWithRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseWithRequest")
            .finish_non_exhaustive()
    }
}

impl HttpMessage for ResponseWithRequest<'_> {
    fn method(&self) -> Option<&str> {
        self.response.method()
    }
    fn target_uri(&self) -> Option<String> {
        self.response.target_uri()
    }
    fn status(&self) -> Option<u16> {
        self.response.status()
    }
    fn header_values(&self, name: &str) -> Vec<String> {
        self.response.header_values(name)
    }
    fn related_request(&self) -> Option<&dyn HttpMessage> {
        Some(self.request)
    }
}

/// A covered component (§2.1, §2.2).
///
/// Construct with the variants or with [`Component::parse`]; `"x";req` is
/// [`Component::RequestHeader`], a derived component with `;req` is
/// [`Component::FromRequest`]. `;bs` and `;tr` are refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Component {
    /// `@method`
    Method,
    /// `@target-uri`
    TargetUri,
    /// `@authority`
    Authority,
    /// `@scheme`
    Scheme,
    /// `@request-target`
    RequestTarget,
    /// `@path`
    Path,
    /// `@query`
    Query,
    /// `@query-param;name="..."` (the name as it is encoded in the query).
    QueryParam(String),
    /// `@status`
    Status,
    /// A header field of this message, by lowercase name.
    Header(String),
    /// A header field of the related request (`"name";req`).
    RequestHeader(String),
    /// A structured field, re-serialised (`"name";sf`), of the request when `req`.
    Structured {
        /// Lowercase field name.
        name: String,
        /// From the related request.
        req: bool,
    },
    /// One member of a dictionary field (`"name";key="k"`), of the request when `req`.
    /// `"signature";req;key="sig1"` binds a response to the request's signature.
    DictionaryMember {
        /// Lowercase field name.
        name: String,
        /// The dictionary key.
        key: String,
        /// From the related request.
        req: bool,
    },
    /// A derived component taken from the related request (`"@method";req`).
    FromRequest(Box<Component>),
}

/// The resolved form of a component: what the base builder works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ComponentId {
    /// `@method`, `content-type`, ...
    pub(crate) name: String,
    pub(crate) req: bool,
    pub(crate) sf: bool,
    pub(crate) key: Option<String>,
    /// The `name` parameter of `@query-param`.
    pub(crate) query_name: Option<String>,
    /// The serialised identifier as it appears in the base and in Signature-Input.
    pub(crate) ident: String,
}

const DERIVED: [&str; 9] = [
    "@method",
    "@target-uri",
    "@authority",
    "@scheme",
    "@request-target",
    "@path",
    "@query",
    "@query-param",
    "@status",
];

impl Component {
    /// `"signature";req;key="{label}"`: the request's signature value under `label`.
    pub fn request_signature(label: &str) -> Self {
        Component::DictionaryMember {
            name: "signature".into(),
            key: label.into(),
            req: true,
        }
    }

    /// Parses a serialised component identifier (`"@method"`, `"signature";req;key="sig1"`)
    /// or a bare name (`content-digest`, `@path`).
    pub fn parse(s: &str) -> Result<Self, SignatureError> {
        let s = s.trim();
        let item: Item = if s.starts_with('"') {
            Parser::new(s)
                .parse()
                .map_err(|_| SignatureError::UnsupportedComponent(printable(s)))?
        } else {
            let name = StringRef::from_str(s)
                .map_err(|_| SignatureError::UnsupportedComponent(printable(s)))?;
            Item::new(name)
        };
        Ok(ComponentId::from_item(&item)?.to_component())
    }

    /// The component name (`@method`, `content-digest`) for errors and logs.
    pub fn name(&self) -> String {
        match self {
            Component::FromRequest(inner) => inner.name(),
            Component::Header(n)
            | Component::RequestHeader(n)
            | Component::Structured { name: n, .. }
            | Component::DictionaryMember { name: n, .. } => n.clone(),
            Component::Method => "@method".into(),
            Component::TargetUri => "@target-uri".into(),
            Component::Authority => "@authority".into(),
            Component::Scheme => "@scheme".into(),
            Component::RequestTarget => "@request-target".into(),
            Component::Path => "@path".into(),
            Component::Query => "@query".into(),
            Component::QueryParam(_) => "@query-param".into(),
            Component::Status => "@status".into(),
        }
    }

    /// The serialised identifier (`"@query-param";name="Pet"`, `"signature";req;key="sig1"`).
    pub fn identifier(&self) -> Result<String, SignatureError> {
        Ok(self.to_id()?.ident)
    }

    /// The canonical form: `FromRequest(Header(x))` is `RequestHeader(x)`, and so on.
    pub fn normalized(&self) -> Component {
        match self.to_id() {
            Ok(id) => id.to_component(),
            Err(_) => self.clone(),
        }
    }

    pub(crate) fn to_id(&self) -> Result<ComponentId, SignatureError> {
        let mut id = ComponentId {
            name: self.name(),
            req: false,
            sf: false,
            key: None,
            query_name: None,
            ident: String::new(),
        };
        match self {
            Component::FromRequest(inner) => {
                id = inner.to_id()?;
                id.req = true;
            }
            Component::RequestHeader(_) => id.req = true,
            Component::Structured { req, .. } => {
                id.sf = true;
                id.req = *req;
            }
            Component::DictionaryMember { key, req, .. } => {
                id.key = Some(key.clone());
                id.req = *req;
            }
            Component::QueryParam(q) => id.query_name = Some(q.clone()),
            _ => {}
        }
        id.validate()?;
        id.ident = id.serialize()?;
        Ok(id)
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.identifier() {
            Ok(s) => f.write_str(&s),
            Err(_) => f.write_str(&self.name()),
        }
    }
}

/// Keeps only printable ASCII of an identifier for an error message.
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect()
}

impl ComponentId {
    fn validate(&self) -> Result<(), SignatureError> {
        let bad = || SignatureError::UnsupportedComponent(printable(&self.name));
        if self.name.is_empty() {
            return Err(bad());
        }
        if self.name.starts_with('@') {
            if !DERIVED.contains(&self.name.as_str()) || self.sf || self.key.is_some() {
                return Err(bad());
            }
            if (self.name == "@query-param") != self.query_name.is_some() {
                return Err(bad());
            }
        } else {
            let token = self.name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
            });
            if !token || self.query_name.is_some() {
                return Err(bad());
            }
        }
        Ok(())
    }

    fn serialize(&self) -> Result<String, SignatureError> {
        let bad = || SignatureError::UnsupportedComponent(printable(&self.name));
        let name = StringRef::from_str(&self.name).map_err(|_| bad())?;
        let key = |k: &'static str| KeyRef::from_str(k).map_err(|_| bad());
        let mut ser = ItemSerializer::new().bare_item(name);
        if self.req {
            ser = ser.parameter(key("req")?, true);
        }
        if let Some(k) = &self.key {
            ser = ser.parameter(key("key")?, StringRef::from_str(k).map_err(|_| bad())?);
        }
        if let Some(q) = &self.query_name {
            ser = ser.parameter(key("name")?, StringRef::from_str(q).map_err(|_| bad())?);
        }
        if self.sf {
            ser = ser.parameter(key("sf")?, true);
        }
        Ok(ser.finish())
    }

    /// Reads a component identifier item from Signature-Input, keeping its serialisation.
    pub(crate) fn from_item(item: &Item) -> Result<Self, SignatureError> {
        let BareItem::String(name) = &item.bare_item else {
            return Err(SignatureError::UnsupportedComponent(
                "(not a string)".into(),
            ));
        };
        let name = name.as_str().to_string();
        let bad = || SignatureError::UnsupportedComponent(printable(&name));
        let mut id = ComponentId {
            name: name.clone(),
            req: false,
            sf: false,
            key: None,
            query_name: None,
            ident: item.serialize(),
        };
        for (k, v) in &item.params {
            match (k.as_str(), v) {
                ("req", BareItem::Boolean(true)) => id.req = true,
                ("sf", BareItem::Boolean(true)) => id.sf = true,
                ("key", BareItem::String(s)) => id.key = Some(s.as_str().to_string()),
                ("name", BareItem::String(s)) => id.query_name = Some(s.as_str().to_string()),
                // `bs` and `tr` (and anything else) are refused.
                _ => return Err(bad()),
            }
        }
        id.validate()?;
        Ok(id)
    }

    pub(crate) fn to_component(&self) -> Component {
        let plain = match self.name.as_str() {
            "@method" => Component::Method,
            "@target-uri" => Component::TargetUri,
            "@authority" => Component::Authority,
            "@scheme" => Component::Scheme,
            "@request-target" => Component::RequestTarget,
            "@path" => Component::Path,
            "@query" => Component::Query,
            "@query-param" => Component::QueryParam(self.query_name.clone().unwrap_or_default()),
            "@status" => Component::Status,
            name => {
                return match (&self.key, self.sf, self.req) {
                    (Some(key), _, req) => Component::DictionaryMember {
                        name: name.into(),
                        key: key.clone(),
                        req,
                    },
                    (None, true, req) => Component::Structured {
                        name: name.into(),
                        req,
                    },
                    (None, false, true) => Component::RequestHeader(name.into()),
                    (None, false, false) => Component::Header(name.into()),
                };
            }
        };
        if self.req {
            Component::FromRequest(Box::new(plain))
        } else {
            plain
        }
    }
}

/// The signature parameters (§2.3). Serialised in the order created, keyid, nonce, alg,
/// expires, tag, which reproduces the RFC 9421 examples.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignatureParams {
    /// `created`: UNIX seconds.
    pub created: Option<i64>,
    /// `expires`: UNIX seconds.
    pub expires: Option<i64>,
    /// `nonce`
    pub nonce: Option<String>,
    /// `keyid`
    pub keyid: Option<String>,
    /// `alg`
    pub alg: Option<Algorithm>,
    /// `tag`: the application profile.
    pub tag: Option<String>,
}

impl SignatureParams {
    /// The parameter list as it follows the inner list: `;created=1;keyid="k"`.
    pub(crate) fn serialize_params(&self) -> Result<String, SignatureError> {
        let mut out = String::new();
        let string = |name: &'static str, v: &str| -> Result<String, SignatureError> {
            let s = StringRef::from_str(v).map_err(|_| SignatureError::InvalidParameter(name))?;
            Ok(ItemSerializer::new().bare_item(s).finish())
        };
        if let Some(c) = self.created {
            out.push_str(&format!(";created={c}"));
        }
        if let Some(k) = &self.keyid {
            out.push_str(&format!(";keyid={}", string("keyid", k)?));
        }
        if let Some(n) = &self.nonce {
            out.push_str(&format!(";nonce={}", string("nonce", n)?));
        }
        if let Some(a) = self.alg {
            out.push_str(&format!(";alg=\"{}\"", a.as_str()));
        }
        if let Some(e) = self.expires {
            out.push_str(&format!(";expires={e}"));
        }
        if let Some(t) = &self.tag {
            out.push_str(&format!(";tag={}", string("tag", t)?));
        }
        for v in [self.created, self.expires].into_iter().flatten() {
            if !(-999_999_999_999_999..=999_999_999_999_999).contains(&v) {
                return Err(SignatureError::InvalidParameter("created/expires"));
            }
        }
        Ok(out)
    }

    /// Reads the parameters of a Signature-Input member. Unknown parameters are
    /// ignored (they stay in the serialised `@signature-params` line).
    pub(crate) fn from_sfv(label: &str, params: &Parameters) -> Result<Self, SignatureError> {
        let malformed = |reason| SignatureError::MalformedSignature {
            label: label.to_string(),
            reason,
        };
        let mut out = SignatureParams::default();
        for (k, v) in params {
            match k.as_str() {
                "created" | "expires" => {
                    let BareItem::Integer(i) = v else {
                        return Err(malformed("created/expires is not an integer"));
                    };
                    let i = i64::from(*i);
                    if k.as_str() == "created" {
                        out.created = Some(i);
                    } else {
                        out.expires = Some(i);
                    }
                }
                "nonce" | "keyid" | "tag" | "alg" => {
                    let BareItem::String(s) = v else {
                        return Err(malformed("nonce/keyid/tag/alg is not a string"));
                    };
                    let s = s.as_str().to_string();
                    match k.as_str() {
                        "nonce" => out.nonce = Some(s),
                        "keyid" => out.keyid = Some(s),
                        "tag" => out.tag = Some(s),
                        _ => out.alg = Some(s.parse()?),
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// Resolves components, refusing duplicates.
pub(crate) fn resolve_components(
    components: &[Component],
) -> Result<Vec<ComponentId>, SignatureError> {
    let mut ids: Vec<ComponentId> = Vec::with_capacity(components.len());
    for c in components {
        let id = c.to_id()?;
        check_duplicate(&ids, &id)?;
        ids.push(id);
    }
    Ok(ids)
}

pub(crate) fn check_duplicate(
    seen: &[ComponentId],
    id: &ComponentId,
) -> Result<(), SignatureError> {
    let same = |a: &ComponentId| {
        a.name == id.name
            && a.req == id.req
            && a.sf == id.sf
            && a.key == id.key
            && a.query_name == id.query_name
    };
    if seen.iter().any(same) {
        return Err(SignatureError::DuplicateComponent(printable(&id.name)));
    }
    Ok(())
}

/// The `@signature-params` value: `("@method" "content-digest");created=...`.
pub(crate) fn params_line(
    ids: &[ComponentId],
    params: &SignatureParams,
) -> Result<String, SignatureError> {
    let idents: Vec<&str> = ids.iter().map(|i| i.ident.as_str()).collect();
    Ok(format!(
        "({}){}",
        idents.join(" "),
        params.serialize_params()?
    ))
}

/// The serialisation of a parsed Signature-Input inner list.
pub(crate) fn inner_list_line(list: &InnerList) -> String {
    let l: List = vec![ListEntry::InnerList(list.clone())];
    l.serialize().unwrap_or_else(|| "()".to_string())
}

/// The signature base of `components` and `params` over `message` (§2.5), without a
/// trailing newline.
pub fn signature_base(
    components: &[Component],
    params: &SignatureParams,
    message: &dyn HttpMessage,
) -> Result<String, SignatureError> {
    let ids = resolve_components(components)?;
    let line = params_line(&ids, params)?;
    build_base(&ids, &line, message)
}

pub(crate) fn build_base(
    ids: &[ComponentId],
    params_line: &str,
    message: &dyn HttpMessage,
) -> Result<String, SignatureError> {
    let mut base = String::new();
    for id in ids {
        for value in component_values(id, message)? {
            base.push_str(&id.ident);
            base.push_str(": ");
            base.push_str(&value);
            base.push('\n');
        }
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(params_line);
    Ok(base)
}

/// The value(s) of one component; `@query-param` yields one per occurrence.
fn component_values(
    id: &ComponentId,
    message: &dyn HttpMessage,
) -> Result<Vec<String>, SignatureError> {
    let missing = || SignatureError::ComponentMissing(printable(&id.name));
    let msg: &dyn HttpMessage = if id.req {
        message.related_request().ok_or_else(missing)?
    } else {
        message
    };
    if id.name.starts_with('@') {
        return derived_values(id, msg);
    }
    let lines = msg.header_values(&id.name);
    if lines.is_empty() {
        return Err(missing());
    }
    let mut joined = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            joined.push_str(", ");
        }
        // Obsolete line folding becomes a single space (§2.1).
        let unfolded: String = line
            .split(['\r', '\n'])
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ");
        joined.push_str(unfolded.trim_matches([' ', '\t']));
    }
    if let Some(key) = &id.key {
        let dict: Dictionary = Parser::new(&joined).parse().map_err(|_| missing())?;
        let entry = dict.get(key.as_str()).ok_or_else(missing)?;
        let value = match entry {
            ListEntry::Item(item) => item.serialize(),
            ListEntry::InnerList(_) => {
                let l: List = vec![entry.clone()];
                l.serialize().unwrap_or_default()
            }
        };
        return Ok(vec![value]);
    }
    if id.sf {
        let value = if let Ok(list) = Parser::new(&joined).parse::<List>() {
            list.serialize().unwrap_or_default()
        } else if let Ok(dict) = Parser::new(&joined).parse::<Dictionary>() {
            dict.serialize().unwrap_or_default()
        } else {
            return Err(missing());
        };
        return Ok(vec![value]);
    }
    Ok(vec![joined])
}

fn derived_values(id: &ComponentId, msg: &dyn HttpMessage) -> Result<Vec<String>, SignatureError> {
    let missing = || SignatureError::ComponentMissing(printable(&id.name));
    if id.name == "@method" {
        return Ok(vec![msg.method().ok_or_else(missing)?.to_string()]);
    }
    if id.name == "@status" {
        let status = msg.status().ok_or_else(missing)?;
        return Ok(vec![format!("{status:03}")]);
    }
    let target = msg.target_uri().ok_or_else(missing)?;
    let uri: http::Uri = target
        .parse()
        .map_err(|_| SignatureError::MessageMalformed("the target URI is not a valid URI"))?;
    let scheme = uri
        .scheme_str()
        .ok_or(SignatureError::MessageMalformed(
            "the target URI is not absolute",
        ))?
        .to_ascii_lowercase();
    let authority = uri.authority().ok_or(SignatureError::MessageMalformed(
        "the target URI is not absolute",
    ))?;
    let path = match uri.path() {
        "" => "/",
        p => p,
    };
    let query = uri.query();
    let value = match id.name.as_str() {
        "@target-uri" => target.clone(),
        "@scheme" => scheme,
        "@authority" => {
            let host = authority.host().to_ascii_lowercase();
            match authority.port_u16() {
                Some(443) if scheme == "https" => host,
                Some(80) if scheme == "http" => host,
                Some(p) => format!("{host}:{p}"),
                None => host,
            }
        }
        "@path" => path.to_string(),
        "@query" => format!("?{}", query.unwrap_or("")),
        "@request-target" => match query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        },
        "@query-param" => {
            let wanted = id.query_name.as_deref().ok_or_else(missing)?;
            let wanted = encode_query_part(&decode_query_part(wanted));
            let values: Vec<String> = query
                .unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .filter_map(|pair| {
                    let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (encode_query_part(&decode_query_part(n)) == wanted)
                        .then(|| encode_query_part(&decode_query_part(v)))
                })
                .collect();
            if values.is_empty() {
                return Err(missing());
            }
            return Ok(values);
        }
        _ => return Err(SignatureError::UnsupportedComponent(printable(&id.name))),
    };
    Ok(vec![value])
}

/// `application/x-www-form-urlencoded` decoding of one name or value.
fn decode_query_part(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
        match b {
            b'+' => out.push(b' '),
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(h), Some(l)) => {
                    out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

/// Percent-encodes everything but the unreserved characters (§2.2.8).
fn encode_query_part(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Message {
        Message::request("POST", "https://Example.COM:443/foo?param=Value&Pet=dog")
            .header("Host", "example.com")
            .header("Content-Type", "application/json")
            .header("X-Multi", " a ")
            .header("x-multi", "b")
    }

    #[test]
    fn derived_components() -> Result<(), SignatureError> {
        let m = request();
        let line = |c: Component| -> Result<String, SignatureError> {
            let base = signature_base(&[c], &SignatureParams::default(), &m)?;
            Ok(base.lines().next().unwrap_or_default().to_string())
        };
        assert_eq!(line(Component::Method)?, "\"@method\": POST");
        assert_eq!(line(Component::Authority)?, "\"@authority\": example.com");
        assert_eq!(line(Component::Scheme)?, "\"@scheme\": https");
        assert_eq!(line(Component::Path)?, "\"@path\": /foo");
        assert_eq!(line(Component::Query)?, "\"@query\": ?param=Value&Pet=dog");
        assert_eq!(
            line(Component::RequestTarget)?,
            "\"@request-target\": /foo?param=Value&Pet=dog"
        );
        assert_eq!(
            line(Component::QueryParam("Pet".into()))?,
            "\"@query-param\";name=\"Pet\": dog"
        );
        assert_eq!(
            line(Component::Header("x-multi".into()))?,
            "\"x-multi\": a, b"
        );
        Ok(())
    }

    #[test]
    fn query_param_encoding_follows_rfc_2_2_8() -> Result<(), SignatureError> {
        let m = Message::request(
            "GET",
            "https://example.com/parameters?var=this%20is%20a%20big%0Avalue&bar=with+plus+whitespace&fa%C3%A7ade%22%3A%20=something",
        );
        let base = signature_base(
            &[
                Component::QueryParam("var".into()),
                Component::QueryParam("bar".into()),
                Component::QueryParam("fa%C3%A7ade%22%3A%20".into()),
            ],
            &SignatureParams::default(),
            &m,
        )?;
        let lines: Vec<&str> = base.lines().collect();
        assert_eq!(
            lines.first(),
            Some(&"\"@query-param\";name=\"var\": this%20is%20a%20big%0Avalue")
        );
        assert_eq!(
            lines.get(1),
            Some(&"\"@query-param\";name=\"bar\": with%20plus%20whitespace")
        );
        assert_eq!(
            lines.get(2),
            Some(&"\"@query-param\";name=\"fa%C3%A7ade%22%3A%20\": something")
        );
        Ok(())
    }

    #[test]
    fn parse_and_identifier_round_trip() -> Result<(), SignatureError> {
        for s in [
            "\"@method\"",
            "\"content-digest\"",
            "\"signature\";req;key=\"sig1\"",
            "\"@authority\";req",
            "\"x-road-client\";req",
            "\"example-dict\";sf",
            "\"@query-param\";name=\"Pet\"",
        ] {
            let c = Component::parse(s)?;
            assert_eq!(c.identifier()?, s);
        }
        assert_eq!(
            Component::parse("content-digest")?,
            Component::Header("content-digest".into())
        );
        assert_eq!(
            Component::parse("\"signature\";req;key=\"sig1\"")?,
            Component::request_signature("sig1")
        );
        assert_eq!(
            Component::FromRequest(Box::new(Component::Header("a".into()))).normalized(),
            Component::RequestHeader("a".into())
        );
        for bad in [
            "\"x\";bs",
            "\"x\";tr",
            "\"@nope\"",
            "\"@method\";sf",
            "\"Upper\"",
            "\"@query-param\"",
        ] {
            let err = Component::parse(bad).err().map(|e| e.code());
            assert_eq!(err, Some("signature.malformed"), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn missing_and_duplicate_components() {
        let m = request();
        let err = signature_base(
            &[Component::Header("date".into())],
            &SignatureParams::default(),
            &m,
        );
        assert_eq!(err, Err(SignatureError::ComponentMissing("date".into())));
        let err = signature_base(&[Component::Status], &SignatureParams::default(), &m);
        assert_eq!(
            err.err().map(|e| e.code()),
            Some("signature.component_missing")
        );
        let err = signature_base(
            &[Component::RequestHeader("host".into())],
            &SignatureParams::default(),
            &m,
        );
        assert_eq!(
            err.err().map(|e| e.code()),
            Some("signature.component_missing")
        );
        let err = signature_base(
            &[Component::Method, Component::Method],
            &SignatureParams::default(),
            &m,
        );
        assert_eq!(
            err,
            Err(SignatureError::DuplicateComponent("@method".into()))
        );
    }

    #[test]
    fn dictionary_member_and_sf() -> Result<(), SignatureError> {
        let m =
            Message::response(200).header("example-dict", " a=1,    b=2;x=1;y=2,   c=(a   b   c)");
        let p = SignatureParams::default();
        let one = |c: Component| -> Result<String, SignatureError> {
            let base = signature_base(&[c], &p, &m)?;
            Ok(base.lines().next().unwrap_or_default().to_string())
        };
        // RFC 9421 §2.1.1 and §2.1.2.
        assert_eq!(
            one(Component::Structured {
                name: "example-dict".into(),
                req: false
            })?,
            "\"example-dict\";sf: a=1, b=2;x=1;y=2, c=(a b c)"
        );
        let member = |k: &str| Component::DictionaryMember {
            name: "example-dict".into(),
            key: k.into(),
            req: false,
        };
        assert_eq!(one(member("a"))?, "\"example-dict\";key=\"a\": 1");
        assert_eq!(one(member("b"))?, "\"example-dict\";key=\"b\": 2;x=1;y=2");
        assert_eq!(one(member("c"))?, "\"example-dict\";key=\"c\": (a b c)");
        assert_eq!(
            one(member("d")).err().map(|e| e.code()),
            Some("signature.component_missing")
        );
        Ok(())
    }
}
