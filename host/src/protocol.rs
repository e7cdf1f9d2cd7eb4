//! The wire format (see `shared/reference/wire-format.md`).
//!
//! Every frame is `{"type": "<route>.<operation>", "payload": <any>}`. A
//! client frame may also carry an `"id"` (a string of at most 64 bytes or a
//! non-negative integer up to 2^53-1), which the host echoes at the top level
//! of its reply to that frame, so a client can match replies to commands.
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
    /// `auth.refresh`: a fresh token for the connection (the route is
    /// always `auth`).
    Refresh,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Subscribe => "subscribe",
            Operation::Unsubscribe => "unsubscribe",
            Operation::Refresh => "refresh",
        }
    }
}

/// A client command, borrowed from the frame text.
#[derive(Debug)]
pub struct Command<'a> {
    pub route: &'a str,
    pub op: Operation,
    pub payload: &'a RawValue,
    /// The frame's `id`, echoed in the reply.
    pub id: Option<Id<'a>>,
}

/// Longest string `id`, in bytes (of the decoded string).
pub const MAX_ID_BYTES: usize = 64;
/// Largest integer `id`: 2^53-1, the largest integer every JSON parser
/// (JavaScript's included) reads exactly.
pub const MAX_ID_INTEGER: u64 = (1 << 53) - 1;

/// A valid client frame `id`: its JSON text exactly as the client sent it
/// (a string or a non-negative integer), echoed unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Id<'a>(&'a str);

impl<'a> Id<'a> {
    /// Check the JSON text of an `id`; `null` is no id.
    fn parse(raw: &'a RawValue) -> Result<Option<Id<'a>>, FrameError> {
        let text = raw.get();
        let valid = match text.as_bytes().first() {
            Some(b'n') => return Ok(None),
            Some(b'"') => serde_json::from_str::<std::borrow::Cow<'_, str>>(text)
                .is_ok_and(|s| s.len() <= MAX_ID_BYTES),
            // JSON integers have no leading zeros, sign or exponent here:
            // digits only, then the range.
            Some(b'0'..=b'9') => {
                text.bytes().all(|b| b.is_ascii_digit())
                    && text.parse::<u64>().is_ok_and(|n| n <= MAX_ID_INTEGER)
            }
            _ => false,
        };
        if valid {
            Ok(Some(Id(text)))
        } else {
            Err(FrameError::BadId {
                got: crate::plugin::schema::truncate(text, 80),
                command: None,
            })
        }
    }

    /// The id as JSON text.
    pub fn as_json(&self) -> &'a str {
        self.0
    }
}

impl Serialize for Id<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Valid JSON by construction (it was parsed from the frame).
        match serde_json::from_str::<&RawValue>(self.0) {
            Ok(raw) => raw.serialize(serializer),
            Err(_) => serializer.serialize_none(),
        }
    }
}

/// A frame the host refused: why, and the frame's `id` when it could be
/// read (the error reply carries it).
#[derive(Debug)]
pub struct Refused<'a> {
    pub error: FrameError,
    pub id: Option<Id<'a>>,
}

impl From<FrameError> for Refused<'_> {
    fn from(error: FrameError) -> Self {
        Refused { error, id: None }
    }
}

impl Refused<'_> {
    /// The error reply to send: `<route>.<op>.response` when the frame named
    /// a valid client operation, else an `error` frame.
    pub fn reply(&self) -> String {
        let message = self.error.to_string();
        match self.error.reply_to() {
            Some((route, op)) => error_reply(route, op, self.id, &message, &[]),
            None => error_frame(self.id, &message),
        }
    }
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
    #[error(
        "\"id\" must be a string of at most 64 bytes or an integer from 0 to 2^53-1 (or be left out), got {got}"
    )]
    BadId {
        /// The id as sent, shortened.
        got: String,
        /// The command the frame named, when its type was valid.
        command: Option<(String, Operation)>,
    },
    #[error("binary frames are not supported; send JSON text frames")]
    Binary,
}

impl FrameError {
    /// The `<route>.<op>` a reply to this error should carry, when the frame
    /// named a valid client operation; otherwise the reply type is `error`.
    pub fn reply_to(&self) -> Option<(&str, Operation)> {
        match self {
            FrameError::MissingPayload { route, op }
            | FrameError::BadId {
                command: Some((route, op)),
                ..
            } => Some((route, *op)),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow, default)]
    ty: Option<&'a RawValue>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
}

/// Parse one text frame from a client. Unknown envelope fields are ignored,
/// as unknown request fields are.
pub fn parse_command(text: &str) -> Result<Command<'_>, Refused<'_>> {
    // Tell "not JSON at all" from "JSON of the wrong shape": clients fix
    // these differently.
    let envelope: Envelope<'_> = serde_json::from_str(text).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            FrameError::NotJson(e.to_string())
        } else {
            FrameError::BadEnvelope(e.to_string())
        }
    })?;
    // The id first: every later refusal carries it.
    let id = match envelope.id.map(Id::parse).transpose() {
        Ok(id) => id.flatten(),
        Err(FrameError::BadId { got, .. }) => {
            // Still answer on the command's reply type when it is one.
            let command = parse_type(envelope.ty)
                .ok()
                .map(|(route, op)| (route.to_owned(), op));
            return Err(FrameError::BadId { got, command }.into());
        }
        Err(error) => return Err(error.into()),
    };
    let refuse = |error| Refused { error, id };
    let (route, op) = parse_type(envelope.ty).map_err(refuse)?;
    let Some(payload) = envelope.payload else {
        return Err(refuse(FrameError::MissingPayload {
            route: route.to_owned(),
            op,
        }));
    };
    Ok(Command {
        route,
        op,
        payload,
        id,
    })
}

