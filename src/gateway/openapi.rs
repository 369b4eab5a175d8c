//! OpenAPI 3.1 documents generated from what is configured, never written by hand.
//!
//! - On the **public listener** (`GET /openapi.json`): the CKAN actions and the downloads of
//!   the public datasets, each dataset's record schema from its declared fields. A stranger
//!   learns nothing about contracts, members' datasets or shared-data services.
//! - On the **consumer listener** (`GET /openapi.json`, for an authenticated information
//!   system): the operations its contracts allow (`/r1/{service}{path}`, the headers they
//!   need, the contract's response schema as published), the X-Road metadata calls for the
//!   providers it has contracts with, the once-only forms it may use, and the members'
//!   open-data tier when the node publishes one ([`consumer`]).
//! - For `getOpenAPI` (PR-MREST §5): one service's operations, as its caller may call them
//!   ([`service`]).
//!
//! Owns: the documents. Does not own: serving the routes they describe, nor deciding which
//! contracts a caller holds ([`super::metaservices::contracts_of`]).

use super::opendata::Edge;
use super::{Gateway, Runtime};
use crate::contract::{CompiledContract, SchemaSource};
use crate::identity::{ClientId, ServiceId};
use crate::opendata::FieldType;
use crate::pattern::OperationPattern;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

fn field_schema(kind: FieldType) -> Value {
    match kind {
        FieldType::Text => json!({"type": ["string", "null"]}),
        FieldType::Integer => json!({"type": ["integer", "null"]}),
        FieldType::Number => json!({"type": ["number", "null"]}),
        FieldType::Date => json!({"type": ["string", "null"], "format": "date"}),
    }
}

fn ckan_responses(result: Value) -> Value {
    let error = json!({"$ref": "#/components/responses/CkanError"});
    json!({
        "200": {"description": "CKAN success envelope", "content": {"application/json": {"schema": {
            "type": "object", "required": ["help", "success", "result"],
            "properties": {"help": {"type": "string"}, "success": {"const": true}, "result": result}
        }}}},
        "400": error, "403": error, "404": error, "409": error, "429": error, "503": error,
    })
}

fn query(name: &str, required: bool, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": required, "schema": schema, "description": description})
}

