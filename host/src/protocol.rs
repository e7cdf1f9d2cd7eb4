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
    /// A subscribe frame's `recover`: the last position the client saw per
    /// key (empty without one).
    pub recover: Recover,
}

/// Most keys a `recover` may name (a subscription has at most
/// `--max-keys`, 256 by default).
pub const MAX_RECOVER_KEYS: usize = 1024;
/// Longest key a `recover` may name, in bytes (keys are at most
/// `--max-topic-bytes`, 1024 by default).
pub const MAX_RECOVER_KEY_BYTES: usize = 4096;
/// Longest epoch a `recover` may carry, in bytes (the host's are 12).
pub const MAX_EPOCH_BYTES: usize = 64;

/// A subscribe frame's `"recover": {"<key>": {"offset": N, "epoch": "E"}}`:
/// where the client stopped, per key. Checked when the frame is parsed
/// (shape, bounds, no key twice); whether the keys belong to the
/// subscription is the session's to check.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recover(pub Vec<RecoverFrom>);

/// The last update a client saw of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoverFrom {
    pub key: String,
    pub offset: u64,
    pub epoch: String,
}

impl Recover {
    /// Whether the frame carried `recover` (an empty object counts as none).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Where the client stopped on `key`, if it said.
    pub fn get(&self, key: &str) -> Option<&RecoverFrom> {
        self.0.iter().find(|r| r.key == key)
    }

    fn parse(raw: &RawValue) -> Result<Recover, String> {
        use serde::de::{self, MapAccess, Visitor};

        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Position {
            offset: u64,
            epoch: String,
        }

        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Vec<RecoverFrom>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of keys")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<RecoverFrom> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    if out.len() == MAX_RECOVER_KEYS {
                        return Err(de::Error::custom(format_args!(
                            "more than {MAX_RECOVER_KEYS} keys"
                        )));
                    }
                    if key.len() > MAX_RECOVER_KEY_BYTES {
                        return Err(de::Error::custom(format_args!(
                            "a key is longer than {MAX_RECOVER_KEY_BYTES} bytes"
                        )));
                    }
                    if !seen.insert(key.clone()) {
                        return Err(de::Error::custom(format_args!("key {key:?} appears twice")));
                    }
                    let Position { offset, epoch } = map
                        .next_value()
                        .map_err(|e| de::Error::custom(format_args!("key {key:?}: {e}")))?;
                    if epoch.len() > MAX_EPOCH_BYTES {
                        return Err(de::Error::custom(format_args!(
                            "key {key:?}: the epoch is longer than {MAX_EPOCH_BYTES} bytes"
                        )));
                    }
                    out.push(RecoverFrom { key, offset, epoch });
                }
                Ok(out)
            }
        }

        let mut de = serde_json::Deserializer::from_str(raw.get());
        de::Deserializer::deserialize_map(&mut de, Entries)
            .map(Recover)
            .map_err(|e| e.to_string())
    }
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
    #[error(
        "\"recover\" must be {{\"<key>\": {{\"offset\": <integer>, \"epoch\": \"<string>\"}}, ...}}: {problem}"
    )]
    BadRecover { problem: String, route: String },
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
            FrameError::BadRecover { route, .. } => Some((route, Operation::Subscribe)),
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
    #[serde(borrow, default)]
    recover: Option<&'a RawValue>,
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
    // Only a subscribe recovers; elsewhere it is an unknown field, ignored.
    let recover = match envelope.recover {
        Some(raw) if op == Operation::Subscribe && raw.get() != "null" => Recover::parse(raw)
            .map_err(|problem| {
                refuse(FrameError::BadRecover {
                    problem,
                    route: route.to_owned(),
                })
            })?,
        _ => Recover::default(),
    };
    Ok(Command {
        route,
        op,
        payload,
        id,
        recover,
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
        /// A subscribe to a route with history: each key's position now
        /// (the offset of its last update, 0 before the first, and its
        /// epoch). Updates that follow have greater offsets.
        #[serde(skip_serializing_if = "Option::is_none")]
        positions: Option<&'a Positions>,
        /// Present when the subscribe carried `recover`: whether every key
        /// it named was recovered (its missed updates follow this reply).
        /// `false`: at least one was not; refetch those keys' state.
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
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

/// Each key's position, by key, in a subscribe reply.
pub type Positions = std::collections::BTreeMap<Arc<str>, KeyPosition>;

/// Where one key's stream of updates stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct KeyPosition {
    /// The offset of the key's last update (0: none yet in this epoch).
    pub offset: u64,
    /// Changes whenever the key's history is lost (a restart, an
    /// eviction); offsets of different epochs do not compare.
    pub epoch: Arc<str>,
    /// Present for the keys the subscribe's `recover` named: whether the
    /// updates after its offset follow the reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
}

/// What a subscribe to a route that keeps updates adds to its reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retained {
    /// Each key's position; `None` for a route without history.
    pub positions: Option<Positions>,
    /// Whether every key `recover` named was recovered; `None` without
    /// `recover`.
    pub recovered: Option<bool>,
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

fn serde_reply_frame(route: &str, op: Operation, id: Option<Id<'_>>, reply: &Reply<'_>) -> String {
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
    subscribed_reply(route, op, id, topic, keys, None)
}

/// [`ok_reply`], with what a route that keeps updates adds to a subscribe
/// reply (positions, whether `recover` succeeded). Without it, or with
/// nothing in it, the reply is byte-identical to [`ok_reply`]'s.
pub fn subscribed_reply(
    route: &str,
    op: Operation,
    id: Option<Id<'_>>,
    topic: &str,
    keys: &[Arc<str>],
    retained: Option<&Retained>,
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
        positions: retained.and_then(|r| r.positions.as_ref()),
        recovered: retained.and_then(|r| r.recovered),
    };
    reply_frame(route, op, id, &reply)
}

