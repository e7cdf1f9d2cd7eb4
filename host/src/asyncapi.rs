//! The AsyncAPI 3.0 document of the WebSocket API, assembled from whatever
//! plugins are loaded.
//!
//! [`build`] is a pure function of the routes (their info and schemas, plus
//! the example topics their plugins resolved) and the server address, so it
//! is unit-tested without a plugin. [`document`] gathers those inputs from a
//! running [`Host`]; it runs per request (a few microseconds per route), so
//! the document always matches the route table, including after a reload.
//!
//! Layout of the document:
//!
//! * one server, and one channel `ws` at `/api/v1/ws` carrying every frame;
//! * per route `<r>`: operations `<r>.subscribe` and `<r>.unsubscribe`
//!   (the client sends, the host replies with `<r>.<op>.response`) and
//!   `<r>.update` (the host sends), each message being the whole frame
//!   (envelope plus the route's own request or data schema);
//! * host frames `error`, `route.removed` and `routes.changed`.
//!
//! Plugin schemas are JSON Schema (2020-12 or 07) with their own `$defs`.
//! AsyncAPI resolves `$ref` against the whole document, so each schema is
//! moved into `components.schemas` under route-prefixed names
//! (`<route>.request`, `<route>.data`, `<route>.<Def>`) and its references are
//! rewritten to match: two plugins may both define `$defs/Status` and keep
//! distinct types. Host-defined schemas have no dot in their names; route
//! ones always do, so the two never collide either.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, header},
};
use serde_json::{Map, Value, json};

use crate::{plugin::RouteInfo, protocol::Problem, server::Host};

/// The channel every frame travels on.
pub const CHANNEL: &str = "ws";
/// Where that channel is served.
pub const WS_PATH: &str = "/api/v1/ws";
const SERVER: &str = "ws-router";

/// What the document needs to know about one route.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    pub info: RouteInfo,
    pub request_schema: Value,
    pub data_schema: Value,
    /// The topic the example request resolves to, when the plugin answered;
    /// otherwise examples show a placeholder topic.
    pub example_topic: Option<String>,
    /// The routing keys of the example request, when they differ from the topic.
    pub example_keys: Option<Vec<String>>,
    /// What validating a non-object request reports (a real error example).
    pub example_problems: Vec<Problem>,
}

/// `GET /api/v1/ws/asyncapi.json`.
pub async fn handler(State(host): State<Arc<Host>>, headers: HeaderMap) -> Json<Value> {
    // The document names the address the client reached us by; behind a
    // proxy or with `--listen 0.0.0.0:...` the listen address is useless.
    let listen = host.config.listen.to_string();
    let server_host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or(&listen);
    Json(document(&host, server_host).await)
}

/// The document for the routes `host` serves right now.
pub async fn document(host: &Host, server_host: &str) -> Value {
    let table = host.routes.snapshot();
    let mut entries = Vec::with_capacity(table.len());
    for plugin in table.values() {
        let request = example_value(&plugin.request_schema, false);
        let resolved = match serde_json::to_string(&request) {
            Ok(text) => plugin.topics(&text, &host.config.limits).await.ok(),
            Err(_) => None,
        };
        let example_keys = resolved.as_ref().and_then(|s| {
            (s.keys.len() != 1 || s.keys[0] != s.topic)
                .then(|| s.keys.iter().map(|k| k.to_string()).collect())
        });
        entries.push(RouteEntry {
            info: plugin.info.clone(),
            request_schema: plugin.request_schema.clone(),
            data_schema: plugin.data_schema.clone(),
            example_topic: resolved.map(|s| s.topic.to_string()),
            example_keys,
            example_problems: plugin
                .validate_request(&json!([]))
                .err()
                .unwrap_or_default(),
        });
    }
    build(&entries, server_host)
}

