//! The route table: every route of the API with its access level and summary. The auth layer
//! reads the access level from here and `/v1/openapi.json` is generated from it; a test checks
//! that the router serves exactly these routes.

use serde_json::{Value, json};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health checks).
    Public,
    /// The API key (or the admin key).
    Data,
    /// The admin key (`BARQ_ADMIN_API_KEY`, or the API key when no admin key is set):
    /// tiering, compaction and drop.
    Admin,
}

/// One route.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub method: &'static str,
    /// The path template, axum style (`/v1/collections/{name}`).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
    /// The request body, if any: `required` or `optional`.
    pub body: Option<&'static str>,
}

const fn r(
    method: &'static str,
    path: &'static str,
    access: Access,
    body: Option<&'static str>,
    summary: &'static str,
) -> RouteSpec {
    RouteSpec {
        method,
        path,
        access,
        summary,
        body,
    }
}

use Access::{Admin, Data, Public};
const REQ: Option<&str> = Some("required");
const OPT: Option<&str> = Some("optional");

/// Every route.
#[rustfmt::skip]
pub const ROUTES: &[RouteSpec] = &[
    r("GET", "/healthz", Public, None, "The process is up"),
    r("GET", "/readyz", Public, None, "Whether the node serves: ready, or degraded with the reason while the cold store does not answer (200); 503 when poisoned"),
    r("GET", "/metrics", Data, None, "Metrics in the Prometheus (OpenMetrics) text format"),
    r("GET", "/v1/openapi.json", Data, None, "This document"),
    r("GET", "/v1/collections", Data, None, "List collections"),
    r("GET", "/v1/stats", Data, None, "Statistics of every collection, and the data directory"),
    r("POST", "/v1/collections", Data, REQ, "Create a collection: {name, dimension, metric, indexed_fields}"),
    r("GET", "/v1/collections/{name}", Data, None, "A collection's settings and statistics, with segments and bytes per tier"),
    r("DELETE", "/v1/collections/{name}", Admin, None, "Drop a collection and all its documents"),
    r("POST", "/v1/collections/{name}/documents", Data, REQ, "Insert or replace documents: {documents: [{id, vector, payload}]}"),
    r("GET", "/v1/collections/{name}/documents/{id}", Data, None, "Get a document"),
    r("DELETE", "/v1/collections/{name}/documents/{id}", Data, None, "Delete a document"),
    r("POST", "/v1/collections/{name}/delete-documents", Data, REQ, "Delete documents: {ids: [...]}"),
    r("POST", "/v1/collections/{name}/search", Data, REQ, "The k nearest neighbours of a vector among the documents a filter matches: {vector, k, filter, with_payload, exact, nprobe, recall, explain}"),
    r("POST", "/v1/collections/{name}/count", Data, OPT, "Count the live documents a filter matches (every live document without one): {filter}"),
    r("POST", "/v1/collections/{name}/indexed-fields", Admin, REQ, "Index more payload fields: {indexed_fields: [{path, type}]}; existing segments pick them up at their next compaction or index build"),
    r("POST", "/v1/collections/{name}/flush", Data, None, "Write the collection's in-memory documents to a segment"),
    r("POST", "/v1/collections/{name}/compact", Admin, OPT, "Merge the collection's segments into one ({async})"),
    r("POST", "/v1/collections/{name}/index", Admin, OPT, "Build the missing IVF indexes of the collection's large hot segments now ({async})"),
    r("GET", "/v1/collections/{name}/segments", Data, None, "The collection's sealed segments: tier, size, pins"),
    r("POST", "/v1/collections/{name}/offload", Admin, OPT, "Move sealed segments to the cold tier ({segments, async})"),
    r("POST", "/v1/collections/{name}/hydrate", Admin, OPT, "Bring cold segments back to the hot tier ({segments, async})"),
    r("POST", "/v1/collections/{name}/pin", Admin, OPT, "Pin the collection, or one segment ({segment}), to the hot tier"),
    r("POST", "/v1/collections/{name}/unpin", Admin, OPT, "Undo a pin ({segment})"),
    r("GET", "/v1/collections/{name}/tiering", Data, None, "The collection's tiering policy overrides"),
    r("PUT", "/v1/collections/{name}/tiering", Admin, REQ, "Replace the collection's tiering policy overrides"),
    r("GET", "/v1/tiering/status", Data, None, "Segments and bytes per tier and collection, moves, errors, counters, cold store reachability"),
    r("POST", "/v1/tiering/maintenance", Admin, OPT, "Run a maintenance pass now ({async})"),
    r("GET", "/v1/operations", Data, None, "Asynchronous operations, newest first"),
    r("GET", "/v1/operations/{id}", Data, None, "One asynchronous operation: state, progress, result"),
];