/// `<route>.<op>.response` with the given reply, echoing the command's `id`.
/// An ok reply is written directly: a subscribe storm sends one per command,
/// and serde's tagged-enum path cost several times the bytes written.
/// Byte-identical to serde's encoding (a test compares the two); an error
/// reply is serde's.
pub fn reply_frame(route: &str, op: Operation, id: Option<Id<'_>>, reply: &Reply<'_>) -> String {
    let Reply::Ok {
        message,
        topic,
        topics,
        positions,
        recovered,
    } = reply
    else {
        return serde_reply_frame(route, op, id, reply);
    };
    let keys_len: usize = topics.map_or(0, |k| k.iter().map(|k| k.len() + 3).sum());
    let mut out = String::with_capacity(96 + route.len() + 2 * topic.len() + 2 * keys_len);
    out.push_str("{\"type\":\"");
    push_escaped(route, &mut out);
    out.push('.');
    out.push_str(op.as_str());
    out.push_str(".response\"");
    if let Some(Id(raw)) = id {
        // Valid JSON, checked when the command was read: echoed as sent.
        out.push_str(",\"id\":");
        out.push_str(raw);
    }
    out.push_str(",\"payload\":{\"status\":\"ok\",\"message\":");
    push_json_str(message, &mut out);
    out.push_str(",\"topic\":");
    // Encoded once: a single-key subscription's position is under its topic.
    let topic_json = json_string(topic);
    out.push_str(&topic_json);
    if let Some(keys) = topics {
        out.push_str(",\"topics\":");
        push_json_strs(keys, &mut out);
    }
    if let Some(positions) = positions {
        out.push_str(",\"positions\":{");
        for (i, (key, at)) in positions.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match **key == **topic {
                true => out.push_str(&topic_json),
                false => push_json_str(key, &mut out),
            }
            out.push_str(":{\"offset\":");
            out.push_str(itoa::Buffer::new().format(at.offset));
            out.push_str(",\"epoch\":");
            push_json_str(&at.epoch, &mut out);
            if let Some(recovered) = at.recovered {
                out.push_str(if recovered {
                    ",\"recovered\":true}"
                } else {
                    ",\"recovered\":false}"
                });
            } else {
                out.push('}');
            }
        }
        out.push('}');
    }
    if let Some(recovered) = recovered {
        out.push_str(if *recovered {
            ",\"recovered\":true"
        } else {
            ",\"recovered\":false"
        });
    }
    out.push_str("}}");
    out
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
    let mut out = update_frame_start(route, TopicText::Name(topic), data, 0);
    out.push_str("}}");
    out
}

/// [`update_frame`] with the topic already a JSON string ([`json_string`]):
/// the registry encodes a group's topic once, not once per publication.
pub fn update_frame_encoded(route: &str, topic_json: &str, data: &str) -> String {
    let mut out = update_frame_start(route, TopicText::Json(topic_json), data, 0);
    out.push_str("}}");
    out
}

