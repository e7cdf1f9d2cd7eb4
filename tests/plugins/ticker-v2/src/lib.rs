//! Version 0.5.0 of the `ticker` test route: the same request and data as
//! 0.3.1, but topics named `ticker:v2:<symbol>`. For the symbol `TRAP` its
//! `topics` call traps.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use ws_router_sdk::prelude::*;

#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum QuoteStatus {
    Open,
    Halted,
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct QuoteValues {
    pub last: f64,
}

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct TickerRequest {
    pub symbol: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
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

    fn topic(request: &Self::Request) -> Result<String, TopicError> {
        match request.symbol.as_str() {
            "TRAP" => panic!("ticker-v2: trapping on purpose"),
            symbol => Ok(format!("ticker:v2:{symbol}")),
        }
    }
}

ws_router_sdk::export_route!(TickerRoute);