/// The public listener's document (`edge` public), or the members' open-data part.
pub fn open_data(gateway: &Gateway, edge: Edge, prefix: &str) -> Value {
    let catalog = gateway.catalog();
    let ids: Vec<String> = catalog.ids(edge);
    let mut records = Map::new();
    let mut paths = Map::new();
    let id_schema = json!({"type": "string", "enum": ids});
    let organizations: std::collections::BTreeSet<String> = catalog
        .visible(edge)
        .map(|published| super::opendata::organization_name(&published.dataset))
        .collect();
    let organization_schema = json!({"type": "string", "enum": organizations});
    let get = |parameters: Vec<Value>, result: Value, summary: &str| json!({"summary": summary, "parameters": parameters, "responses": ckan_responses(result)});
    let action = |name: &str| format!("{prefix}/api/3/action/{name}");
    paths.insert(
        action("package_list"),
        json!({"get": get(vec![], json!({"type": "array", "items": {"type": "string"}}), "Dataset ids")}),
    );
    paths.insert(
        action("package_show"),
        json!({"get": get(vec![query("id", true, id_schema.clone(), "dataset id")], json!({"$ref": "#/components/schemas/Package"}), "One dataset with its metadata")}),
    );
    paths.insert(
        action("package_search"),
        json!({"get": get(vec![
            query("q", false, json!({"type": "string"}), "words in title, description, keywords"),
            query("fq", false, json!({"type": "string"}), "field:value terms: organization, tags, license_id, res_format, name"),
            query("rows", false, json!({"type": "integer", "minimum": 0, "maximum": 1000}), "page size"),
            query("start", false, json!({"type": "integer", "minimum": 0}), "offset"),
            query("sort", false, json!({"type": "string", "enum": ["name asc", "name desc", "title_string asc", "title_string desc", "score desc"]}), "order"),
        ], json!({"type": "object", "required": ["count", "results"], "properties": {"count": {"type": "integer"}, "results": {"type": "array", "items": {"$ref": "#/components/schemas/Package"}}}}), "Search datasets")}),
    );
    paths.insert(
        action("organization_list"),
        json!({"get": get(vec![query("all_fields", false, json!({"type": "boolean"}), "whole organizations")], json!({"type": "array"}), "Publishers")}),
    );
    paths.insert(
        action("organization_show"),
        json!({"get": get(vec![query("id", true, organization_schema, "organization name")], json!({"type": "object"}), "One publisher")}),
    );
    paths.insert(
        action("resource_show"),
        json!({"get": get(vec![query("id", true, id_schema.clone(), "resource id (the dataset id)")], json!({"type": "object"}), "A dataset's table")}),
    );
    paths.insert(
        action("datastore_search"),
        json!({"get": get(vec![
            query("resource_id", true, id_schema.clone(), "the dataset id"),
            query("filters", false, json!({"type": "string"}), "JSON object: field → value or list of values"),
            query("q", false, json!({"type": "string", "maxLength": 200}), "text fields containing it"),
            query("fields", false, json!({"type": "string"}), "comma-separated field names"),
            query("sort", false, json!({"type": "string"}), "field asc|desc, …"),
            query("limit", false, json!({"type": "integer", "minimum": 0, "maximum": crate::opendata::MAX_PAGE_ROWS}), "rows"),
            query("offset", false, json!({"type": "integer", "minimum": 0, "maximum": super::opendata::MAX_OFFSET}), "rows skipped"),
            query("include_total", false, json!({"type": "boolean"}), "count the matches"),
        ], json!({"type": "object", "required": ["resource_id", "fields", "records"], "properties": {
            "resource_id": {"type": "string"}, "fields": {"type": "array"},
            "records": {"type": "array", "items": {"type": "object"}}, "total": {"type": "integer"},
            "limit": {"type": "integer"}, "offset": {"type": "integer"}}}), "Rows of a dataset")}),
    );
    for (id, fields) in catalog.schemas(edge) {
        let properties: Map<String, Value> = fields
            .iter()
            .map(|(name, kind)| (name.clone(), field_schema(*kind)))
            .collect();
        records.insert(
            format!("Record_{}", id.replace('-', "_")),
            json!({"type": "object", "properties": properties}),
        );
    }
    let files: Vec<String> = ids
        .iter()
        .flat_map(|id| [format!("{id}.csv"), format!("{id}.json")])
        .collect();
    paths.insert(
        format!("{prefix}/dataset/{{file}}"),
        json!({"get": {
            "summary": "A whole dataset, streamed (CSV or a JSON array of records)",
            "parameters": [{"name": "file", "in": "path", "required": true, "schema": {"type": "string", "enum": files}}],
            "responses": {
                "200": {"description": "the dataset", "headers": {"ETag": {"schema": {"type": "string"}}},
                        "content": {"text/csv": {"schema": {"type": "string"}}, "application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}},
                "304": {"description": "not modified (If-None-Match)"},
                "404": {"$ref": "#/components/responses/Problem"},
                "429": {"$ref": "#/components/responses/Problem"},
            }
        }}),
    );
    let mut schemas = records;
    schemas.insert(
        "Package".into(),
        json!({"type": "object", "required": ["id", "name", "title", "license_id", "resources", "extras"], "properties": {
            "id": {"type": "string"}, "name": {"type": "string"}, "title": {"type": "string"},
            "notes": {"type": "string"}, "license_id": {"type": "string"}, "resources": {"type": "array"},
            "extras": {"type": "array", "items": {"type": "object", "properties": {"key": {"type": "string"}, "value": {"type": "string"}}}}}}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Open data (CKAN Action API subset and downloads)",
            "version": "1",
            "description": "Generated from this node's configured datasets.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {
                "CkanError": {"description": "CKAN error envelope", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["success", "error"],
                    "properties": {"success": {"const": false}, "error": {"type": "object", "required": ["__type", "code"]}}}}}},
                "Problem": {"description": "RFC 9457 problem", "content": {"application/problem+json": {"schema": {
                    "type": "object", "required": ["code", "status"]}}}},
            },
        },
    })
}

