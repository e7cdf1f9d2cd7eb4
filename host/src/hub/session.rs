//! One client's session: its commands in, its replies and updates out.
//!
//! A session is what a connection is to the host core: an id, an
//! [`Outbox`] (replies and updates share it, so their order is kept) and the
//! subscriptions the registry records for it. The transport (the WebSocket
//! in [`crate::http`]) feeds it frames and drains its outbox; dropping the
//! session ends its subscriptions.
//!
//! A subscription is recorded with its canonical request: the request with
//! the fields its route's schema does not declare dropped, as canonical
//! JSON. A re-subscribe or an unsubscribe with the same request finds it
//! there first, without calling the plugin, so neither depends on what the
//! plugin serving the route now would make of it.
//!
//! A session may carry an [`Identity`]: the verified claims of the client's
//! token (the transport verifies it before opening the session). Its
//! `routes` claim limits the routes the client may subscribe to, and every
//! subscribe asks the route's plugin (`authorize`) whether these claims may
//! have this request. `auth.refresh` replaces the identity with a fresh
//! token's, checked by the session's [`Authenticator`].

use std::{sync::Arc, time::SystemTime};

use serde_json::{Map, Value, value::RawValue};
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::{
    broker::{
        redis::RedisBroker,
        streams::{self, JoinError},
    },
    connections::{Admitted, Listed},
    history::{self, History, Joining},
    metrics::{self, Metrics},
    outbox::{CloseReason, Frame, Outbox},
    registry::{Bounds, ConnId, LimitReached, NewSubscription, Registry},
    routes::{RouteTable, UnknownRoute},
};
use crate::{
    plugin::{CallError, Lease, Problem, Subscription},
    protocol::{self, Command, FrameError, Operation, Recover, Retained},
};

/// Why a subscribe or unsubscribe failed. The text is the error reply's
/// message.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    UnknownRoute(#[from] UnknownRoute),
    #[error("invalid request: {0}")]
    NotJson(String),
    #[error("{}", protocol::describe("invalid request", .0))]
    InvalidRequest(Vec<Problem>),
    #[error("cannot subscribe: {0}")]
    Plugin(#[from] CallError),
    /// The route's plugin refused these claims this request: its message.
    #[error("{0}")]
    Forbidden(String),
    #[error("route {0:?} is not among this token's routes")]
    RouteNotAllowed(String),
    #[error(transparent)]
    Limit(#[from] LimitReached),
    #[error("\"recover\" names the key {0:?}, which is not one of this subscription's keys")]
    ForeignRecoverKey(String),
}

impl CommandError {
    /// The schema violations, when the request did not match the schema.
    pub fn problems(&self) -> &[Problem] {
        match self {
            CommandError::InvalidRequest(problems) => problems,
            _ => &[],
        }
    }
}

/// Who the client is: its token's verified claims.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The `sub` claim, when the token has one.
    pub subject: Option<String>,
    /// Every claim, as JSON text: what the plugins' `authorize` receives.
    pub claims: Arc<str>,
    /// The `routes` claim: the only routes the client may subscribe to
    /// (`None`: every route).
    pub routes: Option<Vec<String>>,
    /// When the token expires (`exp`).
    pub expires: Option<SystemTime>,
}

/// A token refused; the text says why, for the client.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unauthenticated(pub String);

/// Verifies a client's token (the transport's concern: which keys, which
/// algorithms).
pub trait Authenticator: Send + Sync {
    fn verify(&self, token: &str) -> Result<Identity, Unauthenticated>;
}

/// The claims `authorize` receives without authentication.
const NO_CLAIMS: &str = "null";

/// What a session is handed by the host: the parts it uses, no more.
pub struct Parts {
    pub routes: Arc<RouteTable>,
    pub registry: Arc<Registry>,
    /// What routes with retention keep: snapshots and recovery.
    pub history: Arc<History>,
    /// With Redis: where the histories live instead.
    pub shared: Option<Arc<RedisBroker>>,
    /// Most bytes of update frames one subscribe replays.
    pub replay_budget: usize,
    pub outbox: Arc<Outbox>,
    /// Subscriptions one session may hold.
    pub max_subscriptions: usize,
    /// Subscriptions all sessions together may hold.
    pub max_total_subscriptions: usize,
    /// Distinct routing keys all sessions together may hold.
    pub max_total_keys: usize,
    pub admitted: Admitted,
    /// Lists the session for frames sent to every client.
    pub listed: Listed,
    /// Tells the host the session is still open.
    pub open: TaskTrackerToken,
    /// Where commands and closes are counted.
    pub metrics: Arc<Metrics>,
}

