//! OpenAPI 3.1 documents generated from what is configured, never written by hand.
//!
//! - On the **public listener** (`GET /openapi.json`): the CKAN actions and the downloads of
//!   the public datasets, each dataset's record schema from its declared fields. A stranger
//!   learns nothing about contracts, members' datasets or shared-data services.
//! - On the **consumer listener** (`GET /openapi.json`, for an authenticated information
//!   system): the operations its contracts allow (`/r1/{service}{path}`, the headers they
//!   need, the contract's response schema as published), and the once-only forms it may use.
//!
//! Owns: the documents. Does not own: serving the routes they describe.

use super::Gateway;
use super::opendata::Edge;
use crate::opendata::FieldType;
use serde_json::{Map, Value, json};

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
        json!({"get": get(vec![query("id", true, json!({"type": "string"}), "organization name")], json!({"type": "object"}), "One publisher")}),
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