// ---------------------------------------------------------------------------
// The consumer listener: what one information system may call
// ---------------------------------------------------------------------------

/// The path template of an operation pattern after the service code (`/` when none).
fn template(pattern: &OperationPattern) -> String {
    let text = pattern.to_string();
    text.split_once(' ')
        .map_or_else(|| "/".to_owned(), |(_, path)| path.to_owned())
}

/// The X-Road REST path of an operation: `/r1/{service}` and the template (none for `/`:
/// the gateway refuses a trailing `/`).
fn exchange_path(service: &ServiceId, template: &str) -> String {
    if template == "/" {
        format!("/r1/{service}")
    } else {
        format!("/r1/{service}{template}")
    }
}

/// The query parameters the local adapter's operation declares for `pattern` (none for
/// another member's service: its gateway decides).
fn declared_query(
    runtime: &Runtime,
    service: &ServiceId,
    pattern: &OperationPattern,
) -> Vec<String> {
    // A concrete path the pattern matches: every `{parameter}` filled with one segment.
    let template = template(pattern);
    let sample: Vec<&str> = template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "x"
            } else {
                segment
            }
        })
        .collect();
    let sample = sample.join("/");
    runtime
        .services
        .get(service)
        .and_then(|backend| backend.adapter.spec.route(pattern.method(), &sample))
        .map(|(operation, _)| operation.query.clone())
        .unwrap_or_default()
}

/// The schema a published contract carries inline (compile turns files into inline).
fn inline_schema(source: Option<&SchemaSource>) -> Option<&Map<String, Value>> {
    match source {
        Some(SchemaSource::Inline(map)) => Some(map),
        _ => None,
    }
}

fn header(name: &str, required: bool, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "header", "required": required, "schema": schema, "description": description})
}

/// The headers every call on the consumer listener may carry, for `client`.
fn caller_headers(client: &ClientId) -> Vec<Value> {
    vec![
        header(
            "X-Road-Client",
            true,
            json!({"type": "string", "const": client.to_string()}),
            "the calling subsystem, bound to the connection's client certificate by the registry",
        ),
        header(
            "X-Road-Id",
            false,
            json!({"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"}),
            "the message id; generated when absent, echoed in the answer",
        ),
    ]
}

