//! The open-data catalog in DCAT (issue 11): `GET /catalog.jsonld` (JSON-LD,
//! `application/ld+json`) and `GET /catalog.ttl` (Turtle, `text/turtle`) on the public
//! listener (datasets of `audience: public`), and the same under `/opendata/v1` on the
//! consumer listener for members (both tiers). The two files are written from one
//! [`Graph`], so they always state the same triples.
//!
//! What the catalog says (DCAT-AP vocabulary):
//! - a `dcat:Catalog` with its title (vi, en), publisher, language, landing page, its
//!   datasets and its services;
//! - each dataset as a `dcat:Dataset`: `dcterms:identifier`, title and description in
//!   Vietnamese and (when written) English, `dcterms:publisher` (a `foaf:Agent` with
//!   `foaf:name` and the member id), `dcat:keyword`, `dcterms:license`,
//!   `dcterms:accrualPeriodicity` (the EU frequency vocabulary), `dcterms:provenance`
//!   (a `dcterms:ProvenanceStatement`), the attribution reusers owe as
//!   `dcterms:bibliographicCitation` (DCAT 3's property for how to cite a dataset), the
//!   retention period (below), `dcat:landingPage` (its entry on the catalog page), and
//!   three `dcat:Distribution`s: the CSV and JSON downloads (`dcat:downloadURL`,
//!   `dcat:mediaType`, `dcterms:format`) and the CKAN datastore (`dcat:accessService`);
//! - the CKAN Action API as a `dcat:DataService` (`dcat:endpointURL`, serving every
//!   dataset listed);
//! - the node's **shared-data services** (those a local adapter serves) as
//!   `dcat:DataService`s: the service id, the adapter's `description` when it has one, the
//!   providing member, and `dcterms:accessRights` RESTRICTED (a data-sharing contract is
//!   needed). Their metadata only: never a contract, never a record, and no endpoint
//!   address (services are called through the consumer's own gateway by X-Road path, so
//!   the catalog names the service id instead of a `dcat:endpointURL`).
//!
//! **Retention** (004 Điều 24 k3a: how long each version is kept and stays valid) has no
//! property in DCAT-AP 3 or ADMS, so it is `dcterms:accrualPolicy`, whose range
//! `dcterms:Policy` is "a plan or course of action" governing the collection: a policy
//! node with a label in both languages and the period as `rdf:value "P24M"^^xsd:duration`,
//! readable by a machine. `dcterms:temporal` and `dcterms:valid` were set aside: they state
//! the period the data covers or a date of validity, which a harvester would misread.
//!
//! **Absolute IRIs** start from `[public] base_url`. Without it they are built from the
//! request's `Host` (or HTTP/2 `:authority`): `http://` (`https://` when the public
//! listener serves TLS), and always `https://` on the consumer listener. A client can
//! choose that host, so a production node behind a shared cache sets `base_url`.
//!
//! Owns: the graph of the catalog, its JSON-LD and Turtle writing (strings escaped per
//! the Turtle grammar; IRIs with the characters it forbids percent-encoded), the base
//! of its IRIs, the labels the catalog page shares.
//!
//! Does not own: the datasets and who may see them (`opendata::Catalog`, `Edge`), the
//! limits and members' authentication (`opendata::admit`), the page (`opendata_page`).

use super::Gateway;
use super::opendata::{Catalog, Edge};
use crate::error::{ErrorCode, GatewayError};
use crate::identity::{MemberId, ServiceId};
use crate::opendata::{Dataset, FieldType, Frequency, Provenance};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::fmt::Write as _;
use std::sync::Arc;

/// The prefixes both serialisations declare, in this order.
const PREFIXES: [(&str, &str); 7] = [
    ("dcat", "http://www.w3.org/ns/dcat#"),
    ("dcterms", "http://purl.org/dc/terms/"),
    ("foaf", "http://xmlns.com/foaf/0.1/"),
    ("rdf", "http://www.w3.org/1999/02/22-rdf-syntax-ns#"),
    ("rdfs", "http://www.w3.org/2000/01/rdf-schema#"),
    ("xsd", "http://www.w3.org/2001/XMLSchema#"),
    ("adms", "http://www.w3.org/ns/adms#"),
];

const EU_FREQUENCY: &str = "http://publications.europa.eu/resource/authority/frequency/";
const EU_FILE_TYPE: &str = "http://publications.europa.eu/resource/authority/file-type/";
const EU_LANGUAGE_VIE: &str = "http://publications.europa.eu/resource/authority/language/VIE";
const EU_ACCESS_PUBLIC: &str =
    "http://publications.europa.eu/resource/authority/access-right/PUBLIC";
