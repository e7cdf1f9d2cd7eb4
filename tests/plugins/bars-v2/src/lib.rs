//! Version 2 of the `bars` route, used by upgrade tests: a different topic
//! builder, so a test can tell which version served a subscription.

use ws_router_sdk::prelude::*;

#[model]
pub struct BarsSubscriptionRequest {
    pub symbol: String,
    #[serde(default = "default_resolution")]
    pub resolution: String,
}

fn default_resolution() -> String {
    "1".to_owned()
}

#[model]
pub struct Bar {
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
    type Request = BarsSubscriptionRequest;
    type Data = Bar;

    fn topic(request: &Self::Request) -> Result<String, TopicError> {
        Ok(format!("bars:v2:{}:{}", request.symbol, request.resolution))
    }
}

ws_router_sdk::export_route!(Bars);