/// The AsyncAPI document for `routes`, served at `server_host` (`host:port`).
pub fn build(routes: &[RouteEntry], server_host: &str) -> Value {
    let mut schemas = Schemas::default();
    let mut messages = Map::new();
    let mut operations = Map::new();

    for route in routes {
        add_route(route, &mut schemas, &mut messages, &mut operations);
    }
    add_host_frames(&mut messages, &mut operations);
    schemas.map.extend(host_schemas());

    let channel_messages: Map<String, Value> = messages
        .keys()
        .map(|k| {
            (
                k.clone(),
                json!({ "$ref": format!("#/components/messages/{k}") }),
            )
        })
        .collect();

    let mut tags: Vec<&str> = routes
        .iter()
        .flat_map(|r| r.info.tags.iter().map(String::as_str))
        .collect();
    tags.sort_unstable();
    tags.dedup();
    let route_list: Vec<Value> = routes
        .iter()
        .map(|r| {
            json!({
                "name": r.info.name,
                "version": r.info.version,
                "description": r.info.description,
                "tags": r.info.tags,
            })
        })
        .collect();

    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "ws-router",
            "version": env!("CARGO_PKG_VERSION"),
            "description": info_description(routes),
            "tags": tags.iter().map(|t| json!({ "name": t })).collect::<Vec<_>>(),
            "x-routes": route_list,
        },
        "defaultContentType": "application/json",
        "servers": {
            SERVER: {
                "host": server_host,
                "protocol": "ws",
                "description": "The ws-router host. Every route is served on one WebSocket.",
            }
        },
        "channels": {
            CHANNEL: {
                "address": WS_PATH,
                "title": "WebSocket",
                "description": "One WebSocket carries every route. Each frame is one JSON text message \
                    `{\"type\": \"<route>.<operation>\", \"payload\": ...}`.",
                "servers": [{ "$ref": format!("#/servers/{SERVER}") }],
                "messages": channel_messages,
            }
        },
        "operations": operations,
        "components": {
            "schemas": schemas.map,
            "messages": messages,
        },
    })
}

fn info_description(routes: &[RouteEntry]) -> String {
    let mut text = String::from(
        "WebSocket routes served by ws-router, assembled from the loaded plugins.\n\n\
         Send `{\"type\":\"<route>.subscribe\",\"payload\":<request>}` to subscribe and \
         `<route>.unsubscribe` with the same request to stop; the host answers \
         `<route>.<op>.response` and then sends `<route>.update` frames whose `payload.topic` \
         names the subscription.\n\nRoutes:\n",
    );
    for r in routes {
        text.push_str(&format!(
            "\n* `{}` {}: {}",
            r.info.name, r.info.version, r.info.description
        ));
    }
    if routes.is_empty() {
        text.push_str("\n(none loaded)");
    }
    text
}

/// A frame schema: `{"type": <const>, "payload": <payload>}`.
fn envelope(ty: &str, payload: Value) -> Value {
    json!({
        "type": "object",
        "required": ["type", "payload"],
        "properties": {
            "type": { "type": "string", "const": ty },
            "payload": payload,
        },
    })
}

fn schema_ref(key: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{key}") })
}