const EU_ACCESS_RESTRICTED: &str =
    "http://publications.europa.eu/resource/authority/access-right/RESTRICTED";
const IANA_MEDIA_TYPES: &str = "http://www.iana.org/assignments/media-types/";
const CKAN_API_DOCS: &str = "https://docs.ckan.org/en/2.10/api/";

// ---------------------------------------------------------------------------
// The graph
// ---------------------------------------------------------------------------

/// An object of a triple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// An absolute IRI (already safe: see [`iri`]).
    Iri(String),
    /// A literal, with a language tag or a datatype (a prefixed name) or neither.
    Literal {
        /// The text.
        text: String,
        /// Its language (`vi`, `en`).
        language: Option<&'static str>,
        /// Its datatype as a prefixed name (`xsd:duration`).
        datatype: Option<&'static str>,
    },
}

impl Term {
    fn text(text: impl Into<String>) -> Term {
        Term::Literal {
            text: text.into(),
            language: None,
            datatype: None,
        }
    }

    fn vi(text: impl Into<String>) -> Term {
        Term::Literal {
            text: text.into(),
            language: Some("vi"),
            datatype: None,
        }
    }

    fn en(text: impl Into<String>) -> Term {
        Term::Literal {
            text: text.into(),
            language: Some("en"),
            datatype: None,
        }
    }

    fn iri(text: &str) -> Term {
        Term::Iri(iri(text))
    }
}

/// One subject with its types and its properties (predicates as prefixed names).
#[derive(Debug, Clone)]
pub struct Node {
    /// Its IRI.
    pub id: String,
    /// Its `rdf:type`s, as prefixed names.
    pub types: Vec<&'static str>,
    /// Its properties in the order written.
    pub properties: Vec<(&'static str, Term)>,
}

impl Node {
    fn new(id: &str, kind: &'static str) -> Node {
        Node {
            id: iri(id),
            types: vec![kind],
            properties: Vec::new(),
        }
    }

    fn add(&mut self, predicate: &'static str, object: Term) -> &mut Node {
        self.properties.push((predicate, object));
        self
    }
}

/// A set of nodes, in a stable order (each subject once).
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// The nodes.
    pub nodes: Vec<Node>,
}

impl Graph {
    /// Adds `node` unless a node with its IRI is already there (shared agents, policies).
    fn insert(&mut self, node: Node) {
        if !self.nodes.iter().any(|n| n.id == node.id) {
            self.nodes.push(node);
        }
    }

    /// The JSON-LD document: an inline `@context` of prefixes (no remote context to
    /// fetch) and a `@graph` of node objects.
    pub fn to_jsonld(&self) -> Value {
        let context: Map<String, Value> = PREFIXES
            .iter()
            .map(|(prefix, namespace)| ((*prefix).to_owned(), Value::from(*namespace)))
            .collect();
        let graph: Vec<Value> = self
            .nodes
            .iter()
            .map(|node| {
                let mut object = Map::new();
                object.insert("@id".into(), Value::from(node.id.as_str()));
                object.insert("@type".into(), Value::from(node.types.clone()));
                // Each predicate once, with all its values, in the order first written.
                let mut grouped: Vec<(&str, Vec<Value>)> = Vec::new();
                for (predicate, term) in &node.properties {
                    let value = match term {
                        Term::Iri(iri) => json!({"@id": iri}),
                        Term::Literal {
                            text,
                            language: Some(language),
                            ..
                        } => json!({"@value": text, "@language": language}),
                        Term::Literal {
                            text,
                            datatype: Some(datatype),
                            ..
                        } => json!({"@value": text, "@type": datatype}),
                        Term::Literal { text, .. } => json!({"@value": text}),
                    };
                    match grouped.iter_mut().find(|(p, _)| p == predicate) {
                        Some((_, values)) => values.push(value),
                        None => grouped.push((predicate, vec![value])),
                    }
                }
                for (predicate, values) in grouped {
                    object.insert(predicate.to_owned(), Value::Array(values));
                }
                Value::Object(object)
            })
            .collect();
        json!({"@context": context, "@graph": graph})
    }