pub struct Session {
    conn: ConnId,
    routes: Arc<RouteTable>,
    registry: Arc<Registry>,
    history: Arc<History>,
    shared: Option<Arc<RedisBroker>>,
    replay_budget: usize,
    outbox: Arc<Outbox>,
    bounds: Bounds,
    /// Only routes whose plugin lists this tag (a per-module endpoint).
    tag: Option<Arc<str>>,
    /// The client's identity and who checks a fresh token; `None` without
    /// authentication.
    auth: Option<Auth>,
    metrics: Arc<Metrics>,
    // Held for the session's lifetime; each undoes itself when dropped.
    _admitted: Admitted,
    _listed: Listed,
    _open: TaskTrackerToken,
}

impl Session {
    pub fn new(parts: Parts) -> Session {
        Session {
            conn: parts.admitted.id,
            metrics: parts.metrics,
            routes: parts.routes,
            registry: parts.registry,
            history: parts.history,
            shared: parts.shared,
            replay_budget: parts.replay_budget,
            outbox: parts.outbox,
            bounds: Bounds {
                per_connection: parts.max_subscriptions,
                subscriptions: parts.max_total_subscriptions,
                keys: parts.max_total_keys,
            },
            tag: None,
            auth: None,
            _admitted: parts.admitted,
            _listed: parts.listed,
            _open: parts.open,
        }
    }

    /// Serve only the routes whose plugin lists `tag` among its tags; any
    /// other route is unknown to this session.
    pub fn only_tagged(mut self, tag: &str) -> Session {
        self.tag = Some(Arc::from(tag));
        self
    }

    /// A session of the client `identity`, whose `auth.refresh` tokens
    /// `verifier` checks.
    pub fn authenticated(
        mut self,
        identity: Identity,
        verifier: Arc<dyn Authenticator>,
    ) -> Session {
        self.auth = Some(Auth {
            identity: parking_lot::Mutex::new(Arc::new(identity)),
            verifier,
        });
        self
    }

    pub fn id(&self) -> ConnId {
        self.conn
    }

    /// The client's identity now (`None` without authentication).
    pub fn identity(&self) -> Option<Arc<Identity>> {
        self.auth.as_ref().map(|a| Arc::clone(&a.identity.lock()))
    }

    /// When the client's token expires; the transport closes the connection
    /// then (4001), unless a refresh moved it.
    pub fn expires(&self) -> Option<SystemTime> {
        self.identity().and_then(|i| i.expires)
    }

    /// Where the session's frames wait for the transport.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// End every subscription, then ask the transport to close the
    /// connection with `reason` after what is already queued: nothing is
    /// delivered after the close frame.
    pub fn close(&self, reason: CloseReason) {
        self.registry.remove_conn(self.conn);
        self.metrics.closed(reason.code);
        self.outbox.close(reason);
    }

    /// Queue a frame for the client. If the queue is full the connection is
    /// already closing, and the frame does not matter.
    pub fn send(&self, frame: String) {
        let _ = self.outbox.push(Frame::from(frame));
    }

    /// Handle one text frame from the client; the reply goes to the outbox.
    pub async fn handle_text(&self, text: &str) {
        // Updates pushed while the command runs wait behind its reply: a
        // client sees the subscribe reply before the subscription's first
        // update (a publication can reach the new subscription between its
        // registration and the reply).
        let _hold = self.outbox.hold();
        let frame = match protocol::parse_command(text) {
            Ok(command) => self.handle(command).await,
            Err(refused) => {
                self.metrics.command(metrics::Command::invalid, false);
                refused.reply()
            }
        };
        self.send(frame);
    }

    /// The client sent a binary frame, which the protocol does not use.
    pub fn handle_binary(&self) {
        self.metrics.command(metrics::Command::invalid, false);
        self.send(protocol::error_frame(None, &FrameError::Binary.to_string()));
    }