/// `<route>.<op>` of a client frame's `type`.
fn parse_type(ty: Option<&RawValue>) -> Result<(&str, Operation), FrameError> {
    let Some(raw) = ty else {
        return Err(FrameError::BadEnvelope("missing field `type`".to_owned()));
    };
    let Ok(ty) = serde_json::from_str::<&str>(raw.get()) else {
        // A `type` with escapes is not borrowable; no valid type has escapes.
        return Err(match serde_json::from_str::<String>(raw.get()) {
            Ok(ty) => FrameError::BadType(ty),
            Err(e) => FrameError::BadEnvelope(format!("\"type\" must be a string: {e}")),
        });
    };
    let Some((route, op)) = ty.rsplit_once('.') else {
        return Err(FrameError::BadType(ty.to_owned()));
    };
    let op = match op {
        "subscribe" => Operation::Subscribe,
        "unsubscribe" => Operation::Unsubscribe,
        "refresh" if route == "auth" => Operation::Refresh,
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
    Ok((route, op))
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
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<Id<'a>>,
    payload: P,
}

fn encode<P: Serialize>(ty: &str, id: Option<Id<'_>>, payload: P) -> String {
    // Only strings, numbers and plain structs: serializing cannot fail.
    serde_json::to_string(&Frame { ty, id, payload }).unwrap_or_default()
}

/// `<route>.<op>.response` with the given reply, echoing the command's `id`.
pub fn reply_frame(route: &str, op: Operation, id: Option<Id<'_>>, reply: &Reply<'_>) -> String {
    encode(&format!("{route}.{}.response", op.as_str()), id, reply)
}

/// The `ok` reply to a command: `message` is "Subscribed" or
/// "Unsubscribed"; `keys` are listed when they differ from `[topic]`.
pub fn ok_reply(
    route: &str,
    op: Operation,
    id: Option<Id<'_>>,
    topic: &str,
    keys: &[Arc<str>],
) -> String {
    let message = match op {
        Operation::Subscribe => "Subscribed",
        Operation::Unsubscribe => "Unsubscribed",
        Operation::Refresh => "Refreshed",
    };
    let differ = !matches!(keys, [key] if **key == *topic) && !keys.is_empty();
    let reply = Reply::Ok {
        message,
        topic,
        topics: differ.then_some(keys),
    };
    reply_frame(route, op, id, &reply)
}

/// The `error` reply to a command.
pub fn error_reply(
    route: &str,
    op: Operation,
    id: Option<Id<'_>>,
    message: &str,
    errors: &[Problem],
) -> String {
    reply_frame(route, op, id, &Reply::Error { message, errors })
}

/// The payload of `auth.refresh.response`: whether the fresh token was
/// taken.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum RefreshReply<'a> {
    /// The connection now runs on the new token (its claims, its expiry).
    Ok,
    /// The token was refused; the connection keeps the old one until it
    /// expires.
    Error {
        /// Why, for people.
        message: &'a str,
    },
}

/// `auth.refresh.response`, echoing the command's `id`.
pub fn refresh_reply(id: Option<Id<'_>>, outcome: Result<(), &str>) -> String {
    let reply = match outcome {
        Ok(()) => RefreshReply::Ok,
        Err(message) => RefreshReply::Error { message },
    };
    encode("auth.refresh.response", id, reply)
}