    /// The Turtle document: prefixes, then one block per subject.
    pub fn to_turtle(&self) -> String {
        let mut out = String::new();
        for (prefix, namespace) in PREFIXES {
            let _ = writeln!(out, "@prefix {prefix}: <{namespace}> .");
        }
        for node in &self.nodes {
            out.push('\n');
            let _ = write!(out, "<{}> a {}", node.id, node.types.join(", "));
            for (predicate, term) in &node.properties {
                let _ = write!(out, " ;\n    {predicate} ");
                match term {
                    Term::Iri(iri) => {
                        let _ = write!(out, "<{iri}>");
                    }
                    Term::Literal {
                        text,
                        language,
                        datatype,
                    } => {
                        out.push_str(&turtle_string(text));
                        if let Some(language) = language {
                            let _ = write!(out, "@{language}");
                        } else if let Some(datatype) = datatype {
                            let _ = write!(out, "^^{datatype}");
                        }
                    }
                }
            }
            out.push_str(" .\n");
        }
        out
    }
}

/// A Turtle `STRING_LITERAL_QUOTE`: `"`, `\` and line breaks escaped (ECHAR), other
/// control characters as `\uXXXX` (UCHAR); everything else is UTF-8 as is.
pub fn turtle_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An IRI both serialisations can write as is: the characters Turtle's `IRIREF` forbids
/// (controls, space, `<>"{}|^` and backquote, backslash) are percent-encoded, UTF-8
/// byte by byte. Everything else is kept, so an already valid IRI is unchanged.
pub fn iri(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c <= ' ' || c == '\u{7f}' || "<>\"{}|^`\\".contains(c) {
            let mut buffer = [0u8; 4];
            for byte in c.encode_utf8(&mut buffer).bytes() {
                let _ = write!(out, "%{byte:02X}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A path segment: anything but unreserved characters percent-encoded.
fn segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

// ---------------------------------------------------------------------------
// Labels shared with the catalog page
// ---------------------------------------------------------------------------

/// The languages of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// Vietnamese (the default).
    Vi,
    /// English.
    En,
}

/// How often a dataset is updated, in words.
pub fn frequency_label(frequency: Frequency, language: Language) -> &'static str {
    match (frequency, language) {
        (Frequency::Daily, Language::Vi) => "Hằng ngày",
        (Frequency::Weekly, Language::Vi) => "Hằng tuần",
        (Frequency::Monthly, Language::Vi) => "Hằng tháng",
        (Frequency::Quarterly, Language::Vi) => "Hằng quý",
        (Frequency::Annual, Language::Vi) => "Hằng năm",
        (Frequency::Irregular, Language::Vi) => "Không định kỳ",
        (Frequency::Never, Language::Vi) => "Không cập nhật",
        (Frequency::Daily, Language::En) => "Daily",
        (Frequency::Weekly, Language::En) => "Weekly",
        (Frequency::Monthly, Language::En) => "Monthly",
        (Frequency::Quarterly, Language::En) => "Quarterly",
        (Frequency::Annual, Language::En) => "Annual",
        (Frequency::Irregular, Language::En) => "Irregular",
        (Frequency::Never, Language::En) => "Never updated",
    }
}

/// Where the data came from, in words.
pub fn provenance_label(provenance: Provenance, language: Language) -> &'static str {
    match language {
        Language::Vi => provenance.label_vi(),
        Language::En => match provenance {
            Provenance::Survey => "Survey or census",
            Provenance::Digitised => "Digitised from paper records",
            Provenance::Procedure => "Collected while handling administrative procedures",
            Provenance::Derived => "Derived from other data",
            Provenance::AgencyDatabase => "From another agency's database",
        },
    }
}

/// The provenance's code (as the dataset file spells it).
fn provenance_code(provenance: Provenance) -> &'static str {
    match provenance {
        Provenance::Survey => "survey",
        Provenance::Digitised => "digitised",
        Provenance::Procedure => "procedure",
        Provenance::Derived => "derived",
        Provenance::AgencyDatabase => "agency_database",
    }
}

/// A field type, in words.
pub fn field_type_label(kind: FieldType, language: Language) -> &'static str {
    match (kind, language) {
        (FieldType::Text, Language::Vi) => "Văn bản",
        (FieldType::Integer, Language::Vi) => "Số nguyên",
        (FieldType::Number, Language::Vi) => "Số thập phân",
        (FieldType::Date, Language::Vi) => "Ngày (YYYY-MM-DD)",
        (FieldType::Text, Language::En) => "Text",
        (FieldType::Integer, Language::En) => "Integer",
        (FieldType::Number, Language::En) => "Decimal number",
        (FieldType::Date, Language::En) => "Date (YYYY-MM-DD)",
    }
}

/// The retention period, in words.
pub fn retention_label(months: u32, language: Language) -> String {
    match language {
        Language::Vi => format!("{months} tháng"),
        Language::En if months == 1 => "1 month".to_owned(),
        Language::En => format!("{months} months"),
    }
}

