//! The wire format (see `shared/reference/wire-format.md`).
//!
//! Every frame is `{"type": "<route>.<operation>", "payload": <any>}`.
//! Client frames are parsed here and nowhere else; every frame the host sends
//! is encoded here too, so what a client can see is decided in one file.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// What a client may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Subscribe,
    Unsubscribe,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Subscribe => "subscribe",
            Operation::Unsubscribe => "unsubscribe",
        }
    }
}

/// A client command, borrowed from the frame text.
#[derive(Debug)]
pub struct Command<'a> {
    pub route: &'a str,
    pub op: Operation,
    pub payload: &'a RawValue,
}

/// Why a client frame was refused. The `Display` text is what the client
/// reads in the error reply.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame is not valid JSON: {0}")]
    NotJson(String),
    #[error("frame must be a JSON object with a string \"type\" and a \"payload\": {0}")]
    BadEnvelope(String),
    #[error("\"type\" must look like \"<route>.subscribe\" or \"<route>.unsubscribe\", got {0:?}")]
    BadType(String),
    #[error(
        "\"{0}\" is sent by the server; clients send \"<route>.subscribe\" and \"<route>.unsubscribe\""
    )]
    ServerOnly(String),
    #[error(
        "unknown operation {op:?} in {ty:?}; clients send \"<route>.subscribe\" and \"<route>.unsubscribe\""
    )]
    UnknownOperation { ty: String, op: String },
    #[error("\"payload\" is missing; send the route's subscription request (for example {{}})")]
    MissingPayload { route: String, op: Operation },
    #[error("binary frames are not supported; send JSON text frames")]
    Binary,
}

impl FrameError {
    /// The `<route>.<op>` a reply to this error should carry, when the frame
    /// named a valid client operation; otherwise the reply type is `error`.
    pub fn reply_to(&self) -> Option<(&str, Operation)> {
        match self {
            FrameError::MissingPayload { route, op } => Some((route, *op)),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    ty: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
}

/// Parse one text frame from a client. Unknown envelope fields are ignored,
/// as unknown request fields are.
pub fn parse_command(text: &str) -> Result<Command<'_>, FrameError> {
    // Tell "not JSON at all" from "JSON of the wrong shape": clients fix
    // these differently.
    let envelope: Envelope<'_> = serde_json::from_str(text).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            FrameError::NotJson(e.to_string())
        } else {
            FrameError::BadEnvelope(e.to_string())
        }
    })?;
    // A `type` with escapes is not borrowable; no valid type has escapes.
    let std::borrow::Cow::Borrowed(ty) = envelope.ty else {
        return Err(FrameError::BadType(envelope.ty.into_owned()));
    };
    let Some((route, op)) = ty.rsplit_once('.') else {
        return Err(FrameError::BadType(ty.to_owned()));
    };
    let op = match op {
        "subscribe" => Operation::Subscribe,
        "unsubscribe" => Operation::Unsubscribe,
        "update" | "response" => return Err(FrameError::ServerOnly(ty.to_owned())),
        other => {
            return Err(FrameError::UnknownOperation {
                ty: ty.to_owned(),
                op: other.to_owned(),
            });
        }
    };
    if route.is_empty() || route.contains('.') {
        return Err(FrameError::BadType(ty.to_owned()));
    }
    let Some(payload) = envelope.payload else {
        return Err(FrameError::MissingPayload {
            route: route.to_owned(),
            op,
        });
    };
    Ok(Command { route, op, payload })
}

pub use crate::plugin::Problem;

/// "invalid request: /symbol: ...; /resolution: ..." in one line.
pub fn describe(what: &str, problems: &[Problem]) -> String {
    let parts: Vec<String> = problems
        .iter()
        .map(|p| {
            if p.path.is_empty() {
                p.message.clone()
            } else {
                format!("{}: {}", p.path, p.message)
            }
        })
        .collect();
    format!("{what}: {}", parts.join("; "))
}