/// A topic as an update frame gets it: its name, or its name already a
/// JSON string ([`json_string`]).
#[derive(Clone, Copy)]
enum TopicText<'a> {
    Name(&'a str),
    Json(&'a str),
}

/// An update frame up to and including its data, with room for `more`
/// bytes after it: what [`update_frame`] and [`update_frame_at`] share.
fn update_frame_start(route: &str, topic: TopicText<'_>, data: &str, more: usize) -> String {
    let topic_bytes = match topic {
        TopicText::Name(name) => name.len() * 2,
        TopicText::Json(json) => json.len(),
    };
    let mut out = String::with_capacity(48 + route.len() + topic_bytes + data.len() + more);
    out.push_str("{\"type\":\"");
    // Route names are validated at load: [a-z0-9_-] only, nothing to escape.
    out.push_str(route);
    out.push_str(".update\",\"payload\":{\"topic\":");
    match topic {
        TopicText::Name(name) => push_json_str(name, &mut out),
        TopicText::Json(json) => out.push_str(json),
    }
    out.push_str(",\"payload\":");
    out.push_str(data);
    out
}

/// An update of a route with history: [`update_frame`] plus its `key` when
/// the subscription's topic is not that key (the subscription has several
/// keys, each with its own offsets), its `offset` and `epoch`:
/// `{"type":"<route>.update","payload":{"topic":T,"payload":<data>,"key":K,"offset":N,"epoch":"E"}}`.
/// The new fields come last: the frame starts as [`update_frame`]'s does,
/// byte for byte.
pub fn update_frame_at(
    route: &str,
    topic: &str,
    key: &str,
    offset: u64,
    epoch: &str,
    data: &str,
) -> String {
    update_frame_at_encoded(route, topic, None, key, offset, epoch, data)
}

/// [`update_frame_at`], with `topic` already encoded when `topic_json` is
/// given (see [`update_frame_encoded`]).
pub fn update_frame_at_encoded(
    route: &str,
    topic: &str,
    topic_json: Option<&str>,
    key: &str,
    offset: u64,
    epoch: &str,
    data: &str,
) -> String {
    let more = 32 + key.len() * 2 + epoch.len();
    let text = topic_json.map_or(TopicText::Name(topic), TopicText::Json);
    let mut out = update_frame_start(route, text, data, more);
    if key != topic {
        out.push_str(",\"key\":");
        push_json_str(key, &mut out);
    }
    out.push_str(",\"offset\":");
    out.push_str(itoa::Buffer::new().format(offset));
    out.push_str(",\"epoch\":");
    push_json_str(epoch, &mut out);
    out.push_str("}}");
    out
}

/// `s` as a JSON string literal (quoted, escaped as serde_json escapes).
pub fn json_string(s: &str) -> String {
    // Sized exactly: callers keep it (as a boxed str, which would
    // otherwise shrink it with a copy).
    let extra: usize = s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
            0..0x20 => 5,
            _ => 0,
        })
        .sum();
    let mut out = String::with_capacity(s.len() + extra + 2);
    push_json_str(s, &mut out);
    out
}

/// `s` as a JSON string, escaped as serde_json escapes it, without an
/// intermediate allocation (update frames are encoded on the fan-out path,
/// and bars topics have quotes to escape).
pub(crate) fn push_json_str(s: &str, out: &mut String) {
    out.push('"');
    push_escaped(s, out);
    out.push('"');
}

/// `items` as a JSON array of strings.
pub(crate) fn push_json_strs(items: &[Arc<str>], out: &mut String) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(item, out);
    }
    out.push(']');
}

/// `s` as the inside of a JSON string: `"`, `\\` and controls escaped as
/// serde_json escapes them.
fn push_escaped(s: &str, out: &mut String) {
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..0x20 => "",
            _ => continue,
        };
        out.push_str(&s[plain..i]);
        plain = i + 1;
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(escape);
        }
    }
    out.push_str(&s[plain..]);
}