fn add_route(
    route: &RouteEntry,
    schemas: &mut Schemas,
    messages: &mut Map<String, Value>,
    operations: &mut Map<String, Value>,
) {
    let name = &route.info.name;
    let request_key = schemas.import(name, "request", &route.request_schema);
    let data_key = schemas.import(name, "data", &route.data_schema);

    let request = example_value(&route.request_schema, false);
    let data = example_value(&route.data_schema, true);
    let topic = route
        .example_topic
        .clone()
        .unwrap_or_else(|| format!("{name}:<topic>"));
    let x_route = json!({ "name": name, "version": route.info.version });
    let tags: Vec<Value> = route
        .info
        .tags
        .iter()
        .map(|t| json!({ "name": t }))
        .collect();
    let ok_reply = |op: &str, message: &str, keys: Option<&Vec<String>>| {
        let mut reply = json!({ "status": "ok", "message": message, "topic": topic });
        if let Some(keys) = keys {
            reply["topics"] = json!(keys);
        }
        json!({ "type": format!("{name}.{op}.response"), "payload": reply })
    };
    let error_reply = |op: &str| {
        let problems = &route.example_problems;
        // The message the host sends for these problems (see session.rs).
        let mut reply = json!({
            "status": "error",
            "message": crate::protocol::describe("invalid request", problems),
        });
        if !problems.is_empty() {
            reply["errors"] = json!(problems);
        }
        json!({ "type": format!("{name}.{op}.response"), "payload": reply })
    };

    for (op, verb, message_text) in [
        ("subscribe", "Subscribe to", "Subscribed"),
        ("unsubscribe", "Unsubscribe from", "Unsubscribed"),
    ] {
        let ty = format!("{name}.{op}");
        let reply_ty = format!("{ty}.response");
        messages.insert(
            ty.clone(),
            json!({
                "name": ty,
                "title": format!("{verb} {name}"),
                "summary": format!("{verb} the {name} route; the payload is the route's request."),
                "contentType": "application/json",
                "tags": tags,
                "payload": envelope(&ty, schema_ref(&request_key)),
                "examples": [{
                    "name": op,
                    "summary": format!("{verb} {name}"),
                    "payload": { "type": ty, "payload": request },
                }],
                "x-route": x_route,
            }),
        );
        let keys = (op == "subscribe")
            .then_some(route.example_keys.as_ref())
            .flatten();
        messages.insert(
            reply_ty.clone(),
            json!({
                "name": reply_ty,
                "title": format!("{name}.{op} reply"),
                "summary": format!(
                    "The answer to `{ty}`: `ok` with the subscription's topic, or `error` with what was wrong."
                ),
                "contentType": "application/json",
                "tags": tags,
                "payload": envelope(&reply_ty, schema_ref("Reply")),
                "examples": [
                    { "name": "ok", "summary": message_text, "payload": ok_reply(op, message_text, keys) },
                    { "name": "error", "summary": "The request does not match the route's schema", "payload": error_reply(op) },
                ],
                "x-route": x_route,
            }),
        );
        operations.insert(
            ty.clone(),
            json!({
                "action": "receive",
                "channel": { "$ref": format!("#/channels/{CHANNEL}") },
                "title": format!("{verb} {name}"),
                "summary": if op == "subscribe" {
                    format!("Start receiving `{name}.update` frames for a request. Subscribing twice is idempotent.")
                } else {
                    format!("Stop a `{name}` subscription; send the request you subscribed with. Always answers ok.")
                },
                "description": route.info.description,
                "tags": tags,
                "messages": [{ "$ref": format!("#/channels/{CHANNEL}/messages/{ty}") }],
                "reply": {
                    "channel": { "$ref": format!("#/channels/{CHANNEL}") },
                    "messages": [{ "$ref": format!("#/channels/{CHANNEL}/messages/{reply_ty}") }],
                },
                "x-route": x_route,
            }),
        );
    }

    let ty = format!("{name}.update");
    messages.insert(
        ty.clone(),
        json!({
            "name": ty,
            "title": format!("{name} update"),
            "summary": format!("Data for a {name} subscription; `payload.topic` is the topic the subscribe reply named."),
            "contentType": "application/json",
            "tags": tags,
            "payload": envelope(&ty, json!({
                "type": "object",
                "required": ["topic", "payload"],
                "properties": {
                    "topic": { "type": "string", "description": "The subscription's topic, as in the subscribe reply." },
                    "payload": schema_ref(&data_key),
                },
            })),
            "examples": [{
                "name": "update",
                "summary": format!("One {name} update"),
                "payload": { "type": ty, "payload": { "topic": topic, "payload": data } },
            }],
            "x-route": x_route,
        }),
    );
    operations.insert(
        ty.clone(),
        json!({
            "action": "send",
            "channel": { "$ref": format!("#/channels/{CHANNEL}") },
            "title": format!("{name} updates"),
            "summary": format!("The host sends `{ty}` to every subscription a publication reaches."),
            "description": route.info.description,
            "tags": tags,
            "messages": [{ "$ref": format!("#/channels/{CHANNEL}/messages/{ty}") }],
            "x-route": x_route,
        }),
    );
}