    async fn handle(&self, command: Command<'_>) -> String {
        let Command {
            route,
            op,
            payload,
            id,
            recover,
        } = command;
        let result = match op {
            Operation::Refresh => {
                return match self.refresh(payload) {
                    Ok(()) => protocol::refresh_reply(id, Ok(())),
                    Err(e) => protocol::refresh_reply(id, Err(&e.to_string())),
                };
            }
            Operation::Subscribe => self
                .subscribe_recovering(route, payload, &recover)
                .await
                .map(|(sub, retained)| {
                    protocol::subscribed_reply(
                        route,
                        op,
                        id,
                        &sub.topic,
                        &sub.keys,
                        Some(&retained),
                    )
                }),
            Operation::Unsubscribe => self
                .unsubscribe(route, payload)
                .await
                .map(|topic| protocol::ok_reply(route, op, id, &topic, &[])),
        };
        let counted = match op {
            Operation::Unsubscribe => metrics::Command::unsubscribe,
            _ => metrics::Command::subscribe,
        };
        self.metrics.command(counted, result.is_ok());
        result
            .unwrap_or_else(|e| protocol::error_reply(route, op, id, &e.to_string(), e.problems()))
    }

    /// Subscribe to `route` with `request`. Subscribing twice is idempotent,
    /// also across plugin upgrades: the same request finds the subscription
    /// already held, under its topic.
    pub async fn subscribe(
        &self,
        route: &str,
        raw: &RawValue,
    ) -> Result<Subscription, CommandError> {
        self.subscribe_recovering(route, raw, &Recover::default())
            .await
            .map(|(subscription, _)| subscription)
    }

    /// [`Session::subscribe`], recovering what the client missed where
    /// `recover` says it stopped (routes with retention; see
    /// [`History::subscribe`]). The frames it queues follow the reply only
    /// while the outbox is held ([`Session::handle_text`] holds it).
    pub async fn subscribe_recovering(
        &self,
        route: &str,
        raw: &RawValue,
        recover: &Recover,
    ) -> Result<(Subscription, Retained), CommandError> {
        let identity = self.identity();
        if let Some(routes) = identity.as_ref().and_then(|i| i.routes.as_ref())
            && !routes.iter().any(|r| r == route)
        {
            return Err(CommandError::RouteNotAllowed(route.to_owned()));
        }
        let plugin = self.lease(route)?;
        // The same text accepted before by this version: valid, and its
        // canonical form and topics known (a watch list many clients share).
        let (request, known) = match plugin.validated(raw.get()) {
            Some((request, resolved)) => (request, Some(resolved)),
            None => {
                let value = parse(raw)?;
                plugin
                    .request_schema
                    .check(&value)
                    .map_err(CommandError::InvalidRequest)?;
                (
                    canonical_request(&plugin.request_schema.source, value),
                    None,
                )
            }
        };
        // Every time, a subscription already held too: the claims may have
        // changed since (a refresh).
        let claims = identity.as_ref().map_or(NO_CLAIMS, |i| &i.claims);
        plugin
            .authorize(claims, &request)
            .await
            .map_err(|e| match e {
                CallError::Rejected(message) => CommandError::Forbidden(message),
                other => CommandError::Plugin(other),
            })?;
        if let Some((topic, keys)) = self.registry.held_by_request(self.conn, route, &request) {
            let retained = self
                .join(&plugin, &topic, &keys, recover, || Ok(false))
                .await?;
            return Ok((Subscription { topic, keys }, retained));
        }
        // The plugin reads the request as sent, as it always has; what is
        // stored (and resolved again after an upgrade) is the canonical one.
        let resolved = match known {
            Some(resolved) => resolved,
            None => plugin.topics_validated(raw.get(), &request).await?,
        };
        // Already held under this topic: idempotent, nothing changes.
        let retained = self
            .join(&plugin, &resolved.topic, &resolved.keys, recover, || {
                self.registry.add(
                    NewSubscription {
                        conn: self.conn,
                        outbox: &self.outbox,
                        route: &plugin.route,
                        topic: &resolved.topic,
                        request: &request,
                        keys: &resolved.keys,
                        resolved_by: &plugin.sha256,
                    },
                    &self.bounds,
                )
            })
            .await?;
        Ok((resolved, retained))
    }