/// `text` (valid JSON) without insignificant whitespace. Publishers may send
/// pretty-printed data; subscribers get it compact, as the captured frames.
pub fn compact_json(text: &str) -> std::borrow::Cow<'_, str> {
    // SIMD search: every update's data is looked at, and almost none has
    // whitespace (a byte loop here was a tenth of the host's own work).
    let bytes = text.as_bytes();
    let needs_work = memchr::memchr3(b' ', b'\n', b'\r', bytes).is_some()
        || memchr::memchr(b'\t', bytes).is_some();
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
    fn strings_are_escaped_as_serde_escapes_them() {
        let long = format!("{}é\"{}", "x".repeat(250), "€\u{1}".repeat(200));
        let mut cases: Vec<String> = [
            "",
            "plain",
            "q:{\"s\":\"a\\\n\u{1}\u{c}\u{7f}\"}",
            "\u{8}\t\r",
        ]
        .map(str::to_owned)
        .to_vec();
        cases.push(long);
        // Multi-byte characters after runs of escapes of every length
        // around 250 bytes.
        for pad in 240..256 {
            cases.push(format!(
                "{}😀é\"",
                "\"".repeat(pad / 2) + &"x".repeat(pad % 2)
            ));
        }
        for case in cases {
            assert_eq!(
                json_string(&case),
                serde_json::to_string(&case).unwrap(),
                "{case:?}"
            );
        }
    }

    #[test]
    fn frames_with_a_topic_encoded_once_are_the_same_frames() {
        for topic in ["bars:x", "q:{\"s\":\"a\\\\\n\u{1}\u{c}\"}"] {
            let json = json_string(topic);
            assert_eq!(json.len(), json.capacity(), "sized exactly: {json}");
            assert_eq!(
                update_frame_encoded("q", &json, "1"),
                update_frame("q", topic, "1")
            );
            for key in [topic, "q:other"] {
                assert_eq!(
                    update_frame_at_encoded("q", topic, Some(&json), key, 9, "e", "[]"),
                    update_frame_at("q", topic, key, 9, "e", "[]"),
                );
            }
        }
    }

    #[test]
    fn ok_replies_written_directly_match_serde_byte_for_byte() {
        let arc = |s: &str| -> Arc<str> { Arc::from(s) };
        let position = |offset, recovered| KeyPosition {
            offset,
            epoch: arc("00ab12cd34ef"),
            recovered,
        };
        // Quotes, backslashes, controls (named and not), DEL, non-ASCII.
        let odd = "q:{\"s\":\"a\\\"b\\\\c\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f}é漢\"}";
        let mut positions = Positions::new();
        positions.insert(arc("q:b"), position(0, None));
        positions.insert(arc(odd), position(u64::MAX, Some(true)));
        positions.insert(arc("q:a"), position(17, Some(false)));
        let keys = [arc("q:a"), arc(odd), arc("q:b")];
        let ids = [None, Some(Id("7")), Some(Id("\"x\\\"y\""))];
        let topics = ["bars:{\"resolution\":\"1\",\"symbol\":\"AAPL\"}", odd];
        for id in ids {
            for topic in topics {
                for listed in [None, Some(&keys[..])] {
                    for positions in [None, Some(&positions)] {
                        for recovered in [None, Some(true), Some(false)] {
                            for op in [Operation::Subscribe, Operation::Unsubscribe] {
                                let reply = Reply::Ok {
                                    message: "Subscribed",
                                    topic,
                                    topics: listed,
                                    positions,
                                    recovered,
                                };
                                let direct = reply_frame("quotes-v2_x", op, id, &reply);
                                let serde = serde_reply_frame("quotes-v2_x", op, id, &reply);
                                assert_eq!(direct, serde);
                            }
                        }
                    }
                }
            }
        }
        let error = Reply::Error {
            message: "no",
            errors: &[],
        };
        assert_eq!(
            reply_frame("bars", Operation::Subscribe, None, &error),
            serde_reply_frame("bars", Operation::Subscribe, None, &error)
        );
    }

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
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut all: String = (0u8..0x80).map(char::from).collect();
        all.push_str("é\u{2028}😀\\\"");
        for s in [
            "",
            "plain",
            r#"bars:{"resolution":"1","symbol":"AAPL"}"#,
            "\u{0}\u{1f}\u{7f}",
            &all,
        ] {
            let mut out = String::new();
            push_json_str(s, &mut out);
            assert_eq!(Some(out), serde_json::to_string(s).ok(), "{s:?}");
        }
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
    fn recover_is_parsed_for_subscribe_and_checked() {
        let cmd = parse_command(
            r#"{"type":"bars.subscribe","payload":{},"recover":{"bars:a":{"offset":5,"epoch":"e1"},"bars:b":{"epoch":"e2","offset":0}}}"#,
        )
        .unwrap();
        assert_eq!(
            cmd.recover.get("bars:a"),
            Some(&RecoverFrom {
                key: "bars:a".into(),
                offset: 5,
                epoch: "e1".into()
            })
        );
        assert_eq!(cmd.recover.0.len(), 2);
        // Elsewhere, and as null, it is nothing.
        for text in [
            r#"{"type":"bars.unsubscribe","payload":{},"recover":7}"#,
            r#"{"type":"bars.subscribe","payload":{},"recover":null}"#,
        ] {
            assert!(parse_command(text).unwrap().recover.is_empty(), "{text}");
        }
        let many: String = (0..=MAX_RECOVER_KEYS)
            .map(|i| format!(r#""k{i}":{{"offset":1,"epoch":"e"}}"#))
            .collect::<Vec<_>>()
            .join(",");
        let many =
            format!(r#"{{"type":"bars.subscribe","id":2,"payload":{{}},"recover":{{{many}}}}}"#);
        let long_key = format!(
            r#"{{"type":"bars.subscribe","payload":{{}},"recover":{{"{}":{{"offset":1,"epoch":"e"}}}}}}"#,
            "k".repeat(MAX_RECOVER_KEY_BYTES + 1)
        );
        let long_epoch = format!(
            r#"{{"type":"bars.subscribe","payload":{{}},"recover":{{"k":{{"offset":1,"epoch":"{}"}}}}}}"#,
            "e".repeat(MAX_EPOCH_BYTES + 1)
        );
        for (text, says) in [
            (
                r#"{"type":"bars.subscribe","payload":{},"recover":[1]}"#,
                "an object of keys",
            ),
            (
                r#"{"type":"bars.subscribe","payload":{},"recover":"x"}"#,
                "an object of keys",
            ),
            (
                r#"{"type":"bars.subscribe","payload":{},"recover":{"k":{"offset":-1,"epoch":"e"}}}"#,
                "integer `-1`, expected u64",
            ),
            (
                r#"{"type":"bars.subscribe","payload":{},"recover":{"k":{"offset":1.5,"epoch":"e"}}}"#,
                "floating point `1.5`",
            ),
            (
                r#"{"type":"bars.subscribe","payload":{},"recover":{"k":{"offset":1}}}"#,
                "missing field `epoch`",
            ),
            (
                r#"{"type":"bars.subscribe","payload":{},"recover":{"k":{"offset":1,"epoch":"e","x":1}}}"#,
                "unknown field `x`",
            ),
            (
                r#"{"type":"bars.subscribe","payload":{},"recover":{"k":{"offset":1,"epoch":"e"},"k":{"offset":2,"epoch":"e"}}}"#,
                "appears twice",
            ),
            (&many, "more than 1024 keys"),
            (&long_key, "longer than 4096 bytes"),
            (&long_epoch, "longer than 64 bytes"),
        ] {
            let refused = parse_command(text).expect_err(text);
            assert!(
                matches!(refused.error, FrameError::BadRecover { .. }),
                "{text}"
            );
            let reply = refused.reply();
            assert!(
                reply.starts_with(r#"{"type":"bars.subscribe.response","#),
                "{reply}"
            );
            assert!(reply.contains(says), "{says}: {reply}");
        }
    }

    #[test]
    fn updates_with_history_carry_their_position() {
        assert_eq!(
            update_frame_at("bars", "bars:x", "bars:x", 7, "e1", r#"{"a":1}"#),
            r#"{"type":"bars.update","payload":{"topic":"bars:x","payload":{"a":1},"offset":7,"epoch":"e1"}}"#
        );
        assert_eq!(
            update_frame_at("trades", "trades:{\"s\":1}", "trades:A", 1, "e", "1"),
            r#"{"type":"trades.update","payload":{"topic":"trades:{\"s\":1}","payload":1,"key":"trades:A","offset":1,"epoch":"e"}}"#
        );
        let mut positions = Positions::new();
        positions.insert(
            Arc::from("bars:x"),
            KeyPosition {
                offset: 3,
                epoch: Arc::from("e1"),
                recovered: Some(true),
            },
        );
        let retained = Retained {
            positions: Some(positions),
            recovered: Some(true),
        };
        assert_eq!(
            subscribed_reply(
                "bars",
                Operation::Subscribe,
                None,
                "bars:x",
                &[],
                Some(&retained)
            ),
            r#"{"type":"bars.subscribe.response","payload":{"status":"ok","message":"Subscribed","topic":"bars:x","positions":{"bars:x":{"offset":3,"epoch":"e1","recovered":true}},"recovered":true}}"#
        );
        assert_eq!(
            subscribed_reply(
                "bars",
                Operation::Subscribe,
                None,
                "bars:x",
                &[],
                Some(&Retained::default())
            ),
            ok_reply("bars", Operation::Subscribe, None, "bars:x", &[])
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
