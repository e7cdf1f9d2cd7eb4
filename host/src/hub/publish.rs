//! Publishing updates ([`publish`], which `Host::publish` calls);
//! `POST /api/v1/publish` is a thin JSON wrapper around it (in
//! [`crate::http`]).
//!
//! An update names its route and either the subscription request it is for
//! (the route's plugin turns it into keys, so publishers never build key
//! strings) or a key directly. Its data is checked against the route's data
//! schema. One bad update in a batch is reported and delivers nothing; the
//! others are delivered.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, value::RawValue};

use super::{
    registry::Registry,
    routes::{RouteTable, UnknownRoute},
};
use crate::{
    plugin::{CallError, Problem},
    protocol,
};

/// One update to publish.
#[derive(Debug, Clone)]
pub struct Update {
    pub route: String,
    pub address: Address,
    /// The route's data, as JSON text.
    pub data: Box<RawValue>,
}

/// Where an update goes.
#[derive(Debug, Clone)]
pub enum Address {
    /// The subscription request the update is for; the plugin resolves it.
    Request(Value),
    /// A routing key, e.g. `trades:AAPL`.
    Key(String),
}

impl Update {
    /// An update addressed by subscription request.
    pub fn for_request(
        route: &str,
        request: impl Serialize,
        data: impl Serialize,
    ) -> Result<Update, serde_json::Error> {
        Ok(Update {
            route: route.to_owned(),
            address: Address::Request(serde_json::to_value(request)?),
            data: serde_json::value::to_raw_value(&data)?,
        })
    }

    /// An update addressed by routing key.
    pub fn for_key(
        route: &str,
        key: &str,
        data: impl Serialize,
    ) -> Result<Update, serde_json::Error> {
        Ok(Update {
            route: route.to_owned(),
            address: Address::Key(key.to_owned()),
            data: serde_json::value::to_raw_value(&data)?,
        })
    }
}

/// Where an update went.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub route: Arc<str>,
    /// The keys it was published to.
    pub keys: Vec<Arc<str>>,
    /// Subscriptions it was queued to.
    pub delivered: usize,
}

/// Why an update was not published. The text is for the publisher.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("malformed update: {0}")]
    Malformed(String),
    #[error(transparent)]
    UnknownRoute(#[from] UnknownRoute),
    #[error("request does not match the {route} request schema")]
    InvalidRequest {
        route: String,
        problems: Vec<Problem>,
    },
    #[error("data does not match the {route} data schema")]
    InvalidData {
        route: String,
        problems: Vec<Problem>,
    },
    #[error("key {key:?} does not belong to route {route:?} (it must start with \"{route}:\")")]
    ForeignKey { route: String, key: String },
    #[error("{0}")]
    Topics(#[from] CallError),
}

impl PublishError {
    pub fn problems(&self) -> &[Problem] {
        match self {
            PublishError::InvalidRequest { problems, .. }
            | PublishError::InvalidData { problems, .. } => problems,
            _ => &[],
        }
    }
}

/// Publish one update to the subscribers of its keys.
pub async fn publish(
    routes: &RouteTable,
    registry: &Registry,
    update: &Update,
) -> Result<Receipt, PublishError> {
    let plugin = routes.lease_or_unknown(&update.route)?;
    let route = || plugin.info.name.clone();
    let keys: Vec<Arc<str>> = match &update.address {
        Address::Key(key) => {
            if !plugin.owns_key(key) {
                return Err(PublishError::ForeignKey {
                    route: route(),
                    key: key.clone(),
                });
            }
            vec![Arc::from(key.as_str())]
        }
        Address::Request(request) => {
            plugin.request_schema.check(request).map_err(|problems| {
                PublishError::InvalidRequest {
                    route: route(),
                    problems,
                }
            })?;
            plugin.topics(&request.to_string()).await?.keys
        }
    };
    let data: Value = serde_json::from_str(update.data.get())
        .map_err(|e| PublishError::Malformed(format!("data is not JSON: {e}")))?;
    plugin
        .data_schema
        .check(&data)
        .map_err(|problems| PublishError::InvalidData {
            route: route(),
            problems,
        })?;
    let fan_out = registry.publish(
        &keys,
        &protocol::compact_json(update.data.get()),
        plugin.delivery,
    );
    Ok(Receipt {
        route: Arc::clone(&plugin.route),
        keys,
        delivered: fan_out.delivered,
    })
}
