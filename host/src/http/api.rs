//! `POST /api/v1/publish` and the read-only views of the host.

use std::sync::Arc;

use axum::{
    Extension, Json,
    body::Body,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, value::RawValue};

use super::auth::Security;
use crate::{
    hub::{
        Host,
        broker::Cluster,
        publish::{Address, PublishError, Receipt, Update},
        reload::PluginFileView,
    },
    plugin::{DeliveryPolicy, Problem, RouteInfo, route::Retention},
    protocol::{self, Status},
};

/// The JSON form of an update, as `POST /api/v1/publish` takes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireUpdate {
    route: String,
    #[serde(default)]
    request: Option<Value>,
    /// `topic` is the older name of this field.
    #[serde(default, alias = "topic")]
    key: Option<String>,
    data: Box<RawValue>,
}

impl TryFrom<WireUpdate> for Update {
    type Error = PublishError;

    fn try_from(wire: WireUpdate) -> Result<Update, PublishError> {
        let address = match (wire.request, wire.key) {
            (Some(request), None) => Address::Request(request),
            (None, Some(key)) => Address::Key(key),
            (Some(_), Some(_)) => {
                return Err(PublishError::Malformed(
                    "give either \"request\" or \"key\", not both".into(),
                ));
            }
            (None, None) => {
                return Err(PublishError::Malformed(
                    "give \"request\" (a subscription request) or \"key\"".into(),
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

/// One update's outcome in the publish reply.
#[derive(Serialize)]
struct ItemResult<'a> {
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keys: Option<&'a [Arc<str>]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered: Option<usize>,
    /// With the Redis broker: whether the other nodes got it (`ok`), or
    /// only this node's subscribers did (`unavailable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<Cluster>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [Problem],
}

impl<'a> From<&'a Result<Receipt, PublishError>> for ItemResult<'a> {
    fn from(outcome: &'a Result<Receipt, PublishError>) -> Self {
        match outcome {
            Ok(receipt) => ItemResult {
                status: Status::Ok,
                route: Some(&receipt.route),
                keys: Some(&receipt.keys),
                delivered: Some(receipt.delivered),
                cluster: receipt.cluster,
                message: None,
                errors: &[],
            },
            Err(e) => ItemResult {
                status: Status::Error,
                route: None,
                keys: None,
                delivered: None,
                cluster: None,
                message: Some(e.to_string()),
                errors: e.problems(),
            },
        }
    }
}

/// The reply to a publish, as serde would write it; [`publish_reply`]
/// writes the same bytes (a test compares them).
#[cfg(test)]
#[derive(Serialize)]
struct PublishReply<'a> {
    results: Vec<ItemResult<'a>>,
    /// Total subscriptions reached by the batch.
    delivered: usize,
    /// Updates rejected.
    failed: usize,
}

/// Largest publish body, in bytes (axum's default limit for a body read
/// whole).
const MAX_BODY_BYTES: usize = 2 << 20;

fn error_reply(status: StatusCode, message: &str) -> Response {
    let reply = serde_json::json!({ "status": "error", "message": message });
    (status, Json(reply)).into_response()
}

/// `POST /api/v1/publish`: one update object, or an array of them. The
/// body must arrive within `--http-body-timeout-ms`, else 408 and nothing
/// is published.
///
/// With publish keys configured, a request without one is 401. A body not
/// declared `application/json` is 415: a web page can send any other type
/// cross-site without asking (no CORS preflight), but not that one.
pub async fn publish(
    State(host): State<Arc<Host>>,
    Extension(security): Extension<Arc<Security>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let publisher = match security.admit_publisher(&headers) {
        Ok(publisher) => publisher,
        Err(refusal) => return refusal,
    };
    if !is_json(&headers) {
        return error_reply(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the updates with Content-Type: application/json",
        );
    }
    let check = security.data_check(publisher);
    let timeout = std::time::Duration::from_millis(host.config().limits.http_body_timeout_ms);
    let body = match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY_BYTES)).await
    {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => {
            let too_big = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return if too_big {
                error_reply(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("body is over {MAX_BODY_BYTES} bytes"),
                )
            } else {
                error_reply(StatusCode::BAD_REQUEST, &format!("cannot read body: {e}"))
            };
        }
        Err(_) => {
            return error_reply(
                StatusCode::REQUEST_TIMEOUT,
                &format!("body not received within {} ms", timeout.as_millis()),
            );
        }
    };
    let items = match parse_body(&body) {
        Ok(items) => items,
        Err(message) => return error_reply(StatusCode::BAD_REQUEST, &message),
    };
    let outcomes = host.publish_many_checked(items, check).await;
    (
        [(header::CONTENT_TYPE, "application/json")],
        publish_reply(&outcomes),
    )
        .into_response()
}

/// The reply to a batch (`PublishReply`), written directly for its `ok` items: a
/// feed's batch gets one result per update, and serde spent more on each
/// than routing the update did. Error items, rare, go through serde.
fn publish_reply(outcomes: &[Result<Receipt, PublishError>]) -> String {
    let mut out = String::with_capacity(48 + outcomes.len() * 96);
    let (mut delivered, mut failed) = (0usize, 0usize);
    let mut numbers = itoa::Buffer::new();
    out.push_str("{\"results\":[");
    for (i, outcome) in outcomes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let receipt = match outcome {
            Ok(receipt) => receipt,
            Err(_) => {
                failed += 1;
                match serde_json::to_string(&ItemResult::from(outcome)) {
                    Ok(item) => out.push_str(&item),
                    // Strings and numbers only: cannot fail.
                    Err(_) => out.push_str("{\"status\":\"error\"}"),
                }
                continue;
            }
        };
        delivered += receipt.delivered;
        out.push_str("{\"status\":\"ok\",\"route\":");
        protocol::push_json_str(&receipt.route, &mut out);
        out.push_str(",\"keys\":");
        match (&receipt.key_json, &receipt.keys[..]) {
            (Some(json), [_]) => {
                out.push('[');
                out.push_str(json);
                out.push(']');
            }
            _ => protocol::push_json_strs(&receipt.keys, &mut out),
        }
        out.push_str(",\"delivered\":");
        out.push_str(numbers.format(receipt.delivered));
        match receipt.cluster {
            None => {}
            Some(Cluster::Ok) => out.push_str(",\"cluster\":\"ok\""),
            Some(Cluster::Unavailable) => out.push_str(",\"cluster\":\"unavailable\""),
        }
        out.push('}');
    }
    out.push_str("],\"delivered\":");
    out.push_str(numbers.format(delivered));
    out.push_str(",\"failed\":");
    out.push_str(numbers.format(failed));
    out.push('}');
    out
}