/// One operation of `/r1/…`, as the contracts that allow it to `client` require it.
fn exchange_operation(
    runtime: &Runtime,
    client: &ClientId,
    service: &ServiceId,
    pattern: &OperationPattern,
    contracts: &[&CompiledContract],
    operation_id: String,
) -> Value {
    let mut parameters: Vec<Value> = pattern
        .param_names()
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    for name in declared_query(runtime, service, pattern) {
        parameters.push(query(
            &name,
            false,
            json!({"type": "string"}),
            "declared by the service's operation",
        ));
    }
    parameters.extend(caller_headers(client));
    // Every contract names purposes: one of them is required; otherwise any purpose code may go.
    let purposes: BTreeSet<&str> = contracts
        .iter()
        .flat_map(|contract| contract.purposes.iter().map(String::as_str))
        .collect();
    if contracts
        .iter()
        .all(|contract| !contract.purposes.is_empty())
    {
        parameters.push(header(
            "X-Purpose",
            true,
            json!({"type": "string", "enum": purposes}),
            "the purpose of the request: one the contract allows",
        ));
    } else {
        parameters.push(header(
            "X-Purpose",
            false,
            json!({"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}),
            "the purpose code of the request",
        ));
    }
    if let Some(level) = contracts.iter().filter_map(|c| c.assurance_level).max() {
        let level = match level {
            crate::contract::AssuranceLevel::Medium => "medium",
            crate::contract::AssuranceLevel::High => "high",
        };
        parameters.push(header(
            "X-Citizen-Assertion",
            true,
            json!({"type": "string"}),
            &format!(
                "the citizen's assertion (a JWS of a trusted identity provider) at level {level} \
                 or above, issued to the calling subsystem, consenting to {service}, about the \
                 request's data subject"
            ),
        ));
    }
    parameters.push(header(
        "X-Road-UserId",
        false,
        json!({"type": "string"}),
        "the end user, forwarded between gateways",
    ));
    parameters.push(header(
        "X-Road-Issue",
        false,
        json!({"type": "string"}),
        "the case or procedure code",
    ));

    let response_schema = contracts
        .iter()
        .find_map(|contract| inline_schema(contract.published.response_schema.as_ref()))
        .map_or_else(
            || json!({"type": "object"}),
            |schema| Value::Object(schema.clone()),
        );
    let mut operation = json!({
        "operationId": operation_id,
        "summary": contracts
            .iter()
            .find_map(|contract| contract.published.description.clone())
            .unwrap_or_else(|| format!("{} {} of {service}", pattern.method(), template(pattern))),
        "tags": [service.to_string()],
        "parameters": parameters,
        "responses": {
            "200": {
                "description": "the provider's answer, checked against the contract's response schema and projected to its allowed fields",
                "headers": {
                    "X-Road-Id": {"schema": {"type": "string"}},
                    "X-Road-Request-Hash": {"schema": {"type": "string"}},
                    "X-Road-Service": {"schema": {"type": "string"}},
                },
                "content": {"application/json": {"schema": response_schema}},
            },
            "default": {"$ref": "#/components/responses/Problem"},
        },
        "x-datagate-contracts": contracts.iter().map(|contract| json!({
            "id": contract.id,
            "legalBasis": contract.legal_basis,
            "classification": contract.classification,
            "allowedFields": contract.published.allowed_fields,
            "purposes": contract.purposes.iter().collect::<BTreeSet<_>>(),
            "assuranceLevel": contract.assurance_level,
        })).collect::<Vec<_>>(),
    });
    if super::provider::method_takes_body(pattern.method()) {
        let request_schema = contracts
            .iter()
            .find_map(|contract| inline_schema(contract.published.request_schema.as_ref()));
        let body = request_schema
            .and_then(|schema| schema.get("properties"))
            .and_then(|properties| properties.get("body"))
            .cloned()
            .unwrap_or_else(|| json!({"type": "object"}));
        let required = request_schema
            .and_then(|schema| schema.get("required"))
            .and_then(Value::as_array)
            .is_some_and(|names| names.iter().any(|name| name == "body"));
        operation["requestBody"] = json!({
            "required": required,
            "content": {"application/json": {"schema": body}},
        });
    }
    operation
}

/// The `/r1/…` operations `contracts` (the caller's, in force) allow, merged per path and
/// method; deterministic: paths and methods sorted, operation ids numbered in that order.
fn exchange_paths(
    runtime: &Runtime,
    client: &ClientId,
    contracts: &[Arc<CompiledContract>],
) -> Map<String, Value> {
    type Allowed<'c> = (
        &'c ServiceId,
        &'c OperationPattern,
        Vec<&'c CompiledContract>,
    );
    let mut allowed: BTreeMap<String, BTreeMap<String, Allowed<'_>>> = BTreeMap::new();
    for contract in contracts {
        for pattern in &contract.operations {
            let path = exchange_path(&contract.service, &template(pattern));
            allowed
                .entry(path)
                .or_default()
                .entry(pattern.method().as_str().to_ascii_lowercase())
                .or_insert_with(|| (&contract.service, pattern, Vec::new()))
                .2
                .push(contract);
        }
    }
    let mut paths = Map::new();
    let mut number = 0;
    for (path, methods) in allowed {
        let mut item = Map::new();
        for (method, (service, pattern, contracts)) in methods {
            number += 1;
            let id = format!("op{number}_{}_{method}", service.code);
            item.insert(
                method,
                exchange_operation(runtime, client, service, pattern, &contracts, id),
            );
        }
        paths.insert(path, Value::Object(item));
    }
    paths
}

/// The X-Road metadata calls (PR-MREST) for each provider subsystem `contracts` name.
fn metadata_paths(
    paths: &mut Map<String, Value>,
    client: &ClientId,
    contracts: &[Arc<CompiledContract>],
) {
    let mut providers: BTreeMap<&ClientId, BTreeSet<&str>> = BTreeMap::new();
    for contract in contracts {
        providers
            .entry(&contract.service.provider)
            .or_default()
            .insert(contract.service.code.as_str());
    }
    let list = |summary: &str, id: String| {
        json!({"get": {
            "operationId": id,
            "summary": summary,
            "tags": ["metadata"],
            "parameters": caller_headers(client),
            "responses": {
                "200": {"description": "services of the provider", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/XRoadServiceList"}}}},
                "default": {"$ref": "#/components/responses/Problem"},
            },
        }})
    };
    for (number, (provider, codes)) in providers.into_iter().enumerate() {
        paths.insert(
            format!("/r1/{provider}/listMethods"),
            list("Services of the provider the caller may know, with every endpoint they offer (PR-MREST §4)", format!("meta{number}_listMethods")),
        );
        paths.insert(
            format!("/r1/{provider}/allowedMethods"),
            list("Services of the provider with the endpoints the caller's contracts allow (PR-MREST §4)", format!("meta{number}_allowedMethods")),
        );
        let mut parameters = vec![query(
            "serviceCode",
            true,
            json!({"type": "string", "enum": codes}),
            "the service whose description is wanted",
        )];
        parameters.extend(caller_headers(client));
        paths.insert(
            format!("/r1/{provider}/getOpenAPI"),
            json!({"get": {
                "operationId": format!("meta{number}_getOpenAPI"),
                "summary": "The OpenAPI description of one service, as the caller may call it (PR-MREST §5)",
                "tags": ["metadata"],
                "parameters": parameters,
                "responses": {
                    "200": {"description": "an OpenAPI 3.1 document", "content": {"application/json": {"schema": {"type": "object"}}}},
                    "default": {"$ref": "#/components/responses/Problem"},
                },
            }}),
        );
    }
}

/// The once-only forms `client` may use: preview and fill.
fn form_paths(paths: &mut Map<String, Value>, runtime: &Runtime, client: &ClientId) {
    for form in runtime
        .forms
        .iter()
        .filter(|form| form.consumers.contains(client))
    {
        let level = match form.assurance_level {
            crate::contract::AssuranceLevel::Medium => "medium",
            crate::contract::AssuranceLevel::High => "high",
        };
        let mut fill_parameters = caller_headers(client);
        fill_parameters.push(header(
            "X-Citizen-Assertion",
            true,
            json!({"type": "string"}),
            &format!(
                "the citizen's assertion at level {level} or above, consenting to form {}",
                form.id
            ),
        ));
        paths.insert(
            format!("/autofill/v1/{}", form.id),
            json!({
                "get": {
                    "operationId": format!("form_{}_preview", form.id),
                    "summary": format!("Preview of the form “{}”: its fields, sources and contracts, no data", form.title),
                    "tags": ["autofill"],
                    "parameters": caller_headers(client),
                    "responses": {
                        "200": {"description": "the preview", "content": {"application/json": {"schema": {"type": "object", "required": ["form", "sources", "fields"]}}}},
                        "default": {"$ref": "#/components/responses/Problem"},
                    },
                },
                "post": {
                    "operationId": format!("form_{}_fill", form.id),
                    "summary": format!("Fill the form “{}” for the citizen who signed in", form.title),
                    "tags": ["autofill"],
                    "parameters": fill_parameters,
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["subject"], "additionalProperties": false,
                        "properties": {"subject": {"type": "string", "pattern": "^[0-9]{12}$"}},
                    }}}},
                    "responses": {
                        "200": {"description": "every field with its value and provenance, or ask_citizen and why", "content": {"application/json": {"schema": {"type": "object", "required": ["form", "complete", "fields", "sources"]}}}},
                        "default": {"$ref": "#/components/responses/Problem"},
                    },
                },
            }),
        );
    }
}

