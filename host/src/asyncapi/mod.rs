//! The AsyncAPI 3.0 document of the WebSocket API, assembled from whatever
//! plugins are loaded.
//!
//! [`build`] is a pure function of the routes (their info and schemas, plus
//! the example topics their plugins resolved) and the server address, so it
//! is unit-tested without a plugin. [`document`] gathers those inputs from
//! the plugins serving now; it runs per request (a few microseconds per
//! route), so the document always matches the route table, including after
//! a reload.
//!
//! * [`import`]: plugin schemas into `components.schemas`, `$ref`s rewritten.
//! * [`examples`]: example values for a schema.
//! * This module: the document's layout.
//!
//! Layout of the document:
//!
//! * one server, and one channel `ws` at `/api/v1/ws` carrying every frame
//!   (or, for a module's document, at `/api/v1/<tag>/ws` carrying the
//!   routes tagged `<tag>`: see [`Channel`]);
//! * per route `<r>`: operations `<r>.subscribe` and `<r>.unsubscribe`
//!   (the client sends, the host replies with `<r>.<op>.response`) and
//!   `<r>.update` (the host sends), each message being the whole frame
//!   (envelope plus the route's own request or data schema); client frames,
//!   their replies and `error` frames have the optional `id`
//!   (`MessageId`);
//! * host frames `error`, `route.removed` and `routes.changed`, whose
//!   schemas are derived from the Rust types in [`crate::protocol`] and
//!   whose examples are frames encoded by the functions the host sends
//!   them with, so the document cannot drift from the wire.

mod examples;
mod import;

use std::sync::Arc;

use serde_json::{Map, Value, json};

pub use examples::example_value;
use import::Schemas;

use crate::{
    plugin::{Plugin, Problem, RouteInfo, route::Retention},
    protocol::{self, KeyPosition, Operation},
};

/// The channel every frame travels on.
pub const CHANNEL: &str = "ws";
/// Where that channel is served.
pub const WS_PATH: &str = "/api/v1/ws";
const SERVER: &str = "ws-router";

/// The WebSocket a document describes: the one carrying every route, or a
/// module's (`/api/v1/<tag>/ws`, the routes whose plugin lists the tag).
#[derive(Debug, Clone)]
pub struct Channel {
    pub address: String,
    pub description: String,
}

impl Channel {
    /// `/api/v1/ws`, every route.
    pub fn all() -> Channel {
        Channel {
            address: WS_PATH.to_owned(),
            description: "One WebSocket carries every route.".to_owned(),
        }
    }

    /// `/api/v1/<tag>/ws`, the routes tagged `tag`.
    pub fn module(tag: &str) -> Channel {
        Channel {
            address: format!("/api/v1/{tag}/ws"),
            description: format!(
                "The WebSocket of the `{tag}` module: it carries the routes tagged `{tag}` \
                 (`{WS_PATH}` carries every route)."
            ),
        }
    }
}

/// What the document needs to know about one route.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    pub info: RouteInfo,
    pub request_schema: Value,
    pub data_schema: Value,
    /// The topic the example request resolves to, when the plugin answered;
    /// otherwise examples show a placeholder topic.
    pub example_topic: Option<String>,
    /// The routing keys of the example request.
    pub example_keys: Vec<Arc<str>>,
    /// What validating a non-object request reports (a real error example).
    pub example_problems: Vec<Problem>,
    /// What the host keeps of the route's updates (snapshot, history).
    pub retention: Retention,
}

/// The document for `plugins`, served at `server_host` (`host:port`).
pub async fn document<'a>(
    plugins: impl IntoIterator<Item = &'a Arc<Plugin>>,
    server_host: &str,
) -> Value {
    document_on(plugins, server_host, &Channel::all()).await
}