    /// `register` the subscription, and for a route with retention queue
    /// its snapshot or recovered updates (see [`History::subscribe`]; with
    /// Redis up, [`streams::join`]).
    async fn join(
        &self,
        plugin: &Lease,
        topic: &str,
        keys: &[Arc<str>],
        recover: &Recover,
        register: impl FnOnce() -> Result<bool, LimitReached>,
    ) -> Result<Retained, CommandError> {
        if let Some(key) = history::foreign_key(recover, keys) {
            return Err(CommandError::ForeignRecoverKey(key.to_owned()));
        }
        let joining = || Joining {
            route: &plugin.route,
            topic,
            keys,
            retention: &plugin.retention,
            recover,
            outbox: &self.outbox,
        };
        let shared = self.shared.as_ref().filter(|redis| redis.is_up());
        let (Some(redis), true) = (shared, self.history.keeps(&plugin.retention)) else {
            return Ok(self.history.subscribe(joining(), register)?);
        };
        let registry = &self.registry;
        let count = |key: &str| registry.subscriber_count(key);
        // Boxed: the Redis join's future is most of a subscribe's size, and
        // without Redis every command would carry (and move) it.
        let join = streams::join(redis, joining(), self.replay_budget, register, count);
        match Box::pin(join).await {
            Ok(retained) => Ok(retained),
            Err(JoinError::Register(e)) => Err(e.into()),
            // Redis failed meanwhile: subscribed, nothing replayed; the
            // positions are this node's own, which no client recovers from.
            Err(JoinError::Unavailable { .. }) => Ok(self
                .history
                .subscribe(joining(), || Ok::<_, LimitReached>(false))?),
        }
    }

    /// End the subscription made with `request`; the topic it had.
    /// Unsubscribing from what is not held succeeds.
    ///
    /// What the client holds is looked up first, by the request as sent
    /// and as the current version's schema reduces it, without calling the
    /// plugin: a client can leave even when the route's current version
    /// rejects its old request or cannot resolve it. Only a request held
    /// under no such form is resolved by the plugin, to find its topic.
    pub async fn unsubscribe(
        &self,
        route: &str,
        request: &RawValue,
    ) -> Result<Arc<str>, CommandError> {
        let value = parse(request)?;
        let plugin = self.lease(route);
        let as_sent = value.to_string();
        let reduced = plugin
            .as_ref()
            .ok()
            .map(|p| canonical_request(&p.request_schema.source, value.clone()));
        let forms: Vec<&str> = std::iter::once(as_sent.as_str())
            .chain(reduced.as_deref())
            .collect();
        if let Some(topic) = self.registry.remove_request(self.conn, route, &forms) {
            return Ok(topic);
        }
        let plugin = plugin?;
        plugin
            .request_schema
            .check(&value)
            .map_err(CommandError::InvalidRequest)?;
        let resolved = plugin.topics(request.get()).await?;
        let removed = self
            .registry
            .remove_topic(self.conn, route, &resolved.topic);
        Ok(removed.unwrap_or(resolved.topic))
    }

    /// `auth.refresh`: take a fresh token for the same subject, expiring no
    /// earlier than the current one. On failure the current token stays
    /// (and the connection closes when it expires).
    fn refresh(&self, payload: &RawValue) -> Result<(), Unauthenticated> {
        #[derive(serde::Deserialize)]
        struct Refresh {
            token: String,
        }
        let Some(auth) = &self.auth else {
            return Err(Unauthenticated(
                "authentication is off on this host: there is no token to refresh".into(),
            ));
        };
        let Refresh { token } = serde_json::from_str(payload.get())
            .map_err(|_| Unauthenticated("payload must be {\"token\": \"<JWT>\"}".into()))?;
        let fresh = auth.verifier.verify(&token)?;
        let mut identity = auth.identity.lock();
        if fresh.subject != identity.subject {
            return Err(Unauthenticated(
                "the new token is for another subject (sub)".into(),
            ));
        }
        if fresh.expires < identity.expires {
            return Err(Unauthenticated(
                "the new token expires before the current one".into(),
            ));
        }
        *identity = Arc::new(fresh);
        tracing::debug!("token refreshed");
        Ok(())
    }

    /// The plugin serving `route`, if this session may use it.
    fn lease(&self, route: &str) -> Result<Lease, UnknownRoute> {
        match &self.tag {
            None => self.routes.lease_or_unknown(route),
            Some(tag) => self.routes.lease_tagged(route, tag),
        }
    }
}

/// An authenticated session's identity, and who checks its fresh tokens.
struct Auth {
    identity: parking_lot::Mutex<Arc<Identity>>,
    verifier: Arc<dyn Authenticator>,
}

/// The request as JSON. The payload is valid JSON (the envelope parsed);
/// depth is bounded by serde_json's recursion limit.
fn parse(request: &RawValue) -> Result<Value, CommandError> {
    serde_json::from_str(request.get()).map_err(|e| CommandError::NotJson(e.to_string()))
}