/// Whether the body is declared `application/json` (parameters such as
/// `charset` allowed).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

fn parse_body(body: &[u8]) -> Result<Vec<Result<Update, PublishError>>, String> {
    let one = |raw: &RawValue| {
        serde_json::from_str::<WireUpdate>(raw.get())
            .map_err(|e| PublishError::Malformed(e.to_string()))
            .and_then(Update::try_from)
    };
    let not_json = |e: serde_json::Error| format!("body is not JSON: {e}");
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => {
            // One pass when every item is well-formed (a feed's batches
            // are); otherwise item by item, so that each bad one is
            // reported alone and the others still go out.
            if let Ok(items) = serde_json::from_slice::<Vec<WireUpdate>>(body) {
                return Ok(items.into_iter().map(Update::try_from).collect());
            }
            let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(not_json)?;
            Ok(items.into_iter().map(one).collect())
        }
        Some(b'{') => {
            let raw: &RawValue = serde_json::from_slice(body).map_err(not_json)?;
            Ok(vec![one(raw)])
        }
        _ => {
            serde_json::from_slice::<&RawValue>(body).map_err(not_json)?;
            Err("body must be one update object or an array of updates".to_owned())
        }
    }
}

/// `?key=` (or its older name `?topic=`).
#[derive(Deserialize)]
pub struct KeyQuery {
    #[serde(alias = "topic")]
    key: String,
}

