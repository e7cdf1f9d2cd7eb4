//! Write a ws-router route in Rust.
//!
//! A route is its models and, only if it needs one, a key function. The host
//! implements subscribe, unsubscribe and update for every route; this crate
//! turns a [`Route`] into a WebAssembly component that exports the
//! `ws-router:plugin/route` interface of `wit/ws-router.wit`:
//!
//! ```ignore
//! use ws_router_sdk::prelude::*;
//!
//! /// Subscribe to the bars of one symbol.
//! #[model]
//! pub struct BarsSubscriptionRequest {
//!     /// Ticker symbol, e.g. "AAPL".
//!     pub symbol: String,
//!     #[serde(default = "one")]
//!     pub resolution: String,
//! }
//! fn one() -> String { "1".into() }
//!
//! /// One bar.
//! #[model]
//! pub struct Bar { pub time: i64, pub close: f64 }
//!
//! pub struct Bars;
//! impl Route for Bars {
//!     const NAME: &'static str = "bars";
//!     const TAGS: &'static [&'static str] = &["datafeed"];
//!     type Request = BarsSubscriptionRequest;
//!     type Data = Bar;
//! }
//! ws_router_sdk::export_route!(Bars);
//! ```
//!
//! [`model`] derives serde's `Serialize`/`Deserialize` and schemars'
//! `JsonSchema` through this crate's re-exports, so the route's
//! `Cargo.toml` depends on `ws-router-sdk` alone; doc comments become the
//! schemas' descriptions. Build it with `cargo build --target
//! wasm32-wasip2`; the `.wasm` in `target/wasm32-wasip2/...` is the plugin.
//! Version and description come from the plugin's `Cargo.toml`.
//!
//! A route that decides who may subscribe overrides [`Route::authorize`];
//! the default allows every subscription. A route whose clients should see
//! a value at once, or recover what they missed across a reconnect, sets
//! [`Route::RETENTION`]; the default keeps nothing.

mod claims;
pub mod topic;

pub use claims::Claims;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "route-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_route_plugin",
        default_bindings_module: "ws_router_sdk::bindings",
    });
}

use serde::{Serialize, de::DeserializeOwned};

pub use schemars::{self, JsonSchema};
pub use serde::{self, Deserialize};
pub use serde_json;
pub use ws_router_sdk_macros::model;

/// Everything a route file needs: `use ws_router_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Claims, Delivery, Retention, Route, TopicError, model, serde_json, topic::default_topic,
    };
}

/// Why a request cannot be subscribed to; the message reaches the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicError {
    /// The client's request is not acceptable (the client can fix it).
    InvalidRequest(String),
    /// The route failed for a reason that is not the client's fault.
    Internal(String),
}

/// How the host treats a client that cannot keep up with this route's
/// updates (the WIT `delivery` interface).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Every update matters: a client whose queue is full is disconnected.
    QueueAll,
    /// Only the newest value per topic matters: queued updates are replaced
    /// by newer ones for the same topic and the client stays connected.
    LatestValue,
}

/// What the host keeps of this route's updates (the WIT `retention`
/// interface): a snapshot (each key's last update, sent to a new
/// subscription at once) and a history (each key's latest updates, which a
/// client that reconnects recovers by offset). Built in a `const`:
///
/// ```
/// use std::time::Duration;
/// use ws_router_sdk::Retention;
/// const BARS: Retention = Retention::NONE
///     .with_snapshot()
///     .with_history(500, Duration::from_secs(600));
/// # assert!(BARS.snapshot);
/// ```
///
/// The host refuses the plugin at load when the history is over 100,000
/// updates or one day, or has a size without a TTL or the reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Send a new subscription the last update of each of its keys.
    pub snapshot: bool,
    /// Updates kept per key for recovery; 0 keeps none.
    pub history_size: u32,
    /// How long an update stays in the history.
    pub history_ttl: std::time::Duration,
}

