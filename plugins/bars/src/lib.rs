//! The `bars` route: OHLCV bars. Models only; the topic is the default one.

use std::time::Duration;

use ws_router_sdk::prelude::*;

/// Subscribe to the bars of one symbol at one resolution.
#[model]
pub struct BarsSubscriptionRequest {
    /// Ticker symbol, e.g. "AAPL".
    #[schemars(example = &"AAPL")]
    pub symbol: String,
    /// Bar resolution: "1" (minute), "5", "15", "60", "D"...
    #[serde(default = "default_resolution")]
    pub resolution: String,
}

fn default_resolution() -> String {
    "1".to_owned()
}

/// One OHLCV bar.
#[model]
pub struct Bar {
    /// Bar open time, Unix milliseconds.
    pub time: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    #[serde(default)]
    pub volume: i64,
}

pub struct Bars;

impl Route for Bars {
    const NAME: &'static str = "bars";
    const TAGS: &'static [&'static str] = &["datafeed"];
    /// A chart wants the current bar at once, and no hole after a
    /// reconnect: ten minutes of bars (500 updates) can be recovered.
    const RETENTION: Retention = Retention::NONE
        .with_snapshot()
        .with_history(500, Duration::from_secs(10 * 60));
    type Request = BarsSubscriptionRequest;
    type Data = Bar;
}

ws_router_sdk::export_route!(Bars);