/// The access level of a matched route (`None` for a path that is not a route).
pub fn access(method: &str, path: &str) -> Option<Access> {
    // axum answers HEAD with the GET handler.
    let method = if method == "HEAD" { "GET" } else { method };
    ROUTES
        .iter()
        .find(|r| r.method == method && r.path == path)
        .map(|r| r.access)
}

/// The OpenAPI 3.1 document of [`ROUTES`].
pub fn openapi() -> Value {
    let mut paths = serde_json::Map::new();
    for route in ROUTES {
        let params: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = json!({
            "summary": route.summary,
            "operationId": operation_id(route),
            "parameters": params,
            "responses": {
                "200": {"description": "Success", "content": {"application/json": {"schema": {"type": "object"}}}},
                "default": {"description": "An error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
        if let Some(kind) = route.body {
            let schema = match route.path.rsplit('/').next() {
                Some("search") => json!({"$ref": "#/components/schemas/SearchRequest"}),
                Some("count") => json!({
                    "type": "object",
                    "properties": {"filter": {"$ref": "#/components/schemas/Filter"}}
                }),
                _ => json!({"type": "object"}),
            };
            op["requestBody"] = json!({
                "required": kind == "required",
                "content": {"application/json": {"schema": schema}}
            });
        }
        if route.access == Access::Public {
            op["security"] = json!([]);
        }
        if route.access == Access::Admin {
            op["description"] =
                json!("Needs the admin key when BARQ_ADMIN_API_KEY (or BARQ_API_KEY) is set.");
        }
        let entry = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        entry[route.method.to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Barq DB", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Filter": filter_schema(),
                "SearchRequest": {
                    "type": "object",
                    "required": ["vector"],
                    "properties": {
                        "vector": {"description": "An array of numbers, or base64 of little-endian f32", "oneOf": [{"type": "array", "items": {"type": "number"}}, {"type": "string"}]},
                        "k": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10},
                        "filter": {"$ref": "#/components/schemas/Filter"},
                        "with_payload": {"type": "boolean"},
                        "exact": {"type": "boolean"},
                        "nprobe": {"type": "integer", "minimum": 1},
                        "recall": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                        "explain": {"type": "boolean"}
                    }
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}}
                    }}
                }
            }
        }
    })
}

fn operation_id(route: &RouteSpec) -> String {
    let mut id = route.method.to_ascii_lowercase();
    for seg in route
        .path
        .split('/')
        .filter(|s| !s.is_empty() && *s != "v1")
    {
        id.push('_');
        id.push_str(
            seg.trim_matches(|c| c == '{' || c == '}')
                .replace(['.', '-'], "_")
                .as_str(),
        );
    }
    id
}

/// The JSON Schema of a filter (see `barq_core::filter`).
fn filter_schema() -> Value {
    let key =
        json!({"type": "string", "description": "A dot-separated payload path, e.g. meta.lang"});
    let scalar = json!({"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "boolean"}]});
    let condition = json!({"oneOf": [
        {"type": "object", "required": ["key", "match"], "additionalProperties": false, "properties": {
            "key": key,
            "match": {"oneOf": [
                {"type": "object", "required": ["value"], "additionalProperties": false, "properties": {"value": scalar}},
                {"type": "object", "required": ["any"], "additionalProperties": false, "properties": {"any": {"type": "array", "items": scalar, "maxItems": barq_core::filter::MAX_FILTER_VALUES}}}
            ]}
        }},
        {"type": "object", "required": ["key", "range"], "additionalProperties": false, "properties": {
            "key": key,
            "range": {"type": "object", "additionalProperties": false, "minProperties": 1, "properties": {
                "gt": {"type": "number"}, "gte": {"type": "number"}, "lt": {"type": "number"}, "lte": {"type": "number"}
            }}
        }},
        {"type": "object", "required": ["exists"], "additionalProperties": false, "properties": {"exists": {"type": "object", "required": ["key"], "properties": {"key": key}}}},
        {"type": "object", "required": ["is_null"], "additionalProperties": false, "properties": {"is_null": {"type": "object", "required": ["key"], "properties": {"key": key}}}},
        {"type": "object", "required": ["has_id"], "additionalProperties": false, "properties": {"has_id": {"type": "array", "items": {"type": "string"}, "maxItems": barq_core::filter::MAX_FILTER_VALUES}}},
        {"$ref": "#/components/schemas/Filter"}
    ]});
    json!({
        "type": "object",
        "description": format!("must: every condition holds; should: at least one does; must_not: none does. Nested at most {} levels, at most {} conditions.", barq_core::filter::MAX_FILTER_DEPTH, barq_core::filter::MAX_FILTER_CONDITIONS),
        "additionalProperties": false,
        "properties": {
            "must": {"type": "array", "items": condition},
            "should": {"type": "array", "items": condition},
            "must_not": {"type": "array", "items": condition}
        }
    })
}