/// Frames the host sends that belong to no route.
fn add_host_frames(messages: &mut Map<String, Value>, operations: &mut Map<String, Value>) {
    let frames = [
        (
            "error",
            "Error",
            "A frame the host could not attribute to a route operation (not JSON, no `type`, \
             an unknown operation, a binary frame). The connection stays open.",
            "ErrorPayload",
            json!({ "status": "error", "message": "frame is not valid JSON: expected value at line 1 column 1" }),
        ),
        (
            "route.removed",
            "Route removed",
            "A route this connection was subscribed to was removed; its subscriptions have ended.",
            "RouteRemoved",
            json!({
                "route": "bars",
                "message": "route \"bars\" was removed; its subscriptions have ended",
                "topics": ["bars:{\"resolution\":\"1\",\"symbol\":\"AAPL\"}"],
            }),
        ),
        (
            "routes.changed",
            "Routes changed",
            "The set of routes changed (a plugin was added, upgraded or removed). \
             Fetch this document again for the new schemas.",
            "RoutesChanged",
            json!({ "routes": [{ "name": "bars", "version": "0.1.0" }] }),
        ),
    ];
    for (ty, title, summary, schema, example) in frames {
        messages.insert(
            ty.to_owned(),
            json!({
                "name": ty,
                "title": title,
                "summary": summary,
                "contentType": "application/json",
                "payload": envelope(ty, schema_ref(schema)),
                "examples": [{ "name": ty, "payload": { "type": ty, "payload": example } }],
            }),
        );
        operations.insert(
            ty.to_owned(),
            json!({
                "action": "send",
                "channel": { "$ref": format!("#/channels/{CHANNEL}") },
                "title": title,
                "summary": summary,
                "messages": [{ "$ref": format!("#/channels/{CHANNEL}/messages/{ty}") }],
            }),
        );
    }
}