/// CKAN's organization name for a member (`vn-gov-000-00-00-g10`), as the CKAN API names it.
pub fn organization_name(member: &MemberId) -> String {
    member
        .to_string()
        .to_ascii_lowercase()
        .replace(['/', '.'], "-")
}

// ---------------------------------------------------------------------------
// What the catalog lists
// ---------------------------------------------------------------------------

/// Where the catalog is: the base of its IRIs and links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    /// Scheme and authority (and the base URL's path), no trailing `/`.
    pub origin: String,
    /// The edge's path prefix: empty on the public listener, `/opendata/v1` for members.
    pub prefix: &'static str,
}

impl Root {
    /// `{origin}{prefix}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}{path}", self.origin, self.prefix)
    }

    /// The catalog page's URL.
    pub fn page(&self) -> String {
        self.url("/")
    }
}

/// A shared-data service of the node, as the catalog shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedService {
    /// Its id.
    pub id: ServiceId,
    /// Its adapter's description, if any.
    pub description: Option<String>,
}

/// The services local adapters serve, by id: metadata only.
pub fn shared_services(gateway: &Gateway) -> Vec<SharedService> {
    let runtime = gateway.runtime();
    let mut services: Vec<SharedService> = runtime
        .services
        .iter()
        .map(|(id, backend)| SharedService {
            id: id.clone(),
            description: backend.adapter.spec.description.clone(),
        })
        .collect();
    services.sort_by_key(|service| service.id.to_string());
    services
}

/// The base of the catalog's IRIs for this request (see the module's documentation).
pub fn root(catalog: &Catalog, edge: Edge, request: &Request) -> Result<Root, GatewayError> {
    let prefix = match edge {
        Edge::Public => "",
        Edge::Members => "/opendata/v1",
    };
    let public = catalog.public_settings();
    if edge == Edge::Public
        && let Some(base) = &public.base_url
    {
        return Ok(Root {
            origin: base.as_str().trim_end_matches('/').to_owned(),
            prefix,
        });
    }
    let host = request
        .uri()
        .authority()
        .map(|authority| authority.as_str().to_owned())
        .or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        });
    let authority = host
        .and_then(|host| host.parse::<axum::http::uri::Authority>().ok())
        .filter(|authority| !authority.as_str().contains('@'))
        .ok_or_else(|| {
            GatewayError::new(
                ErrorCode::OpendataInvalidQuery,
                "the Host header must name this server (host or host:port)",
            )
        })?;
    let scheme = if edge == Edge::Members || public.tls {
        "https"
    } else {
        "http"
    };
    Ok(Root {
        origin: format!("{scheme}://{}", authority.as_str().to_ascii_lowercase()),
        prefix,
    })
}