impl Retention {
    /// No snapshot, no history (the default).
    pub const NONE: Retention = Retention {
        snapshot: false,
        history_size: 0,
        history_ttl: std::time::Duration::ZERO,
    };

    /// The same, with a snapshot.
    pub const fn with_snapshot(self) -> Retention {
        Retention {
            snapshot: true,
            ..self
        }
    }

    /// The same, keeping each key's latest `size` updates for at most `ttl`.
    pub const fn with_history(self, size: u32, ttl: std::time::Duration) -> Retention {
        Retention {
            history_size: size,
            history_ttl: ttl,
            ..self
        }
    }
}

/// A route: its name, its models and how its requests map to topics.
pub trait Route {
    /// The name clients use in frame types: `<NAME>.subscribe`.
    const NAME: &'static str;
    /// Groups routes in the generated documentation.
    const TAGS: &'static [&'static str] = &[];
    /// What happens to a client that cannot keep up (see [`Delivery`]).
    const DELIVERY: Delivery = Delivery::QueueAll;
    /// Snapshot and history of its updates (see [`Retention`]).
    const RETENTION: Retention = Retention::NONE;

    /// What a client sends to subscribe. Defaults (`#[serde(default)]`) are
    /// applied before the topic is built; unknown fields are ignored.
    type Request: Serialize + DeserializeOwned + JsonSchema;
    /// What updates carry.
    type Data: JsonSchema;

    /// The name of the subscription, sent back to the client in replies and
    /// update frames. Keep the default (the canonical topic, which browser
    /// clients compute themselves) unless no client depends on it.
    fn topic(request: &Self::Request) -> Result<String, TopicError> {
        let value = serde_json::to_value(request)
            .map_err(|e| TopicError::Internal(format!("cannot serialize request: {e}")))?;
        Ok(topic::default_topic(Self::NAME, &value))
    }

    /// The keys publications are routed by. The default routes by the topic
    /// itself; override it to fan one subscription out over several keys
    /// (one per symbol, say), each starting with `<NAME>:`.
    fn keys(request: &Self::Request, topic: &str) -> Result<Vec<String>, TopicError> {
        let _ = request;
        Ok(vec![topic.to_owned()])
    }

    /// Whether a client may subscribe (the WIT `authorize` interface),
    /// called on every subscribe before the topic is built. `claims` are
    /// the client's verified token claims, `None` when the host runs
    /// without authentication; `request` has its defaults applied.
    ///
    /// `Err(message)` refuses the subscription: the message is the
    /// client's error reply (say what is refused, not why internally). The
    /// default allows everything, leaving the decision to the host's own
    /// checks.
    fn authorize(claims: Option<&Claims>, request: &Self::Request) -> Result<(), String> {
        let _ = (claims, request);
        Ok(())
    }
}

/// Glue called by [`export_route!`]; not part of the public API.
#[doc(hidden)]
pub mod __private {
    use super::*;
    use crate::bindings::exports::ws_router::plugin::route as wit;