/// The document for `plugins` on `channel`, served at `server_host`.
pub async fn document_on<'a>(
    plugins: impl IntoIterator<Item = &'a Arc<Plugin>>,
    server_host: &str,
    channel: &Channel,
) -> Value {
    let mut entries = Vec::new();
    for plugin in plugins {
        let request = example_value(&plugin.request_schema.source, false);
        let resolved = match serde_json::to_string(&request) {
            Ok(text) => plugin.topics(&text).await.ok(),
            Err(_) => None,
        };
        entries.push(RouteEntry {
            info: plugin.info.clone(),
            request_schema: plugin.request_schema.source.clone(),
            data_schema: plugin.data_schema.source.clone(),
            example_topic: resolved.as_ref().map(|s| s.topic.to_string()),
            example_keys: resolved.map(|s| s.keys).unwrap_or_default(),
            example_problems: plugin
                .request_schema
                .check(&json!([]))
                .err()
                .unwrap_or_default(),
            retention: plugin.retention,
        });
    }
    build_on(&entries, server_host, channel)
}

/// The AsyncAPI document for `routes`, served at `server_host` (`host:port`).
pub fn build(routes: &[RouteEntry], server_host: &str) -> Value {
    build_on(routes, server_host, &Channel::all())
}

/// The AsyncAPI document for `routes` on `channel`.
pub fn build_on(routes: &[RouteEntry], server_host: &str, channel: &Channel) -> Value {
    let mut schemas = Schemas::default();
    let mut messages = Map::new();
    let mut operations = Map::new();

    for route in routes {
        add_route(route, &mut schemas, &mut messages, &mut operations);
    }
    add_host_frames(&mut messages, &mut operations);
    schemas.map.extend(host_schemas());
    schemas
        .map
        .insert(MESSAGE_ID.to_owned(), message_id_schema());
    schemas.map.insert(RECOVER.to_owned(), recover_schema());
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
                "description": "The ws-router host.",
            }
        },
        "channels": {
            CHANNEL: {
                "address": channel.address,
                "title": "WebSocket",
                "description": format!(
                    "{} Each frame is one JSON text message \
                     `{{\"type\": \"<route>.<operation>\", \"payload\": ...}}`; a client frame may \
                     add an `\"id\"`, which the host echoes in its reply.",
                    channel.description
                ),
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

/// A frame schema with the optional `id`: a client frame, or the host's
/// answer to one.
fn envelope_with_id(ty: &str, payload: Value, id: &str) -> Value {
    let mut frame = envelope(ty, payload);
    frame["properties"]["id"] = json!({
        "allOf": [schema_ref(MESSAGE_ID)],
        "description": id,
    });
    frame
}

/// The schema of a client frame's `id`.
const MESSAGE_ID: &str = "MessageId";

fn message_id_schema() -> Value {
    json!({
        "title": "MessageId",
        "description": format!(
            "Optional on any client frame: a string of at most {} bytes or an integer from 0 to \
             2^53-1. The host echoes it unchanged at the top level of its reply to that frame \
             (the `<route>.<op>.response`, or the `error` frame answering it), so a client can \
             match replies to commands. Frames without an id get replies without one; an invalid \
             id gets an error reply naming the problem.",
            protocol::MAX_ID_BYTES
        ),
        "oneOf": [
            { "type": "string", "maxLength": protocol::MAX_ID_BYTES },
            { "type": "integer", "minimum": 0, "maximum": protocol::MAX_ID_INTEGER },
        ],
    })
}

/// The schema of a subscribe frame's `recover`.
const RECOVER: &str = "Recover";

fn recover_schema() -> Value {
    json!({
        "title": "Recover",
        "description": "Optional on a subscribe to a route with history (docs/recovery.md): the \
            position of the last update the client processed, per key (from the `offset` and \
            `epoch` of update frames, or the `positions` of an earlier subscribe reply). When the \
            epoch matches and the host still holds every update after the offset, they follow \
            the reply in order, before live ones, and the key's `positions` entry says \
            `recovered: true`; otherwise nothing is replayed for the key and it says `false` \
            (refetch its state). Every key must be one of the subscription's keys.",
        "type": "object",
        "maxProperties": protocol::MAX_RECOVER_KEYS,
        "propertyNames": { "maxLength": protocol::MAX_RECOVER_KEY_BYTES },
        "additionalProperties": {
            "type": "object",
            "required": ["offset", "epoch"],
            "additionalProperties": false,
            "properties": {
                "offset": { "type": "integer", "minimum": 0, "description": "The key's offset the client stopped at." },
                "epoch": { "type": "string", "maxLength": protocol::MAX_EPOCH_BYTES, "description": "The key's epoch at that offset." },
            },
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
    // The replies the host sends, encoded by the functions it sends them with.
    let retention = &route.retention;
    let history = retention.has_history();
    let example_keys: Vec<Arc<str>> = if route.example_keys.is_empty() {
        vec![Arc::from(topic.as_str())]
    } else {
        route.example_keys.clone()
    };
    // An example position: the offset after a few updates, a made-up epoch.
    const EPOCH: &str = "3f9a1c0b7d2e";
    let ok_reply = |op: Operation| {
        let keys: &[Arc<str>] = match op {
            Operation::Subscribe => &route.example_keys,
            Operation::Unsubscribe | Operation::Refresh => &[],
        };
        let positions = (history && op == Operation::Subscribe).then(|| {
            example_keys
                .iter()
                .map(|k| {
                    let position = KeyPosition {
                        offset: 8,
                        epoch: Arc::from(EPOCH),
                        recovered: None,
                    };
                    (Arc::clone(k), position)
                })
                .collect()
        });
        let retained = protocol::Retained {
            positions,
            recovered: None,
        };
        frame_value(&protocol::subscribed_reply(
            name,
            op,
            None,
            &topic,
            keys,
            Some(&retained),
        ))
    };
    let error_reply = |op: Operation| {
        let problems = &route.example_problems;
        let message = protocol::describe("invalid request", problems);
        frame_value(&protocol::error_reply(name, op, None, &message, problems))
    };

    for (operation, verb, message_text) in [
        (Operation::Subscribe, "Subscribe to", "Subscribed"),
        (Operation::Unsubscribe, "Unsubscribe from", "Unsubscribed"),
    ] {
        let op = operation.as_str();
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
                "payload": ({
                    let mut frame = envelope_with_id(
                        &ty,
                        schema_ref(&request_key),
                        "Any id; the reply carries the same one.",
                    );
                    if history && operation == Operation::Subscribe {
                        frame["properties"]["recover"] = schema_ref(RECOVER);
                    }
                    frame
                }),
                "examples": [{
                    "name": op,
                    "summary": format!("{verb} {name}"),
                    "payload": { "type": ty, "payload": request },
                }],
                "x-route": x_route,
            }),
        );
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
                "payload": envelope_with_id(
                    &reply_ty,
                    schema_ref("Reply"),
                    "The id of the command answered, when it had one.",
                ),
                "examples": [
                    { "name": "ok", "summary": message_text, "payload": ok_reply(operation) },
                    { "name": "error", "summary": "The request does not match the route's schema", "payload": error_reply(operation) },
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
                    let mut summary = format!("Start receiving `{name}.update` frames for a request. Subscribing twice is idempotent.");
                    if retention.snapshot {
                        summary.push_str(" Each key's last update follows the reply at once (a snapshot).");
                    }
                    if history {
                        summary.push_str(&format!(
                            " The reply carries each key's position; `recover` replays what a reconnecting client missed (the last {} updates per key, up to {} s old).",
                            retention.history_size,
                            retention.history_ttl.as_secs()
                        ));
                    }
                    summary
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
            "summary": if history {
                format!("Data for a {name} subscription; `payload.topic` is the topic the subscribe reply named, `offset` and `epoch` its position for recovery.")
            } else {
                format!("Data for a {name} subscription; `payload.topic` is the topic the subscribe reply named.")
            },
            "contentType": "application/json",
            "tags": tags,
            "payload": envelope(&ty, {
                let mut payload = json!({
                    "type": "object",
                    "required": ["topic", "payload"],
                    "properties": {
                        "topic": { "type": "string", "description": "The subscription's topic, as in the subscribe reply." },
                        "payload": schema_ref(&data_key),
                    },
                });
                if history {
                    payload["required"] = json!(["topic", "offset", "epoch", "payload"]);
                    let properties = &mut payload["properties"];
                    properties["offset"] = json!({ "type": "integer", "minimum": 1, "description": "The update's offset in its key's stream: 1, 2, ... per key and epoch." });
                    properties["epoch"] = json!({ "type": "string", "description": "The key's epoch; it changes when the key's history is lost (offsets of different epochs do not compare)." });
                    properties["key"] = json!({ "type": "string", "description": "The key the update was published to, when it is not the topic (a subscription with several keys)." });
                }
                payload
            }),
            "examples": [{
                "name": "update",
                "summary": format!("One {name} update"),
                "payload": frame_value(&match (history, example_keys.first()) {
                    (true, Some(key)) => protocol::update_frame_at(name, &topic, key, 8, EPOCH, &data.to_string()),
                    _ => protocol::update_frame(name, &topic, &data.to_string()),
                }),
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

/// A frame the host encodes, as a document value (for examples).
fn frame_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// Frames the host sends that belong to no route.
fn add_host_frames(messages: &mut Map<String, Value>, operations: &mut Map<String, Value>) {
    let not_json = protocol::parse_command("")
        .err()
        .map(|refused| refused.error.to_string())
        .unwrap_or_default();
    let example_topic = r#"bars:{"resolution":"1","symbol":"AAPL"}"#;
    let frames = [
        (
            "error",
            "Error",
            "A frame the host could not attribute to a route operation (not JSON, no `type`, \
             an unknown operation, a binary frame). The connection stays open.",
            "ErrorPayload",
            protocol::error_frame(None, &not_json),
        ),
        (
            "route.removed",
            "Route removed",
            "A route this connection was subscribed to was removed; its subscriptions have ended.",
            "RouteRemoved",
            protocol::route_removed_frame("bars", &[example_topic]),
        ),
        (
            "routes.changed",
            "Routes changed",
            "The set of routes changed (a plugin was added, upgraded or removed). \
             Fetch this document again for the new schemas.",
            "RoutesChanged",
            protocol::routes_changed_frame(&[("bars", "0.1.0")]),
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
                "payload": if ty == "error" {
                    envelope_with_id(ty, schema_ref(schema), "The id of the frame answered, when it could be read.")
                } else {
                    envelope(ty, schema_ref(schema))
                },
                "examples": [{ "name": ty, "payload": frame_value(&example) }],
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

/// Schemas of the host's own frames, derived from the types that encode
/// them (see `protocol.rs`), as draft-07 schemas (what AsyncAPI uses) under
/// `components.schemas`.
fn host_schemas() -> Map<String, Value> {
    let mut settings = schemars::generate::SchemaSettings::draft07();
    settings.definitions_path = "/components/schemas".into();
    let mut generator = settings.into_generator();
    for schema in [
        generator.subschema_for::<protocol::Reply<'static>>(),
        generator.subschema_for::<protocol::ErrorPayload<'static>>(),
        generator.subschema_for::<protocol::RouteRemoved<'static>>(),
        generator.subschema_for::<protocol::RoutesChanged<'static>>(),
    ] {
        // Each is a `$ref` to a definition the generator now holds.
        debug_assert!(schema.get("$ref").is_some());
    }
    generator.take_definitions(true)
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
            example_keys: vec![],
            example_problems: vec![],
            retention: Retention::NONE,
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
