//! The real route contract, but the request schema it reports is not a
//! valid JSON Schema (`"type": 12`).

wit_bindgen::generate!({
    path: "../../../wit",
    world: "route-plugin-core",
});

use exports::ws_router::plugin::route::{Guest, RouteInfo, Subscription, TopicError};

struct BadSchema;

impl Guest for BadSchema {
    fn info() -> RouteInfo {
        RouteInfo {
            name: "bad-schema".into(),
            version: "0.1.0".into(),
            description: "reports an invalid request schema".into(),
            tags: vec![],
        }
    }

    fn request_schema() -> String {
        r#"{"type": 12}"#.into()
    }

    fn data_schema() -> String {
        "{}".into()
    }

    fn topics(_request: String) -> Result<Subscription, TopicError> {
        Err(TopicError::Internal("never loaded".into()))
    }
}

export!(BadSchema);