    pub fn info<R: Route>(version: &str, description: &str) -> wit::RouteInfo {
        wit::RouteInfo {
            name: R::NAME.to_owned(),
            version: version.to_owned(),
            description: description.to_owned(),
            tags: R::TAGS.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    pub fn request_schema<R: Route>() -> String {
        schema_text(schemars::schema_for!(R::Request))
    }

    pub fn data_schema<R: Route>() -> String {
        schema_text(schemars::schema_for!(R::Data))
    }

    fn schema_text(schema: schemars::Schema) -> String {
        // A schema is plain JSON; serializing it cannot fail.
        serde_json::to_string(&schema).unwrap_or_else(|_| "{}".to_owned())
    }

    pub fn delivery<R: Route>() -> crate::bindings::exports::ws_router::plugin::delivery::Policy {
        use crate::bindings::exports::ws_router::plugin::delivery::Policy;
        match R::DELIVERY {
            Delivery::QueueAll => Policy::QueueAll,
            Delivery::LatestValue => Policy::LatestValue,
        }
    }

    pub fn retention<R: Route>()
    -> crate::bindings::exports::ws_router::plugin::retention::RetentionSettings {
        let r = R::RETENTION;
        crate::bindings::exports::ws_router::plugin::retention::RetentionSettings {
            snapshot: r.snapshot,
            history_size: r.history_size,
            // Over u32 is over the host's bound too: saturate, and the host
            // names the problem at load.
            history_ttl_ms: u32::try_from(r.history_ttl.as_millis()).unwrap_or(u32::MAX),
        }
    }

    /// The WIT `authorize` call: parses both texts and asks the route.
    /// Anything unreadable refuses: a subscription is never allowed by
    /// accident.
    pub fn authorize<R: Route>(claims: &str, request: &str) -> Result<(), String> {
        let claims = Claims::from_json_text(claims)
            .map_err(|e| format!("route {} cannot read the token's claims: {e}", R::NAME))?;
        let request: R::Request =
            serde_json::from_str(request).map_err(|e| format!("invalid request: {e}"))?;
        R::authorize(claims.as_ref(), &request)
    }

    pub fn topics<R: Route>(request: String) -> Result<wit::Subscription, wit::TopicError> {
        let convert = |e: TopicError| match e {
            TopicError::InvalidRequest(m) => wit::TopicError::InvalidRequest(m),
            TopicError::Internal(m) => wit::TopicError::Internal(m),
        };
        let request: R::Request = serde_json::from_str(&request)
            .map_err(|e| wit::TopicError::InvalidRequest(e.to_string()))?;
        let topic = R::topic(&request).map_err(convert)?;
        let keys = R::keys(&request, &topic).map_err(convert)?;
        Ok(wit::Subscription { topic, keys })
    }
}

/// Export a [`Route`] as the plugin's `ws-router:plugin/route` interface
/// (and `ws-router:plugin/delivery`, declaring [`Route::DELIVERY`],
/// `ws-router:plugin/authorize`, calling [`Route::authorize`], and
/// `ws-router:plugin/retention`, declaring [`Route::RETENTION`]).
/// Use it once per plugin crate.
#[macro_export]
macro_rules! export_route {
    ($route:ty) => {
        const _: () = {
            use $crate::bindings::exports::ws_router::plugin::route as __wit;
            struct __RoutePlugin;
            impl __wit::Guest for __RoutePlugin {
                fn info() -> __wit::RouteInfo {
                    $crate::__private::info::<$route>(
                        env!("CARGO_PKG_VERSION"),
                        env!("CARGO_PKG_DESCRIPTION"),
                    )
                }
                fn request_schema() -> String {
                    $crate::__private::request_schema::<$route>()
                }
                fn data_schema() -> String {
                    $crate::__private::data_schema::<$route>()
                }
                fn topics(request: String) -> Result<__wit::Subscription, __wit::TopicError> {
                    $crate::__private::topics::<$route>(request)
                }
            }
            impl $crate::bindings::exports::ws_router::plugin::delivery::Guest for __RoutePlugin {
                fn delivery_policy()
                -> $crate::bindings::exports::ws_router::plugin::delivery::Policy {
                    $crate::__private::delivery::<$route>()
                }
            }
            impl $crate::bindings::exports::ws_router::plugin::authorize::Guest for __RoutePlugin {
                fn authorize(claims: String, request: String) -> Result<(), String> {
                    $crate::__private::authorize::<$route>(&claims, &request)
                }
            }
            impl $crate::bindings::exports::ws_router::plugin::retention::Guest for __RoutePlugin {
                fn retention_policy()
                -> $crate::bindings::exports::ws_router::plugin::retention::RetentionSettings
                {
                    $crate::__private::retention::<$route>()
                }
            }
    $crate::bindings::__export_route_plugin!(__RoutePlugin with_types_in $crate::bindings);
        };
    };
}