/// The catalog as a graph: `datasets` (those the edge shows) and the node's `services`.
pub fn describe(
    root: &Root,
    node_member: &MemberId,
    datasets: &[&Dataset],
    services: &[SharedService],
) -> Graph {
    let mut graph = Graph::default();
    let catalog_iri = root.url("/catalog");
    let ckan_iri = root.url("/api/3/action/");
    let agent = |graph: &mut Graph, member: &MemberId, name: &str| -> String {
        let id = root.url(&format!("/organization/{}", organization_name(member)));
        let mut node = Node::new(&id, "foaf:Agent");
        node.add("foaf:name", Term::vi(name))
            .add("dcterms:identifier", Term::text(member.to_string()));
        graph.insert(node);
        iri(&id)
    };

    let mut catalog = Node::new(&catalog_iri, "dcat:Catalog");
    catalog
        .add("dcterms:title", Term::vi("Danh mục dữ liệu mở"))
        .add("dcterms:title", Term::en("Open data catalog"))
        .add(
            "dcterms:description",
            Term::vi(
                "Các bộ dữ liệu mở và các dịch vụ chia sẻ dữ liệu của nút (chỉ siêu dữ liệu).",
            ),
        )
        .add(
            "dcterms:description",
            Term::en("The node's open datasets and shared-data services (metadata only)."),
        )
        .add("dcterms:language", Term::iri(EU_LANGUAGE_VIE))
        .add("foaf:homepage", Term::iri(&root.page()));
    // The node's own member publishes the catalog; its name, when one of its datasets
    // gives it, otherwise its id.
    let node_name = datasets
        .iter()
        .find(|d| &d.publisher == node_member)
        .map_or_else(|| node_member.to_string(), |d| d.raw.publisher_name.clone());
    let node_agent = agent(&mut graph, node_member, &node_name);
    catalog.add("dcterms:publisher", Term::Iri(node_agent.clone()));

    let mut ckan = Node::new(&ckan_iri, "dcat:DataService");
    ckan.add("dcterms:title", Term::vi("API CKAN (Action API)"))
        .add("dcterms:title", Term::en("CKAN Action API"))
        .add("dcat:endpointURL", Term::iri(&ckan_iri))
        .add("dcterms:conformsTo", Term::iri(CKAN_API_DOCS))
        .add("dcterms:publisher", Term::Iri(node_agent.clone()));

    let mut dataset_nodes = Vec::new();
    for dataset in datasets {
        let raw = &dataset.raw;
        let id = dataset.id();
        let dataset_iri = root.url(&format!("/dataset/{}", segment(id)));
        catalog.add("dcat:dataset", Term::iri(&dataset_iri));
        ckan.add("dcat:servesDataset", Term::iri(&dataset_iri));
        let publisher = agent(&mut graph, &dataset.publisher, &raw.publisher_name);
        let licence = Term::iri(&raw.licence.url);

        let mut node = Node::new(&dataset_iri, "dcat:Dataset");
        node.add("dcterms:identifier", Term::text(id))
            .add("dcterms:title", Term::vi(&raw.title));
        if let Some(title) = &raw.title_en {
            node.add("dcterms:title", Term::en(title));
        }
        node.add("dcterms:description", Term::vi(&raw.description));
        if let Some(description) = &raw.description_en {
            node.add("dcterms:description", Term::en(description));
        }
        node.add("dcterms:publisher", Term::Iri(publisher));
        for keyword in &raw.keywords {
            node.add("dcat:keyword", Term::vi(keyword));
        }
        node.add("dcterms:license", licence.clone())
            .add(
                "dcterms:accrualPeriodicity",
                Term::iri(&format!("{EU_FREQUENCY}{}", raw.update_frequency.eu_code())),
            )
            .add(
                "dcterms:accessRights",
                Term::iri(match raw.audience {
                    crate::opendata::Audience::Public => EU_ACCESS_PUBLIC,
                    crate::opendata::Audience::Members => EU_ACCESS_RESTRICTED,
                }),
            )
            .add("dcterms:language", Term::iri(EU_LANGUAGE_VIE))
            .add(
                "dcat:landingPage",
                Term::iri(&format!("{}#dataset-{}", root.page(), segment(id))),
            )
            .add("dcterms:bibliographicCitation", Term::vi(&raw.attribution));

        // Provenance: one statement per kind, shared by the datasets that have it.
        let provenance_iri = root.url(&format!("/provenance/{}", provenance_code(raw.provenance)));
        let mut provenance = Node::new(&provenance_iri, "dcterms:ProvenanceStatement");
        provenance
            .add(
                "rdfs:label",
                Term::vi(provenance_label(raw.provenance, Language::Vi)),
            )
            .add(
                "rdfs:label",
                Term::en(provenance_label(raw.provenance, Language::En)),
            );
        graph.insert(provenance);
        node.add("dcterms:provenance", Term::iri(&provenance_iri));

        // Retention: a policy per period (see the module's documentation).
        let months = raw.retention_months;
        let retention_iri = root.url(&format!("/retention/P{months}M"));
        let mut retention = Node::new(&retention_iri, "dcterms:Policy");
        retention
            .add(
                "rdfs:label",
                Term::vi(format!(
                    "Mỗi phiên bản được lưu giữ {}",
                    retention_label(months, Language::Vi)
                )),
            )
            .add(
                "rdfs:label",
                Term::en(format!(
                    "Each version is kept {}",
                    retention_label(months, Language::En)
                )),
            )
            .add(
                "rdf:value",
                Term::Literal {
                    text: format!("P{months}M"),
                    language: None,
                    datatype: Some("xsd:duration"),
                },
            );
        graph.insert(retention);
        node.add("dcterms:accrualPolicy", Term::iri(&retention_iri));

        let mut distributions = Vec::new();
        for (format, media_type, file_type) in [
            ("csv", "text/csv", "CSV"),
            ("json", "application/json", "JSON"),
        ] {
            let download = root.url(&format!("/dataset/{}.{format}", segment(id)));
            let distribution_iri = format!("{dataset_iri}/distribution/{format}");
            let mut distribution = Node::new(&distribution_iri, "dcat:Distribution");
            distribution
                .add("dcterms:title", Term::text(format!("{id}.{format}")))
                .add("dcat:accessURL", Term::iri(&download))
                .add("dcat:downloadURL", Term::iri(&download))
                .add(
                    "dcat:mediaType",
                    Term::iri(&format!("{IANA_MEDIA_TYPES}{media_type}")),
                )
                .add(
                    "dcterms:format",
                    Term::iri(&format!("{EU_FILE_TYPE}{file_type}")),
                )
                .add("dcterms:license", licence.clone());
            node.add("dcat:distribution", Term::iri(&distribution_iri));
            distributions.push(distribution);
        }
        let datastore_iri = format!("{dataset_iri}/distribution/api");
        let mut datastore = Node::new(&datastore_iri, "dcat:Distribution");
        datastore
            .add("dcterms:title", Term::vi("Truy vấn qua API CKAN"))
            .add("dcterms:title", Term::en("Query through the CKAN API"))
            .add(
                "dcat:accessURL",
                Term::iri(&root.url(&format!(
                    "/api/3/action/datastore_search?resource_id={}",
                    segment(id)
                ))),
            )
            .add("dcat:accessService", Term::iri(&ckan_iri))
            .add("dcterms:license", licence);
        node.add("dcat:distribution", Term::iri(&datastore_iri));
        distributions.push(datastore);

        dataset_nodes.push(node);
        dataset_nodes.extend(distributions);
    }
    catalog.add("dcat:service", Term::iri(&ckan_iri));

    let mut service_nodes = Vec::new();
    for service in services {
        let service_iri = root.url(&format!("/service/{}", segment(&service.id.to_string())));
        catalog.add("dcat:service", Term::iri(&service_iri));
        let provider = &service.id.provider.member;
        let name = datasets
            .iter()
            .find(|d| &d.publisher == provider)
            .map_or_else(|| provider.to_string(), |d| d.raw.publisher_name.clone());
        let publisher = agent(&mut graph, provider, &name);
        let mut node = Node::new(&service_iri, "dcat:DataService");
        node.add("dcterms:identifier", Term::text(service.id.to_string()))
            .add("dcterms:title", Term::text(&service.id.code));
        if let Some(description) = &service.description {
            node.add("dcterms:description", Term::text(description));
        }
        node.add("dcterms:publisher", Term::Iri(publisher))
            .add("dcterms:accessRights", Term::iri(EU_ACCESS_RESTRICTED));
        service_nodes.push(node);
    }

    // Catalog first, then the API, datasets, services, and the shared nodes (agents,
    // provenance, policies) that were inserted along the way.
    let shared = std::mem::take(&mut graph.nodes);
    graph.nodes.push(catalog);
    graph.nodes.push(ckan);
    graph.nodes.extend(dataset_nodes);
    graph.nodes.extend(service_nodes);
    for node in shared {
        graph.insert(node);
    }
    graph
}

