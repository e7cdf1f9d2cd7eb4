//! Version 0.4.0 of the `ticker` test route: its request is a list of
//! symbols and nothing else, so `{"symbol": "AAPL"}` (valid for 0.3.1) is
//! rejected by its schema. Same data as 0.3.1.

use ws_router_sdk::prelude::*;

#[model]
#[serde(rename_all = "lowercase")]
pub enum QuoteStatus {
    Open,
    Halted,
}

#[model]
pub struct QuoteValues {
    pub last: f64,
}

#[model]
#[serde(deny_unknown_fields)]
pub struct TickerRequest {
    pub symbols: Vec<String>,
}

#[model]
pub struct Ticker {
    pub status: QuoteStatus,
    pub values: QuoteValues,
}

pub struct TickerRoute;

impl Route for TickerRoute {
    const NAME: &'static str = "ticker";
    const TAGS: &'static [&'static str] = &["test"];
    type Request = TickerRequest;
    type Data = Ticker;
}

ws_router_sdk::export_route!(TickerRoute);