#[derive(Serialize)]
pub struct SubscriberCount {
    key: String,
    /// The same as `key`, under its older name.
    topic: String,
    has_subscribers: bool,
    subscribers: usize,
}

/// `GET /api/v1/subscribers?key=<key>`: whether publishing to a key would
/// reach anyone (the earlier design's `has_subscribers`).
/// Needs a publish key when keys are configured.
pub async fn subscribers(
    State(host): State<Arc<Host>>,
    Extension(security): Extension<Arc<Security>>,
    headers: HeaderMap,
    q: Result<Query<KeyQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(refusal) = security.admit_publisher(&headers) {
        return refusal;
    }
    let Query(q) = match q {
        Ok(q) => q,
        Err(rejection) => return rejection.into_response(),
    };
    let subscribers = host.subscriber_count(&q.key);
    Json(SubscriberCount {
        topic: q.key.clone(),
        key: q.key,
        has_subscribers: subscribers > 0,
        subscribers,
    })
    .into_response()
}

#[derive(Serialize)]
struct RouteView<'a> {
    #[serde(flatten)]
    info: &'a RouteInfo,
    delivery: DeliveryPolicy,
    /// Snapshot and history (contract 0.1.3; none for older plugins).
    retention: Retention,
    /// Plugin calls that trapped, timed out or returned invalid output.
    failures: u64,
    request_schema: &'a Value,
    data_schema: &'a Value,
}

/// `GET /api/v1/routes`: every route with its schemas.
pub async fn routes(State(host): State<Arc<Host>>) -> impl IntoResponse {
    let table = host.routes();
    let views: Vec<RouteView<'_>> = table
        .values()
        .map(|p| RouteView {
            info: &p.info,
            delivery: p.delivery,
            retention: p.retention,
            failures: p.failures(),
            request_schema: &p.request_schema.source,
            data_schema: &p.data_schema.source,
        })
        .collect();
    Json(views).into_response()
}

/// `GET /api/v1/plugins`: every plugin file, serving or rejected. Needs a
/// publish key when keys are configured (it shows file paths).
pub async fn plugins(
    State(host): State<Arc<Host>>,
    Extension(security): Extension<Arc<Security>>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = security.admit_publisher(&headers) {
        return refusal;
    }
    Json::<Vec<PluginFileView>>(host.plugins()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::CallError;

    #[test]
    fn the_publish_reply_is_what_serde_would_write() {
        let receipt = |cluster, keys: &[&str]| Receipt {
            route: Arc::from("bars"),
            keys: keys.iter().map(|k| Arc::from(*k)).collect(),
            delivered: 3,
            dropped: 1,
            cluster,
            key_json: None,
        };
        let cases: Vec<Vec<Result<Receipt, PublishError>>> = vec![
            vec![],
            vec![
                Ok(receipt(None, &[r#"bars:{"symbol":"A\"\\\n\u0001é"}"#])),
                Ok(receipt(Some(Cluster::Ok), &["bars:a", "bars:b"])),
                Err(PublishError::InvalidData {
                    route: "bars".into(),
                    problems: vec![Problem {
                        path: "/close".into(),
                        message: "\"x\" is not a number".into(),
                    }],
                }),
                Ok(receipt(Some(Cluster::Unavailable), &[])),
                // The key's JSON as the registry encoded it.
                Ok(Receipt {
                    key_json: Some(Arc::from(protocol::json_string("bars:{\"s\":\"A\"}"))),
                    ..receipt(None, &["bars:{\"s\":\"A\"}"])
                }),
                Err(PublishError::Topics(CallError::Busy(8))),
            ],
        ];
        for outcomes in cases {
            let serde = serde_json::to_string(&PublishReply {
                results: outcomes.iter().map(ItemResult::from).collect(),
                delivered: outcomes.iter().flatten().map(|r| r.delivered).sum(),
                failed: outcomes.iter().filter(|o| o.is_err()).count(),
            })
            .unwrap();
            assert_eq!(publish_reply(&outcomes), serde);
        }
    }
}
