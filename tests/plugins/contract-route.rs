// Shared body of the contract-v* test plugins (tests/plugins/contract-v*/):
// each generates its bindings from its own copy of the WIT package, whose
// version is all that differs, and exports the smallest valid route.
// Included after `wit_bindgen::generate!` by each crate's lib.rs.

use exports::ws_router::plugin::route::{Guest, RouteInfo, Subscription, TopicError};

struct Plugin;

impl Guest for Plugin {
    fn info() -> RouteInfo {
        RouteInfo {
            name: env!("CARGO_PKG_NAME").to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: env!("CARGO_PKG_DESCRIPTION").to_owned(),
            tags: vec!["test".to_owned()],
        }
    }

    fn request_schema() -> String {
        r#"{"type":"object","properties":{"symbol":{"type":"string"}},"required":["symbol"]}"#
            .to_owned()
    }

    fn data_schema() -> String {
        r#"{"type":"object"}"#.to_owned()
    }

    fn topics(request: String) -> Result<Subscription, TopicError> {
        // Not the canonical topic: these plugins test loading, not topics.
        let topic = format!("{}:{}", env!("CARGO_PKG_NAME"), request);
        Ok(Subscription {
            keys: vec![topic.clone()],
            topic,
        })
    }
}

export!(Plugin);
