//! Publishing updates: the in-process API ([`Host::publish`]) and
//! `POST /api/v1/publish`, which is a thin JSON wrapper around it.
//!
//! An update names its route and either the subscription request it is for
//! (the route's plugin turns it into keys, so publishers never build topic
//! strings) or a key directly. Its data is checked against the route's data
//! schema. One bad update in a batch is reported and delivers nothing; the
//! others are delivered.

use std::sync::Arc;

use axum::{Json, body::Bytes, extract::State, http::StatusCode, response::IntoResponse};
use serde::{Deserialize, Serialize};
use serde_json::{Value, value::RawValue};

use crate::{
    plugin::CallError,
    protocol::{self, Problem},
    server::Host,
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
    Topic(String),
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
    pub fn for_topic(
        route: &str,
        topic: &str,
        data: impl Serialize,
    ) -> Result<Update, serde_json::Error> {
        Ok(Update {
            route: route.to_owned(),
            address: Address::Topic(topic.to_owned()),
            data: serde_json::value::to_raw_value(&data)?,
        })
    }
}

/// Where an update went.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub route: String,
    /// The keys it was published to.
    pub topics: Vec<Arc<str>>,
    /// Subscriptions it was queued to.
    pub delivered: usize,
}

/// Why an update was not published. The text is for the publisher.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("malformed update: {0}")]
    Malformed(String),
    #[error("unknown route {route:?} (routes: {known})")]
    UnknownRoute { route: String, known: String },
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
    #[error("topic {topic:?} does not belong to route {route:?} (it must start with \"{route}:\")")]
    ForeignTopic { route: String, topic: String },
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

impl Host {
    /// Publish one update to the subscribers of its keys.
    pub async fn publish(&self, update: &Update) -> Result<Delivery, PublishError> {
        let plugin = self
            .routes
            .get(&update.route)
            .ok_or_else(|| PublishError::UnknownRoute {
                route: update.route.clone(),
                known: self.routes.names().join(", "),
            })?;
        let route = plugin.info.name.clone();
        let keys: Vec<Arc<str>> = match &update.address {
            Address::Topic(topic) => {
                if !topic
                    .strip_prefix(&route)
                    .is_some_and(|rest| rest.starts_with(':'))
                {
                    return Err(PublishError::ForeignTopic {
                        route,
                        topic: topic.clone(),
                    });
                }
                vec![Arc::from(topic.as_str())]
            }
            Address::Request(request) => {
                plugin.validate_request(request).map_err(|problems| {
                    PublishError::InvalidRequest {
                        route: route.clone(),
                        problems,
                    }
                })?;
                plugin
                    .topics(&request.to_string(), &self.config.limits)
                    .await?
                    .keys
            }
        };
        let data: Value = serde_json::from_str(update.data.get())
            .map_err(|e| PublishError::Malformed(format!("data is not JSON: {e}")))?;
        plugin
            .validate_data(&data)
            .map_err(|problems| PublishError::InvalidData {
                route: route.clone(),
                problems,
            })?;
        let fan_out = self.registry.publish_with(
            &keys,
            &protocol::compact_json(update.data.get()),
            plugin.delivery == crate::plugin::DeliveryPolicy::LatestValue,
        );
        Ok(Delivery {
            route,
            topics: keys,
            delivered: fan_out.delivered,
        })
    }

    /// Publish several updates in order; each succeeds or fails alone.
    pub async fn publish_all(&self, updates: &[Update]) -> Vec<Result<Delivery, PublishError>> {
        let mut results = Vec::with_capacity(updates.len());
        for update in updates {
            results.push(self.publish(update).await);
        }
        results
    }
}

/// The JSON form of an update, as `POST /api/v1/publish` takes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireUpdate {
    route: String,
    #[serde(default)]
    request: Option<Value>,
    #[serde(default)]
    topic: Option<String>,
    data: Box<RawValue>,
}

impl TryFrom<WireUpdate> for Update {
    type Error = PublishError;

    fn try_from(wire: WireUpdate) -> Result<Update, PublishError> {
        let address = match (wire.request, wire.topic) {
            (Some(request), None) => Address::Request(request),
            (None, Some(topic)) => Address::Topic(topic),
            (Some(_), Some(_)) => {
                return Err(PublishError::Malformed(
                    "give either \"request\" or \"topic\", not both".into(),
                ));
            }
            (None, None) => {
                return Err(PublishError::Malformed(
                    "give \"request\" (a subscription request) or \"topic\"".into(),
                ));
            }
        };
        Ok(Update {
            route: wire.route,
            address,
            data: wire.data,
        })
    }
}

#[derive(Serialize)]
struct ItemResult<'a> {
    status: protocol::Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    topics: Option<&'a [Arc<str>]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [Problem],
}

#[derive(Serialize)]
struct PublishReply<'a> {
    results: Vec<ItemResult<'a>>,
    /// Total subscriptions reached by the batch.
    delivered: usize,
    /// Updates rejected.
    failed: usize,
}

/// `POST /api/v1/publish`: one update object, or an array of them.
pub async fn http_publish(State(host): State<Arc<Host>>, body: Bytes) -> impl IntoResponse {
    let items: Vec<Result<Update, PublishError>> = match parse_body(&body) {
        Ok(items) => items,
        Err(message) => {
            let reply = serde_json::json!({ "status": "error", "message": message });
            return (StatusCode::BAD_REQUEST, Json(reply)).into_response();
        }
    };
    let mut outcomes = Vec::with_capacity(items.len());
    for item in items {
        outcomes.push(match item {
            Ok(update) => host.publish(&update).await,
            Err(e) => Err(e),
        });
    }
    let results: Vec<ItemResult<'_>> = outcomes
        .iter()
        .map(|outcome| match outcome {
            Ok(d) => ItemResult {
                status: protocol::Status::Ok,
                route: Some(&d.route),
                topics: Some(&d.topics),
                delivered: Some(d.delivered),
                message: None,
                errors: &[],
            },
            Err(e) => ItemResult {
                status: protocol::Status::Error,
                route: None,
                topics: None,
                delivered: None,
                message: Some(e.to_string()),
                errors: e.problems(),
            },
        })
        .collect();
    let delivered = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok())
        .map(|d| d.delivered)
        .sum();
    let failed = outcomes.iter().filter(|o| o.is_err()).count();
    Json(PublishReply {
        results,
        delivered,
        failed,
    })
    .into_response()
}

fn parse_body(body: &[u8]) -> Result<Vec<Result<Update, PublishError>>, String> {
    let raw: &RawValue =
        serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let one = |raw: &RawValue| {
        serde_json::from_str::<WireUpdate>(raw.get())
            .map_err(|e| PublishError::Malformed(e.to_string()))
            .and_then(Update::try_from)
    };
    if raw.get().starts_with('[') {
        let items: Vec<&RawValue> =
            serde_json::from_str(raw.get()).map_err(|e| format!("body is not JSON: {e}"))?;
        Ok(items.into_iter().map(one).collect())
    } else if raw.get().starts_with('{') {
        Ok(vec![one(raw)])
    } else {
        Err("body must be one update object or an array of updates".to_owned())
    }
}