// ---------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------

/// `/catalog.jsonld` and `/catalog.ttl` for `edge` (merged into the open-data routes).
pub fn routes(edge: Edge) -> axum::Router<Arc<Gateway>> {
    use axum::routing::get;
    axum::Router::new()
        .route(
            "/catalog.jsonld",
            get(
                move |State(gateway): State<Arc<Gateway>>, request: Request| async move {
                    serve(&gateway, edge, &request, Format::JsonLd)
                },
            ),
        )
        .route(
            "/catalog.ttl",
            get(
                move |State(gateway): State<Arc<Gateway>>, request: Request| async move {
                    serve(&gateway, edge, &request, Format::Turtle)
                },
            ),
        )
}

#[derive(Debug, Clone, Copy)]
enum Format {
    JsonLd,
    Turtle,
}

/// The graph this request may see, after the limits (public) or authentication (members).
pub fn graph_for(gateway: &Gateway, edge: Edge, request: &Request) -> Result<Graph, GatewayError> {
    let catalog = gateway.catalog();
    super::opendata::admit(
        gateway,
        &catalog,
        edge,
        (request.headers(), request.extensions()),
        None,
    )?;
    let root = root(&catalog, edge, request)?;
    let datasets: Vec<&Dataset> = catalog
        .visible(edge)
        .map(|published| &published.dataset)
        .collect();
    let member = gateway.runtime().member.clone();
    Ok(describe(
        &root,
        &member,
        &datasets,
        &shared_services(gateway),
    ))
}

fn serve(gateway: &Gateway, edge: Edge, request: &Request, format: Format) -> Response {
    let action = match format {
        Format::JsonLd => "catalog_jsonld",
        Format::Turtle => "catalog_ttl",
    };
    metrics::counter!("datagate_opendata_requests_total", "action" => action, "edge" => edge_label(edge)).increment(1);
    let graph = match graph_for(gateway, edge, request) {
        Ok(graph) => graph,
        Err(error) => {
            metrics::counter!("datagate_refusals_total", "code" => error.code().as_str())
                .increment(1);
            return error.into_problem(None);
        }
    };
    let (content_type, body) = match format {
        Format::JsonLd => (
            "application/ld+json",
            serde_json::to_vec_pretty(&graph.to_jsonld()).unwrap_or_default(),
        ),
        Format::Turtle => ("text/turtle; charset=utf-8", graph.to_turtle().into_bytes()),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, cache_control(edge));
    headers.insert(header::VARY, HeaderValue::from_static("Host"));
    response
}