impl Drop for Session {
    fn drop(&mut self) {
        self.registry.remove_conn(self.conn);
    }
}

/// How many `$ref`s are followed to find one value's schema: enough for
/// any schema a generator writes, and a reference cycle ends.
const MAX_REF_HOPS: usize = 16;

/// Keywords under which the properties an object may have are decided by
/// more than `properties`: where they appear, the value is kept as it is.
/// A `match` over the schema's own keywords: every subscribe prunes its
/// request, and looking each of these up in every schema node was most of
/// what pruning cost.
fn is_combinator(keyword: &str) -> bool {
    matches!(
        keyword,
        "allOf"
            | "anyOf"
            | "oneOf"
            | "not"
            | "if"
            | "then"
            | "else"
            | "dependentSchemas"
            | "dependencies"
            | "unevaluatedProperties"
            | "patternProperties"
            | "propertyNames"
            | "prefixItems"
            | "$dynamicRef"
            | "$recursiveRef"
    )
}

/// A (schema-valid) request as it is stored (and resolved again when the
/// route's plugin is upgraded): object properties its schema does not
/// declare are dropped (where the
/// schema does not let an object have more properties than it names), and
/// the JSON is canonical (object keys sorted, no spaces).
///
/// Conservative: where the schema says more than `properties`/`items`
/// (combinators, pattern properties, references it cannot follow), the
/// value is kept whole. The work is one visit of each value node, each
/// following at most [`MAX_REF_HOPS`] references.
pub fn canonical_request(schema: &Value, mut request: Value) -> Arc<str> {
    prune(schema, schema, &mut request);
    // serde_json's maps are sorted (no `preserve_order`): canonical.
    // Serialising a `Value` of strings and numbers cannot fail.
    Arc::from(serde_json::to_string(&request).unwrap_or_default())
}

fn prune(root: &Value, schema: &Value, value: &mut Value) {
    let Some(schema) = resolve(root, schema, value) else {
        return;
    };
    if schema.keys().any(|k| is_combinator(k)) {
        return;
    }
    match value {
        Value::Object(map) => {
            let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
                return;
            };
            let open = schema
                .get("additionalProperties")
                .is_some_and(|a| a != &Value::Bool(false));
            if !open {
                map.retain(|k, _| properties.contains_key(k));
            }
            for (k, v) in map.iter_mut() {
                if let Some(sub) = properties.get(k) {
                    prune(root, sub, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items").filter(|i| i.is_object()) {
                for v in items {
                    prune(root, item, v);
                }
            }
        }
        _ => {}
    }
}

/// Keywords that say nothing about which properties an object may have.
fn is_annotation(keyword: &str) -> bool {
    matches!(
        keyword,
        "$schema"
            | "$defs"
            | "definitions"
            | "$comment"
            | "title"
            | "description"
            | "default"
            | "examples"
            | "deprecated"
            | "readOnly"
            | "writeOnly"
    )
}

/// The schema object that describes `value`: `$ref`s followed (local ones
/// only), and an optional value's `anyOf`/`oneOf` `[X, {"type": "null"}]`
/// taken as `X`. `None` when it cannot be told.
fn resolve<'s>(
    root: &'s Value,
    mut schema: &'s Value,
    value: &Value,
) -> Option<&'s Map<String, Value>> {
    for _ in 0..MAX_REF_HOPS {
        let object = schema.as_object()?;
        let others_are_annotations =
            |keyword: &str| object.keys().all(|k| k == keyword || is_annotation(k));
        if let Some(reference) = object.get("$ref") {
            // A `$ref` beside other constraints: keep the value whole.
            if !others_are_annotations("$ref") {
                return None;
            }
            schema = local_ref(root, reference.as_str()?)?;
            continue;
        }
        let optional = ["anyOf", "oneOf"].into_iter().find_map(|keyword| {
            let branches = object.get(keyword)?.as_array()?;
            let [a, b] = branches.as_slice() else {
                return None;
            };
            let is_null = |s: &Value| s.get("type").and_then(Value::as_str) == Some("null");
            let other = match (is_null(a), is_null(b)) {
                (true, false) => b,
                (false, true) => a,
                _ => return None,
            };
            others_are_annotations(keyword).then_some(other)
        });
        match optional {
            Some(other) if !value.is_null() => schema = other,
            _ => return Some(object),
        }
    }
    None
}