/// An error about a frame that named no valid operation; `id` is the
/// frame's, when it could be read.
pub fn error_frame(id: Option<Id<'_>>, message: &str) -> String {
    encode(
        "error",
        id,
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
        None,
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
    encode("routes.changed", None, RoutesChanged { routes })
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

    fn refusal(text: &str) -> FrameError {
        parse_command(text).expect_err(text).error
    }

    #[test]
    fn refuses_what_clients_may_not_send() {
        assert!(matches!(refusal("nope"), FrameError::NotJson(_)));
        assert!(matches!(refusal("[1]"), FrameError::BadEnvelope(_)));
        assert!(matches!(
            refusal(r#"{"type":"bars.update","payload":{}}"#),
            FrameError::ServerOnly(_)
        ));
        assert!(matches!(
            refusal(r#"{"type":"bars","payload":{}}"#),
            FrameError::BadType(_)
        ));
        assert!(matches!(
            refusal(r#"{"type":".subscribe","payload":{}}"#),
            FrameError::BadType(_)
        ));
        assert!(matches!(
            refusal(r#"{"type":"bars.publish","payload":{}}"#),
            FrameError::UnknownOperation { .. }
        ));
        assert!(matches!(
            refusal(r#"{"type":"bars.subscribe"}"#),
            FrameError::MissingPayload { .. }
        ));
        assert!(matches!(
            refusal(r#"{"type":7,"payload":{}}"#),
            FrameError::BadEnvelope(_)
        ));
        assert!(matches!(
            refusal(r#"{"payload":{}}"#),
            FrameError::BadEnvelope(_)
        ));
        assert!(matches!(
            refusal(r#"{"type":"bars.sub\u0073cribe","payload":{}}"#),
            FrameError::BadType(_)
        ));
    }

    #[test]
    fn ids_are_echoed_exactly_and_only_when_sent() {
        let cmd = parse_command(r#"{"type":"bars.subscribe","id":"c7","payload":{}}"#).unwrap();
        assert_eq!(cmd.id.map(|id| id.as_json()), Some(r#""c7""#));
        assert_eq!(
            ok_reply("bars", cmd.op, cmd.id, "bars:x", &[]),
            r#"{"type":"bars.subscribe.response","id":"c7","payload":{"status":"ok","message":"Subscribed","topic":"bars:x"}}"#
        );
        let cmd =
            parse_command(r#"{"id":9007199254740991,"type":"a.unsubscribe","payload":1}"#).unwrap();
        assert_eq!(cmd.id.map(|id| id.as_json()), Some("9007199254740991"));
        // Without an id (or with a null one): byte-identical to the old replies.
        for text in [
            r#"{"type":"bars.subscribe","payload":{}}"#,
            r#"{"type":"bars.subscribe","payload":{},"id":null}"#,
        ] {
            let cmd = parse_command(text).unwrap();
            assert_eq!(
                ok_reply("bars", cmd.op, cmd.id, "bars:x", &[]),
                r#"{"type":"bars.subscribe.response","payload":{"status":"ok","message":"Subscribed","topic":"bars:x"}}"#
            );
        }
        // A refused frame whose id was read: the error frame carries it.
        let refused = parse_command(r#"{"type":"bars.publish","id":3,"payload":{}}"#).unwrap_err();
        assert!(
            refused
                .reply()
                .starts_with(r#"{"type":"error","id":3,"payload":"#)
        );
        let refused = parse_command(r#"{"type":"bars.subscribe","id":"x"}"#).unwrap_err();
        assert!(
            refused
                .reply()
                .starts_with(r#"{"type":"bars.subscribe.response","id":"x","payload":"#)
        );
    }

    #[test]
    fn invalid_ids_are_refused_by_name() {
        let long = format!(
            r#"{{"type":"bars.subscribe","id":"{}","payload":{{}}}}"#,
            "x".repeat(65)
        );
        let at_limit = format!(
            r#"{{"type":"bars.subscribe","id":"{}","payload":{{}}}}"#,
            "x".repeat(64)
        );
        assert!(parse_command(&at_limit).is_ok());
        for text in [
            long.as_str(),
            r#"{"type":"bars.subscribe","id":-1,"payload":{}}"#,
            r#"{"type":"bars.subscribe","id":1.5,"payload":{}}"#,
            r#"{"type":"bars.subscribe","id":1e3,"payload":{}}"#,
            r#"{"type":"bars.subscribe","id":9007199254740992,"payload":{}}"#,
            r#"{"type":"bars.subscribe","id":true,"payload":{}}"#,
            r#"{"type":"bars.subscribe","id":{"a":1},"payload":{}}"#,
            r#"{"type":"bars.subscribe","id":["a"],"payload":{}}"#,
        ] {
            let refused = parse_command(text).expect_err(text);
            assert!(matches!(refused.error, FrameError::BadId { .. }), "{text}");
            assert!(refused.id.is_none());
            let reply = refused.reply();
            // On the command's reply type, naming the field, without the bad id.
            assert!(
                reply.starts_with(
                    r#"{"type":"bars.subscribe.response","payload":{"status":"error""#
                ),
                "{reply}"
            );
            assert!(reply.contains(r#"\"id\" must be"#), "{reply}");
        }
        let refused = parse_command(r#"{"type":"nope","id":false,"payload":{}}"#).unwrap_err();
        assert!(refused.reply().starts_with(r#"{"type":"error","payload":"#));
    }

    #[test]
    fn auth_refresh_is_a_command_of_auth_only() {
        let cmd =
            parse_command(r#"{"type":"auth.refresh","id":4,"payload":{"token":"t"}}"#).unwrap();
        assert_eq!((cmd.route, cmd.op), ("auth", Operation::Refresh));
        assert_eq!(
            refresh_reply(cmd.id, Ok(())),
            r#"{"type":"auth.refresh.response","id":4,"payload":{"status":"ok"}}"#
        );
        assert_eq!(
            refresh_reply(None, Err("token expired")),
            r#"{"type":"auth.refresh.response","payload":{"status":"error","message":"token expired"}}"#
        );
        assert!(matches!(
            refusal(r#"{"type":"bars.refresh","payload":{}}"#),
            FrameError::UnknownOperation { .. }
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