/// The payload of a `<route>.<op>.response` frame: the answer to a
/// subscribe or unsubscribe. Field order is the wire order of the captured
/// frames (`status` first).
#[derive(Debug, Serialize, JsonSchema)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Reply<'a> {
    /// The command succeeded.
    Ok {
        /// "Subscribed" or "Unsubscribed".
        message: &'a str,
        /// The subscription's topic; update frames carry it in `payload.topic`.
        topic: &'a str,
        /// The routing keys, present when they differ from `[topic]`.
        #[serde(skip_serializing_if = "Option::is_none")]
        topics: Option<&'a [Arc<str>]>,
    },
    /// The command failed; the connection stays open.
    Error {
        /// What went wrong, for people.
        message: &'a str,
        /// Each schema violation, when the request did not match the route's schema.
        #[serde(skip_serializing_if = "<[_]>::is_empty", default)]
        errors: &'a [Problem],
    },
}

/// The payload of an `error` frame: the answer to a frame that named no
/// valid client operation.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorPayload<'a> {
    #[schemars(with = "ErrorStatus")]
    status: Status,
    message: &'a str,
}

/// `"error"`, the only status of an `error` frame.
#[derive(JsonSchema)]
#[schemars(inline)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // Only its schema is used.
enum ErrorStatus {
    Error,
}

/// A route this connection was subscribed to was removed; its
/// subscriptions to it have ended.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RouteRemoved<'a> {
    route: &'a str,
    message: String,
    /// The subscriptions that ended.
    topics: &'a [&'a str],
}

/// The set of routes changed (a plugin was added, upgraded or removed).
#[derive(Debug, Serialize, JsonSchema)]
pub struct RoutesChanged<'a> {
    /// Every route now served, with its plugin's version.
    routes: Vec<RouteVersion<'a>>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct RouteVersion<'a> {
    name: &'a str,
    version: &'a str,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Error,
}

#[derive(Serialize)]
struct Frame<'a, P: Serialize> {
    #[serde(rename = "type")]
    ty: &'a str,
    payload: P,
}

fn encode<P: Serialize>(ty: &str, payload: P) -> String {
    // Only strings, numbers and plain structs: serializing cannot fail.
    serde_json::to_string(&Frame { ty, payload }).unwrap_or_default()
}

/// `<route>.<op>.response` with the given reply.
pub fn reply_frame(route: &str, op: Operation, reply: &Reply<'_>) -> String {
    encode(&format!("{route}.{}.response", op.as_str()), reply)
}

/// The `ok` reply to a command: `message` is "Subscribed" or
/// "Unsubscribed"; `keys` are listed when they differ from `[topic]`.
pub fn ok_reply(route: &str, op: Operation, topic: &str, keys: &[Arc<str>]) -> String {
    let message = match op {
        Operation::Subscribe => "Subscribed",
        Operation::Unsubscribe => "Unsubscribed",
    };
    let differ = !matches!(keys, [key] if **key == *topic) && !keys.is_empty();
    let reply = Reply::Ok {
        message,
        topic,
        topics: differ.then_some(keys),
    };
    reply_frame(route, op, &reply)
}

/// The `error` reply to a command.
pub fn error_reply(route: &str, op: Operation, message: &str, errors: &[Problem]) -> String {
    reply_frame(route, op, &Reply::Error { message, errors })
}

/// An error about a frame that named no valid operation.
pub fn error_frame(message: &str) -> String {
    encode(
        "error",
        ErrorPayload {
            status: Status::Error,
            message,
        },
    )
}

/// Tells a client that a route it was subscribed to has been removed; its
/// subscriptions to that route are gone.
pub fn route_removed_frame(route: &str, topics: &[&str]) -> String {
    let message = format!("route {route:?} was removed; its subscriptions have ended");
    encode(
        "route.removed",
        RouteRemoved {
            route,
            message,
            topics,
        },
    )
}