/// The components every consumer document shares: the problem answer and X-Road's list.
fn consumer_components() -> (Map<String, Value>, Map<String, Value>) {
    let mut schemas = Map::new();
    schemas.insert(
        "Problem".into(),
        json!({"type": "object", "required": ["type", "title", "status", "code", "messageId"], "properties": {
            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
            "code": {"type": "string"}, "detail": {"type": "string"},
            "origin": {"type": "string", "enum": ["consumer", "upstream", "internal"]},
            "retryable": {"type": "boolean"}, "messageId": {"type": "string"}}}),
    );
    schemas.insert(
        "XRoadServiceList".into(),
        json!({"type": "object", "required": ["service"], "properties": {"service": {"type": "array", "items": {
            "type": "object",
            "required": ["object_type", "xroad_instance", "member_class", "member_code", "subsystem_code", "service_code", "service_type", "endpoint_list"],
            "properties": {
                "object_type": {"const": "SERVICE"}, "xroad_instance": {"type": "string"},
                "member_class": {"type": "string"}, "member_code": {"type": "string"},
                "subsystem_code": {"type": "string"}, "service_code": {"type": "string"},
                "service_type": {"type": "string", "enum": ["REST", "OPENAPI"]},
                "endpoint_list": {"type": "array", "items": {"type": "object", "required": ["method", "path"], "properties": {
                    "method": {"type": "string"}, "path": {"type": "string"}}}},
            }}}}}),
    );
    let mut responses = Map::new();
    responses.insert(
        "Problem".into(),
        json!({"description": "RFC 9457 problem with a stable code (docs/ERRORS.md)", "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}),
    );
    (schemas, responses)
}

fn document(
    title: String,
    description: &str,
    paths: Map<String, Value>,
    schemas: Map<String, Value>,
    responses: Map<String, Value>,
) -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1", "description": description},
        "paths": paths,
        "components": {"schemas": schemas, "responses": responses},
    })
}