/// Schemas of the host's own frames (see `protocol.rs`).
fn host_schemas() -> Map<String, Value> {
    let schemas = json!({
        "Problem": {
            "type": "object",
            "description": "One problem found in a request.",
            "required": ["path", "message"],
            "properties": {
                "path": { "type": "string", "description": "JSON pointer to the offending value (\"\" is the whole request)." },
                "message": { "type": "string" },
            },
        },
        "ReplyOk": {
            "type": "object",
            "required": ["status", "message", "topic"],
            "properties": {
                "status": { "type": "string", "const": "ok" },
                "message": { "type": "string", "description": "\"Subscribed\" or \"Unsubscribed\"." },
                "topic": { "type": "string", "description": "The subscription's topic; update frames carry it in `payload.topic`." },
                "topics": {
                    "type": "array",
                    "items": { "type": "string" },
                    "description": "The routing keys, present when they differ from `[topic]`.",
                },
            },
        },
        "ReplyError": {
            "type": "object",
            "required": ["status", "message"],
            "properties": {
                "status": { "type": "string", "const": "error" },
                "message": { "type": "string", "description": "What went wrong, for people." },
                "errors": {
                    "type": "array",
                    "items": { "$ref": "#/components/schemas/Problem" },
                    "description": "Each schema violation, when the request did not match the route's schema.",
                },
            },
        },
        "Reply": {
            "description": "The answer to a subscribe or unsubscribe.",
            "oneOf": [
                { "$ref": "#/components/schemas/ReplyOk" },
                { "$ref": "#/components/schemas/ReplyError" },
            ],
        },
        "ErrorPayload": {
            "type": "object",
            "required": ["status", "message"],
            "properties": {
                "status": { "type": "string", "const": "error" },
                "message": { "type": "string" },
            },
        },
        "RouteRemoved": {
            "type": "object",
            "required": ["route", "message", "topics"],
            "properties": {
                "route": { "type": "string" },
                "message": { "type": "string" },
                "topics": { "type": "array", "items": { "type": "string" }, "description": "The subscriptions that ended." },
            },
        },
        "RouteVersion": {
            "type": "object",
            "required": ["name", "version"],
            "properties": {
                "name": { "type": "string" },
                "version": { "type": "string" },
            },
        },
        "RoutesChanged": {
            "type": "object",
            "required": ["routes"],
            "properties": {
                "routes": { "type": "array", "items": { "$ref": "#/components/schemas/RouteVersion" } },
            },
        },
    });
    match schemas {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// `components.schemas` under construction.
#[derive(Default)]
struct Schemas {
    map: Map<String, Value>,
    /// The plugin's original text of each imported `$defs` entry, so that
    /// the request and data schemas of one route share an identical def.
    origin: BTreeMap<String, Value>,
}

impl Schemas {
    /// Move `schema` (with its `$defs`) into the components under names
    /// prefixed by `route`; returns the key of the root schema.
    fn import(&mut self, route: &str, role: &str, schema: &Value) -> String {
        let root_key = self.free_key(&format!("{route}.{role}"));
        let mut root = schema.clone();
        let mut defs = Map::new();
        if let Value::Object(obj) = &mut root {
            for keyword in ["$defs", "definitions"] {
                if let Some(Value::Object(d)) = obj.remove(keyword) {
                    for (name, def) in d {
                        defs.insert(format!("{keyword}\u{0}{name}"), def);
                    }
                }
            }
            // Meta keywords of a standalone schema mean nothing inside the
            // document (and `$id` would change how references resolve).
            obj.remove("$schema");
            obj.remove("$id");
        }
        // Reserve the root key before naming defs, so a def called like the
        // role gets another name.
        self.map.insert(root_key.clone(), Value::Null);

        let mut names: BTreeMap<String, String> = BTreeMap::new();
        for (tagged, def) in &defs {
            let name = tagged.split('\u{0}').nth(1).unwrap_or_default();
            let wanted = format!("{route}.{}", sanitize(name));
            let key = match self.origin.get(&wanted) {
                Some(original) if original == def => wanted,
                _ => {
                    let key = self.free_key(&wanted);
                    self.map.insert(key.clone(), Value::Null);
                    key
                }
            };
            names.insert(tagged.clone(), key);
        }

        let rewrite = |v: &mut Value| rewrite_refs(v, &root_key, &names);
        rewrite(&mut root);
        self.map.insert(root_key.clone(), root);
        for (tagged, def) in defs {
            let key = names[&tagged].clone();
            if self.origin.contains_key(&key) {
                continue;
            }
            let mut converted = def.clone();
            rewrite(&mut converted);
            self.origin.insert(key.clone(), def);
            self.map.insert(key, converted);
        }
        root_key
    }

    fn free_key(&self, wanted: &str) -> String {
        if !self.map.contains_key(wanted) {
            return wanted.to_owned();
        }
        (2..)
            .map(|n| format!("{wanted}_{n}"))
            .find(|k| !self.map.contains_key(k))
            .unwrap_or_else(|| wanted.to_owned())
    }
}

/// AsyncAPI component keys allow `[A-Za-z0-9._-]` only.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "_".to_owned() } else { s }
}

/// Keywords whose values are data, not schemas: never rewritten.
const DATA_KEYWORDS: [&str; 5] = ["const", "default", "enum", "examples", "example"];

/// Point every local `$ref` of a plugin schema at the components, and turn
/// JSON Schema 2020-12 constructs into their draft-07 equivalents, which is
/// what AsyncAPI schemas are.
fn rewrite_refs(value: &mut Value, root_key: &str, names: &BTreeMap<String, String>) {
    match value {
        Value::Object(obj) => {
            // Children first: the `allOf` wrapper made below must not be
            // rewritten a second time.
            for (key, child) in obj.iter_mut() {
                if !DATA_KEYWORDS.contains(&key.as_str()) {
                    rewrite_refs(child, root_key, names);
                }
            }
            if let Some(Value::String(r)) = obj.get("$ref") {
                let target = map_ref(r, root_key, names);
                if obj.len() == 1 {
                    obj.insert("$ref".to_owned(), Value::String(target));
                } else {
                    // Draft 07 ignores keywords beside `$ref` (2020-12 does
                    // not): keep them by wrapping the reference in `allOf`.
                    obj.remove("$ref");
                    obj.insert("allOf".to_owned(), json!([{ "$ref": target }]));
                }
            }
            if let Some(prefix) = obj.remove("prefixItems") {
                if let Some(rest) = obj.remove("items") {
                    obj.insert("additionalItems".to_owned(), rest);
                }
                obj.insert("items".to_owned(), prefix);
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| rewrite_refs(v, root_key, names)),
        _ => {}
    }
}

fn map_ref(reference: &str, root_key: &str, names: &BTreeMap<String, String>) -> String {
    let Some(pointer) = reference.strip_prefix('#') else {
        // Plugins must be self-contained; a remote reference cannot be
        // fetched by the host or by clients reading the document.
        return format!("#/components/schemas/{root_key}");
    };
    let segments: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|s| percent_decode(s).replace("~1", "/").replace("~0", "~"))
        .collect();
    if let [keyword, name, rest @ ..] = segments.as_slice()
        && let Some(key) = names.get(&format!("{keyword}\u{0}{name}"))
    {
        return pointer_to(key, rest);
    }
    pointer_to(root_key, &segments)
}

fn pointer_to(key: &str, rest: &[String]) -> String {
    let mut out = format!("#/components/schemas/{key}");
    for seg in rest {
        out.push('/');
        out.push_str(&seg.replace('~', "~0").replace('/', "~1"));
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(hex) = std::str::from_utf8(&bytes[i + 1..i + 3])
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_owned())
}

/// An example value for `schema` (a plugin schema, with its own `$defs`):
/// its `examples`, `default`, `const` or first `enum` value where it has
/// one, otherwise a value of its type. For a request (`all == false`)
/// objects get their required properties and those with a default or an
/// example; for data, every property.
pub fn example_value(schema: &Value, all: bool) -> Value {
    example_at(schema, schema, all, 0)
}

fn example_at(root: &Value, schema: &Value, all: bool, depth: usize) -> Value {
    if depth > 12 {
        return Value::Null;
    }
    let Value::Object(obj) = schema else {
        return Value::Null;
    };
    if let Some(Value::Array(examples)) = obj.get("examples")
        && let Some(first) = examples.first()
    {
        return first.clone();
    }
    for keyword in ["example", "default", "const"] {
        if let Some(v) = obj.get(keyword) {
            return v.clone();
        }
    }
    if let Some(Value::Array(values)) = obj.get("enum")
        && let Some(first) = values.first()
    {
        return first.clone();
    }
    if let Some(Value::String(r)) = obj.get("$ref") {
        let target = r
            .strip_prefix('#')
            .and_then(|p| root.pointer(&percent_decode(p)));
        return target.map_or(Value::Null, |t| example_at(root, t, all, depth + 1));
    }
    for keyword in ["allOf", "oneOf", "anyOf"] {
        if let Some(Value::Array(options)) = obj.get(keyword)
            && let Some(first) = options
                .iter()
                .find(|o| o.get("type") != Some(&json!("null")))
        {
            return example_at(root, first, all, depth + 1);
        }
    }
    let ty = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if obj.contains_key("properties") => "object",
        _ => "",
    };
    match ty {
        "object" => {
            let required: Vec<&str> = obj
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut out = Map::new();
            if let Some(Value::Object(props)) = obj.get("properties") {
                for (name, prop) in props {
                    let documented = ["default", "examples", "example"]
                        .iter()
                        .any(|k| prop.get(k).is_some());
                    if all || documented || required.contains(&name.as_str()) {
                        out.insert(name.clone(), example_at(root, prop, all, depth + 1));
                    }
                }
            }
            Value::Object(out)
        }
        "array" => match obj.get("items") {
            Some(items @ Value::Object(_)) => json!([example_at(root, items, all, depth + 1)]),
            _ => json!([]),
        },
        "string" => match obj.get("format").and_then(Value::as_str) {
            Some("date-time") => json!("2024-01-02T15:04:05Z"),
            Some("date") => json!("2024-01-02"),
            _ => json!("string"),
        },
        "integer" => obj.get("minimum").cloned().unwrap_or(json!(0)),
        "number" => obj.get("minimum").cloned().unwrap_or(json!(0.0)),
        "boolean" => json!(false),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, request: Value, data: Value) -> RouteEntry {
        RouteEntry {
            info: RouteInfo {
                name: name.to_owned(),
                version: "1.2.3".to_owned(),
                description: format!("the {name} route"),
                tags: vec!["datafeed".to_owned()],
            },
            request_schema: request,
            data_schema: data,
            example_topic: None,
            example_keys: None,
            example_problems: vec![],
        }
    }

    fn with_status_def(status_values: Value) -> Value {
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "required": ["s"],
            "properties": { "s": { "$ref": "#/$defs/Status", "description": "status" } },
            "$defs": { "Status": { "type": "string", "enum": status_values } },
        })
    }

    #[test]
    fn same_def_name_in_two_routes_stays_distinct() {
        let doc = build(
            &[
                entry(
                    "alpha",
                    json!({"type": "object"}),
                    with_status_def(json!(["ok", "error"])),
                ),
                entry(
                    "beta",
                    json!({"type": "object"}),
                    with_status_def(json!(["up", "down"])),
                ),
            ],
            "localhost:1",
        );
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["alpha.Status"]["enum"], json!(["ok", "error"]));
        assert_eq!(schemas["beta.Status"]["enum"], json!(["up", "down"]));
        // The sibling description is kept; the reference points at the route's own def.
        assert_eq!(
            schemas["alpha.data"]["properties"]["s"],
            json!({ "allOf": [{ "$ref": "#/components/schemas/alpha.Status" }], "description": "status" })
        );
        assert_eq!(
            schemas["beta.data"]["properties"]["s"]["allOf"][0]["$ref"],
            "#/components/schemas/beta.Status"
        );
        assert!(schemas["alpha.data"].get("$defs").is_none());
        assert!(schemas["alpha.data"].get("$schema").is_none());
    }

    #[test]
    fn request_and_data_of_one_route_share_identical_defs_and_split_different_ones() {
        let doc = build(
            &[entry(
                "r",
                with_status_def(json!(["a"])),
                with_status_def(json!(["b"])),
            )],
            "h:1",
        );
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["r.Status"]["enum"], json!(["a"]));
        assert_eq!(schemas["r.Status_2"]["enum"], json!(["b"]));
        assert_eq!(
            schemas["r.data"]["properties"]["s"]["allOf"][0]["$ref"],
            "#/components/schemas/r.Status_2"
        );

        let same = build(
            &[entry(
                "r",
                with_status_def(json!(["a"])),
                with_status_def(json!(["a"])),
            )],
            "h:1",
        );
        assert!(same["components"]["schemas"].get("r.Status_2").is_none());
    }

    #[test]
    fn rewrites_root_definitions_and_odd_names() {
        let schema = json!({
            "type": "object",
            "properties": {
                "next": { "$ref": "#" },
                "x": { "$ref": "#/definitions/Vec%3CString%3E" },
                "y": { "$ref": "#/properties/next" },
                "c": { "const": { "$ref": "#/not/a/ref" } },
            },
            "definitions": { "Vec<String>": { "type": "array", "items": { "type": "string" } } },
        });
        let doc = build(&[entry("t", schema, json!({}))], "h:1");
        let props = &doc["components"]["schemas"]["t.request"]["properties"];
        assert_eq!(props["next"]["$ref"], "#/components/schemas/t.request");
        assert_eq!(props["x"]["$ref"], "#/components/schemas/t.Vec_String_");
        assert_eq!(
            props["y"]["$ref"],
            "#/components/schemas/t.request/properties/next"
        );
        assert_eq!(props["c"]["const"]["$ref"], "#/not/a/ref");
        assert_eq!(
            doc["components"]["schemas"]["t.Vec_String_"]["type"],
            "array"
        );
    }

    #[test]
    fn document_has_operations_replies_versions_and_host_frames() {
        let mut bars = entry(
            "bars",
            json!({
                "type": "object", "required": ["symbol"],
                "properties": {
                    "symbol": { "type": "string", "examples": ["AAPL"] },
                    "resolution": { "type": "string", "default": "1" },
                    "note": { "type": "string" },
                },
            }),
            json!({ "type": "object", "properties": { "close": { "type": "number" } } }),
        );
        bars.example_topic = Some("bars:{\"resolution\":\"1\",\"symbol\":\"AAPL\"}".to_owned());
        let doc = build(&[bars], "example.com:8000");
        assert_eq!(doc["asyncapi"], "3.0.0");
        assert_eq!(doc["servers"]["ws-router"]["host"], "example.com:8000");
        assert_eq!(doc["channels"]["ws"]["address"], "/api/v1/ws");
        let ops = &doc["operations"];
        assert_eq!(ops["bars.subscribe"]["action"], "receive");
        assert_eq!(
            ops["bars.subscribe"]["reply"]["messages"][0]["$ref"],
            "#/channels/ws/messages/bars.subscribe.response"
        );
        assert_eq!(ops["bars.unsubscribe"]["action"], "receive");
        assert_eq!(ops["bars.update"]["action"], "send");
        assert_eq!(ops["bars.update"]["x-route"]["version"], "1.2.3");
        for host_frame in ["error", "route.removed", "routes.changed"] {
            assert_eq!(ops[host_frame]["action"], "send", "{host_frame}");
            assert!(doc["channels"]["ws"]["messages"].get(host_frame).is_some());
        }
        let subscribe = &doc["components"]["messages"]["bars.subscribe"];
        assert_eq!(
            subscribe["examples"][0]["payload"],
            json!({ "type": "bars.subscribe", "payload": { "symbol": "AAPL", "resolution": "1" } })
        );
        assert_eq!(
            subscribe["payload"]["properties"]["payload"]["$ref"],
            "#/components/schemas/bars.request"
        );
        assert_eq!(
            doc["info"]["x-routes"][0],
            json!({
                "name": "bars", "version": "1.2.3", "description": "the bars route", "tags": ["datafeed"],
            })
        );
        let update = &doc["components"]["messages"]["bars.update"]["examples"][0]["payload"];
        assert_eq!(
            update["payload"]["topic"],
            "bars:{\"resolution\":\"1\",\"symbol\":\"AAPL\"}"
        );
        assert_eq!(update["payload"]["payload"], json!({ "close": 0.0 }));
    }

    #[test]
    fn examples_follow_refs_enums_and_nullable_types() {
        let schema = json!({
            "type": "object",
            "properties": {
                "s": { "$ref": "#/$defs/S" },
                "n": { "type": ["integer", "null"] },
                "list": { "type": "array", "items": { "type": "string" } },
            },
            "$defs": { "S": { "enum": ["ok", "error"] } },
        });
        assert_eq!(
            example_value(&schema, true),
            json!({ "s": "ok", "n": 0, "list": ["string"] })
        );
        assert_eq!(example_value(&schema, false), json!({}));
    }
}