/// Shared caches may keep the public catalog a little while; members' stays private.
pub fn cache_control(edge: Edge) -> HeaderValue {
    HeaderValue::from_static(match edge {
        Edge::Public => "public, max-age=300",
        Edge::Members => "private, max-age=300",
    })
}

/// The edge as a metric label.
pub fn edge_label(edge: Edge) -> &'static str {
    match edge {
        Edge::Public => "public",
        Edge::Members => "members",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opendata::{Audience, Field, Licence, RawDataset, RawSource, Source};
    use std::path::PathBuf;

    fn sample(id: &str, audience: Audience) -> Dataset {
        let raw = RawDataset {
            id: id.to_owned(),
            title: "Danh sách \"trường học\" \\ cấp 1".to_owned(),
            title_en: Some("Primary schools".to_owned()),
            description: "Dòng một\nDòng hai\t<b>&</b>".to_owned(),
            description_en: None,
            publisher: "VN/GOV/000.00.00.G10".to_owned(),
            publisher_name: "Sở Giáo dục".to_owned(),
            licence: Licence {
                id: "cc-by-4.0".to_owned(),
                title: "CC BY 4.0".to_owned(),
                url: "https://creativecommons.org/licenses/by/4.0/".to_owned(),
            },
            update_frequency: Frequency::Quarterly,
            retention_months: 24,
            provenance: Provenance::Procedure,
            attribution: "Nguồn: Sở Giáo dục".to_owned(),
            classification: "open".to_owned(),
            audience,
            keywords: vec!["giáo dục".to_owned(), "trường học".to_owned()],
            fields: vec![Field {
                name: "code".to_owned(),
                kind: FieldType::Text,
                title: "Mã".to_owned(),
                description: None,
            }],
            key: "code".to_owned(),
            source: RawSource::Csv {
                path: PathBuf::from("schools.csv"),
            },
            rate_limit: None,
        };
        Dataset {
            publisher: raw.publisher.parse().expect("member"),
            raw,
            key: 0,
            source: Source::Csv {
                path: PathBuf::from("schools.csv"),
            },
            rate: (10, 20),
        }
    }

    fn root() -> Root {
        Root {
            origin: "https://data.example.gov.vn".to_owned(),
            prefix: "",
        }
    }

    #[test]
    fn turtle_strings_escape_quotes_backslashes_and_controls() {
        assert_eq!(turtle_string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(turtle_string("x\ny\rz\t"), r#""x\ny\rz\t""#);
        assert_eq!(turtle_string("\u{1}\u{7f}"), r#""\u0001\u007F""#);
        assert_eq!(turtle_string("Hà Nội"), "\"Hà Nội\"");
    }

    #[test]
    fn iris_percent_encode_what_turtle_forbids_and_keep_the_rest() {
        assert_eq!(
            iri("https://x.vn/a b<c>\"{|}^`\\"),
            "https://x.vn/a%20b%3Cc%3E%22%7B%7C%7D%5E%60%5C"
        );
        assert_eq!(iri("https://x.vn/d?id=1#f"), "https://x.vn/d?id=1#f");
        assert_eq!(iri("https://x.vn/\u{0}"), "https://x.vn/%00");
    }

    #[test]
    fn a_dataset_has_the_dcat_ap_properties_in_both_serialisations() {
        let dataset = sample("truong-hoc", Audience::Public);
        let member: MemberId = "VN/GOV/000.00.00.G10".parse().expect("member");
        let services = vec![SharedService {
            id: "VN/GOV/000.00.00.G10/population-db/citizen"
                .parse()
                .expect("service"),
            description: Some("Cơ sở dữ liệu \"dân cư\"".to_owned()),
        }];
        let graph = describe(&root(), &member, &[&dataset], &services);
        let turtle = graph.to_turtle();
        for expected in [
            "<https://data.example.gov.vn/catalog> a dcat:Catalog",
            "<https://data.example.gov.vn/dataset/truong-hoc> a dcat:Dataset",
            "dcterms:identifier \"truong-hoc\"",
            "dcterms:title \"Danh sách \\\"trường học\\\" \\\\ cấp 1\"@vi",
            "dcterms:title \"Primary schools\"@en",
            "dcterms:description \"Dòng một\\nDòng hai\\t<b>&</b>\"@vi",
            "dcat:keyword \"giáo dục\"@vi",
            "dcterms:license <https://creativecommons.org/licenses/by/4.0/>",
            "dcterms:accrualPeriodicity <http://publications.europa.eu/resource/authority/frequency/QUARTERLY>",
            "dcterms:provenance <https://data.example.gov.vn/provenance/procedure>",
            "dcterms:accrualPolicy <https://data.example.gov.vn/retention/P24M>",
            "rdf:value \"P24M\"^^xsd:duration",
            "dcat:downloadURL <https://data.example.gov.vn/dataset/truong-hoc.csv>",
            "dcat:mediaType <http://www.iana.org/assignments/media-types/text/csv>",
            "dcat:downloadURL <https://data.example.gov.vn/dataset/truong-hoc.json>",
            "dcat:endpointURL <https://data.example.gov.vn/api/3/action/>",
            "dcat:accessService <https://data.example.gov.vn/api/3/action/>",
            "<https://data.example.gov.vn/organization/vn-gov-000-00-00-g10> a foaf:Agent",
            "foaf:name \"Sở Giáo dục\"@vi",
            "<https://data.example.gov.vn/service/VN%2FGOV%2F000.00.00.G10%2Fpopulation-db%2Fcitizen> a dcat:DataService",
            "dcterms:description \"Cơ sở dữ liệu \\\"dân cư\\\"\"",
        ] {
            assert!(turtle.contains(expected), "missing {expected} in\n{turtle}");
        }
        // Every subject once; the agent shared by the catalog, the dataset and the service.
        let mut ids: Vec<&str> = graph.nodes.iter().map(|n| n.id.as_str()).collect();
        let count = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), count);

        let jsonld = graph.to_jsonld();
        assert_eq!(jsonld["@context"]["dcat"], "http://www.w3.org/ns/dcat#");
        let dataset = jsonld["@graph"]
            .as_array()
            .expect("graph")
            .iter()
            .find(|n| n["@type"][0] == "dcat:Dataset")
            .expect("a dataset");
        assert_eq!(dataset["dcterms:title"][1]["@language"], "en");
        assert_eq!(
            dataset["dcterms:accrualPeriodicity"][0]["@id"],
            "http://publications.europa.eu/resource/authority/frequency/QUARTERLY"
        );
        // The two serialisations carry the same number of statements.
        let statements: usize = graph
            .nodes
            .iter()
            .map(|n| n.types.len() + n.properties.len())
            .sum();
        let jsonld_statements: usize = jsonld["@graph"]
            .as_array()
            .expect("graph")
            .iter()
            .map(|n| {
                n.as_object()
                    .expect("node")
                    .iter()
                    .map(|(k, v)| match k.as_str() {
                        "@id" => 0,
                        _ => v.as_array().map_or(1, Vec::len),
                    })
                    .sum::<usize>()
            })
            .sum();
        assert_eq!(statements, jsonld_statements);
    }

    #[test]
    fn members_datasets_are_restricted_and_the_members_root_has_its_prefix() {
        let dataset = sample("noi-bo", Audience::Members);
        let member: MemberId = "VN/GOV/000.00.00.G10".parse().expect("member");
        let members = Root {
            origin: "https://10.0.0.1:8443".to_owned(),
            prefix: "/opendata/v1",
        };
        let turtle = describe(&members, &member, &[&dataset], &[]).to_turtle();
        assert!(
            turtle.contains("<https://10.0.0.1:8443/opendata/v1/dataset/noi-bo> a dcat:Dataset")
        );
        assert!(turtle.contains("access-right/RESTRICTED"));
        assert!(
            turtle.contains("dcat:landingPage <https://10.0.0.1:8443/opendata/v1/#dataset-noi-bo>")
        );
    }

    #[test]
    fn english_labels_exist_for_every_frequency_and_provenance() {
        for frequency in [
            Frequency::Daily,
            Frequency::Weekly,
            Frequency::Monthly,
            Frequency::Quarterly,
            Frequency::Annual,
            Frequency::Irregular,
            Frequency::Never,
        ] {
            assert!(!frequency_label(frequency, Language::En).is_empty());
            assert_ne!(
                frequency_label(frequency, Language::Vi),
                frequency_label(frequency, Language::En)
            );
        }
        assert_eq!(retention_label(1, Language::En), "1 month");
        assert_eq!(retention_label(36, Language::Vi), "36 tháng");
    }
}