/// The consumer listener's document for `client`, from `contracts` (its contracts in force,
/// in a deterministic order): its `/r1/…` operations, the metadata calls for its providers,
/// its forms, and the members' open-data tier when there is one. Nothing of another
/// caller's contracts or forms.
pub fn consumer(
    gateway: &Gateway,
    runtime: &Runtime,
    client: &ClientId,
    contracts: &[Arc<CompiledContract>],
) -> Value {
    let mut paths = exchange_paths(runtime, client, contracts);
    metadata_paths(&mut paths, client, contracts);
    form_paths(&mut paths, runtime, client);
    let (mut schemas, mut responses) = consumer_components();
    if !gateway.catalog().ids(Edge::Members).is_empty() {
        let open = open_data(gateway, Edge::Members, "/opendata/v1");
        let part = |key: &str| {
            open.get(key)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let components = open.get("components").cloned().unwrap_or_default();
        let component = |key: &str| {
            components
                .get(key)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        for (path, item) in part("paths") {
            paths.entry(path).or_insert(item);
        }
        for (name, schema) in component("schemas") {
            schemas.entry(name).or_insert(schema);
        }
        for (name, response) in component("responses") {
            responses.entry(name).or_insert(response);
        }
    }
    document(
        format!("datagate consumer API for {client}"),
        "Generated from this node's contracts, forms and datasets for the calling information system.",
        paths,
        schemas,
        responses,
    )
}

/// The description of one service (`getOpenAPI`, PR-MREST §5): the operations `contracts`
/// (the caller's in force) allow on it.
pub fn service(
    runtime: &Runtime,
    client: &ClientId,
    service: &ServiceId,
    contracts: &[Arc<CompiledContract>],
) -> Value {
    let theirs: Vec<Arc<CompiledContract>> = contracts
        .iter()
        .filter(|contract| contract.service == *service)
        .cloned()
        .collect();
    let (schemas, responses) = consumer_components();
    document(
        format!("{service}"),
        "Generated from this node's contracts for the calling information system.",
        exchange_paths(runtime, client, &theirs),
        schemas,
        responses,
    )
}
