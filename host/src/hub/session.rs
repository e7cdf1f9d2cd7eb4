//! One client's session: its commands in, its replies and updates out.
//!
//! A session is what a connection is to the host core: an id, an
//! [`Outbox`] (replies and updates share it, so their order is kept) and the
//! subscriptions the registry records for it. The transport (the WebSocket
//! in [`crate::http`]) feeds it frames and drains its outbox; dropping the
//! session ends its subscriptions.

use std::sync::Arc;

use serde_json::value::RawValue;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::{
    connections::{Admitted, Listed},
    outbox::{CloseReason, Frame, Outbox},
    registry::{ConnId, NewSubscription, Registry},
    routes::{RouteTable, UnknownRoute},
};
use crate::{
    plugin::{CallError, Lease, Problem, Subscription},
    protocol::{self, Command, FrameError, Operation},
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
    #[error("subscription limit reached ({0} per connection)")]
    TooManySubscriptions(usize),
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

/// What a session is handed by the host: the parts it uses, no more.
pub struct Parts {
    pub routes: Arc<RouteTable>,
    pub registry: Arc<Registry>,
    pub outbox: Arc<Outbox>,
    /// Subscriptions one session may hold.
    pub max_subscriptions: usize,
    pub admitted: Admitted,
    /// Lists the session for frames sent to every client.
    pub listed: Listed,
    /// Tells the host the session is still open.
    pub open: TaskTrackerToken,
}

pub struct Session {
    conn: ConnId,
    routes: Arc<RouteTable>,
    registry: Arc<Registry>,
    outbox: Arc<Outbox>,
    max_subscriptions: usize,
    // Held for the session's lifetime; each undoes itself when dropped.
    _admitted: Admitted,
    _listed: Listed,
    _open: TaskTrackerToken,
}

impl Session {
    pub fn new(parts: Parts) -> Session {
        Session {
            conn: parts.admitted.id,
            routes: parts.routes,
            registry: parts.registry,
            outbox: parts.outbox,
            max_subscriptions: parts.max_subscriptions,
            _admitted: parts.admitted,
            _listed: parts.listed,
            _open: parts.open,
        }
    }

    pub fn id(&self) -> ConnId {
        self.conn
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
        self.outbox.close(reason);
    }

    /// Queue a frame for the client. If the queue is full the connection is
    /// already closing, and the frame does not matter.
    pub fn send(&self, frame: String) {
        let _ = self.outbox.push(Frame::from(frame));
    }

    /// Handle one text frame from the client; the reply goes to the outbox.
    pub async fn handle_text(&self, text: &str) {
        let frame = match protocol::parse_command(text) {
            Ok(command) => self.handle(command).await,
            Err(error) => match error.reply_to() {
                Some((route, op)) => protocol::error_reply(route, op, &error.to_string(), &[]),
                None => protocol::error_frame(&error.to_string()),
            },
        };
        self.send(frame);
    }

    /// The client sent a binary frame, which the protocol does not use.
    pub fn handle_binary(&self) {
        self.send(protocol::error_frame(&FrameError::Binary.to_string()));
    }

    async fn handle(&self, command: Command<'_>) -> String {
        let Command { route, op, payload } = command;
        let result = match op {
            Operation::Subscribe => self
                .subscribe(route, payload)
                .await
                .map(|sub| protocol::ok_reply(route, op, &sub.topic, &sub.keys)),
            Operation::Unsubscribe => self
                .unsubscribe(route, payload)
                .await
                .map(|topic| protocol::ok_reply(route, op, &topic, &[])),
        };
        result.unwrap_or_else(|e| protocol::error_reply(route, op, &e.to_string(), e.problems()))
    }

    /// Subscribe to `route` with `request`. Subscribing twice is idempotent.
    pub async fn subscribe(
        &self,
        route: &str,
        request: &RawValue,
    ) -> Result<Subscription, CommandError> {
        let (plugin, request, resolved) = self.resolve(route, request).await?;
        let registry = &self.registry;
        let max = self.max_subscriptions;
        if !registry.holds(self.conn, &resolved.topic) && registry.held_count(self.conn) >= max {
            return Err(CommandError::TooManySubscriptions(max));
        }
        // Already held: idempotent, nothing changes.
        registry.add(NewSubscription {
            conn: self.conn,
            outbox: &self.outbox,
            route: &plugin.route,
            topic: &resolved.topic,
            request: &request,
            keys: &resolved.keys,
            resolved_by: &plugin.sha256,
        });
        Ok(resolved)
    }

    /// End the subscription made with `request`; the topic it had.
    /// Unsubscribing from what is not held succeeds.
    pub async fn unsubscribe(
        &self,
        route: &str,
        request: &RawValue,
    ) -> Result<Arc<str>, CommandError> {
        let (_, request, resolved) = self.resolve(route, request).await?;
        // Unsubscribe by what was registered: a plugin upgraded since may
        // resolve the same request to other keys or topic.
        let removed = self
            .registry
            .remove(self.conn, route, &resolved.topic, &request);
        Ok(removed.unwrap_or(resolved.topic))
    }

    /// The route's plugin, the parsed request, and what it resolves to.
    async fn resolve(
        &self,
        route: &str,
        request: &RawValue,
    ) -> Result<(Lease, serde_json::Value, Subscription), CommandError> {
        let plugin = self.routes.lease_or_unknown(route)?;
        // The payload is valid JSON: the envelope parsed. Depth is bounded
        // by serde_json's recursion limit.
        let value: serde_json::Value = serde_json::from_str(request.get())
            .map_err(|e| CommandError::NotJson(e.to_string()))?;
        plugin
            .request_schema
            .check(&value)
            .map_err(CommandError::InvalidRequest)?;
        let resolved = plugin.topics(request.get()).await?;
        Ok((plugin, value, resolved))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.registry.remove_conn(self.conn);
    }
}