/// Tells every client that the set of routes changed (a plugin was added,
/// upgraded or removed): `{"type":"routes.changed","payload":{"routes":[{"name":"bars","version":"0.1.0"},...]}}`.
pub fn routes_changed_frame(routes: &[(&str, &str)]) -> String {
    let routes = routes
        .iter()
        .map(|(name, version)| RouteVersion { name, version })
        .collect();
    encode("routes.changed", RoutesChanged { routes })
}

/// `{"type":"<route>.update","payload":{"topic":<topic>,"payload":<data>}}`.
///
/// `data` must be compact JSON text (see [`compact_json`]). Built by
/// concatenation: this runs once per publication and topic, and its bytes are
/// then shared by every subscriber.
pub fn update_frame(route: &str, topic: &str, data: &str) -> String {
    let mut out = String::with_capacity(48 + route.len() + topic.len() * 2 + data.len());
    out.push_str("{\"type\":\"");
    // Route names are validated at load: [a-z0-9_-] only, nothing to escape.
    out.push_str(route);
    out.push_str(".update\",\"payload\":{\"topic\":");
    push_json_str(topic, &mut out);
    out.push_str(",\"payload\":");
    out.push_str(data);
    out.push_str("}}");
    out
}

fn push_json_str(s: &str, out: &mut String) {
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

/// `text` (valid JSON) without insignificant whitespace. Publishers may send
/// pretty-printed data; subscribers get it compact, as the captured frames.
pub fn compact_json(text: &str) -> std::borrow::Cow<'_, str> {
    let needs_work = text
        .bytes()
        .any(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t'));
    if !needs_work {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\n' | '\r' | '\t') {
            if c == '"' {
                in_string = true;
            }
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_subscribe() {
        let cmd =
            parse_command(r#"{"type":"bars.subscribe","payload":{"symbol":"AAPL"}}"#).unwrap();
        assert_eq!(cmd.route, "bars");
        assert_eq!(cmd.op, Operation::Subscribe);
        assert_eq!(cmd.payload.get(), r#"{"symbol":"AAPL"}"#);
    }

    #[test]
    fn refuses_what_clients_may_not_send() {
        assert!(matches!(parse_command("nope"), Err(FrameError::NotJson(_))));
        assert!(matches!(
            parse_command("[1]"),
            Err(FrameError::BadEnvelope(_))
        ));
        assert!(matches!(
            parse_command(r#"{"type":"bars.update","payload":{}}"#),
            Err(FrameError::ServerOnly(_))
        ));
        assert!(matches!(
            parse_command(r#"{"type":"bars","payload":{}}"#),
            Err(FrameError::BadType(_))
        ));
        assert!(matches!(
            parse_command(r#"{"type":".subscribe","payload":{}}"#),
            Err(FrameError::BadType(_))
        ));
        assert!(matches!(
            parse_command(r#"{"type":"bars.publish","payload":{}}"#),
            Err(FrameError::UnknownOperation { .. })
        ));
        assert!(matches!(
            parse_command(r#"{"type":"bars.subscribe"}"#),
            Err(FrameError::MissingPayload { .. })
        ));
        assert!(matches!(
            parse_command(r#"{"type":7,"payload":{}}"#),
            Err(FrameError::BadEnvelope(_))
        ));
    }

    #[test]
    fn update_frame_matches_capture() {
        let frame = update_frame(
            "bars",
            r#"bars:{"resolution":"1","symbol":"AAPL"}"#,
            r#"{"time":1,"open":1.0,"high":2.0,"low":0.5,"close":1.5,"volume":10}"#,
        );
        assert_eq!(
            frame,
            r#"{"type":"bars.update","payload":{"topic":"bars:{\"resolution\":\"1\",\"symbol\":\"AAPL\"}","payload":{"time":1,"open":1.0,"high":2.0,"low":0.5,"close":1.5,"volume":10}}}"#
        );
    }

    #[test]
    fn compacts_outside_strings_only() {
        assert_eq!(
            compact_json("{ \"a b\" : [1, 2],\n \"c\":\"x\\\" y\" }"),
            "{\"a b\":[1,2],\"c\":\"x\\\" y\"}"
        );
        assert!(matches!(
            compact_json("{\"a\":1}"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