/// The schema a local `$ref` (`#`, `#/$defs/X`, `#/definitions/X`, any
/// JSON pointer into the root) points at.
fn local_ref<'s>(root: &'s Value, reference: &str) -> Option<&'s Value> {
    let pointer = reference.strip_prefix('#')?;
    if !pointer.contains('%') {
        return root.pointer(pointer);
    }
    root.pointer(&percent_decode(pointer)?)
}

fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(schema: Value, request: Value) -> String {
        canonical_request(&schema, request).to_string()
    }

    #[test]
    fn drops_undeclared_fields_and_sorts_keys() {
        let schema = json!({
            "type": "object",
            "properties": { "symbol": { "type": "string" }, "resolution": { "type": "string" } },
        });
        assert_eq!(
            canon(
                schema,
                json!({"symbol": "AAPL", "junk": "x".repeat(1000), "resolution": "1"})
            ),
            r#"{"resolution":"1","symbol":"AAPL"}"#
        );
    }

    #[test]
    fn follows_refs_arrays_and_optional_values() {
        let schema = json!({
            "type": "object",
            "properties": {
                "legs": { "type": "array", "items": { "$ref": "#/$defs/Leg" } },
                "main": { "anyOf": [{ "$ref": "#/$defs/Leg" }, { "type": "null" }] },
                "odd": { "$ref": "#/definitions/Vec%3CLeg%3E" },
            },
            "$defs": {
                "Leg": { "type": "object", "properties": { "symbol": { "type": "string" } } },
            },
            "definitions": {
                "Vec<Leg>": { "type": "array", "items": { "$ref": "#/$defs/Leg" } },
            },
        });
        let request = json!({
            "legs": [{"symbol": "A", "x": 1}, {"symbol": "B", "y": 2}],
            "main": {"symbol": "C", "z": 3},
            "odd": [{"symbol": "D", "w": 4}],
            "extra": true,
        });
        assert_eq!(
            canon(schema.clone(), request),
            r#"{"legs":[{"symbol":"A"},{"symbol":"B"}],"main":{"symbol":"C"},"odd":[{"symbol":"D"}]}"#
        );
        assert_eq!(
            canon(schema, json!({"main": null, "x": 1})),
            r#"{"main":null}"#
        );
    }

    #[test]
    fn keeps_what_the_schema_does_not_pin_down() {
        // Maps (additionalProperties), combinators, objects without
        // declared properties, unresolvable or cyclic references.
        let map = json!({
            "type": "object",
            "properties": { "a": { "type": "integer" } },
            "additionalProperties": { "type": "string" },
        });
        assert_eq!(canon(map, json!({"a": 1, "b": "x"})), r#"{"a":1,"b":"x"}"#);
        let one_of = json!({
            "oneOf": [
                { "type": "object", "properties": { "a": {} } },
                { "type": "object", "properties": { "b": {} } },
            ],
        });
        assert_eq!(canon(one_of, json!({"b": 1, "c": 2})), r#"{"b":1,"c":2}"#);
        assert_eq!(
            canon(json!({"type": "object"}), json!({"z": 1, "a": 2})),
            r#"{"a":2,"z":1}"#
        );
        let remote = json!({ "$ref": "https://example.com/schema.json" });
        assert_eq!(canon(remote, json!({"k": 1})), r#"{"k":1}"#);
        let cyclic = json!({ "$ref": "#/$defs/A", "$defs": { "A": { "$ref": "#/$defs/A" } } });
        assert_eq!(canon(cyclic, json!({"k": 1})), r#"{"k":1}"#);
        assert_eq!(canon(json!(true), json!({"k": 1})), r#"{"k":1}"#);
    }

    #[test]
    fn a_self_referencing_schema_is_walked_once_per_value() {
        let schema = json!({
            "$ref": "#/$defs/Node",
            "$defs": {
                "Node": {
                    "type": "object",
                    "properties": { "next": { "$ref": "#/$defs/Node" }, "v": {} },
                },
            },
        });
        // 100 levels, each with junk: every level pruned, nothing more.
        let mut request = json!({"v": 0, "junk": 0});
        for i in 1..100 {
            request = json!({"v": i, "junk": i, "next": request});
        }
        let text = canon(schema, request);
        assert!(!text.contains("junk"));
        assert_eq!(text.matches("\"v\"").count(), 100);
    }
}
