//! Version 0.5.0 of the `ticker` test route: the same request and data as
//! 0.3.1, but topics named `ticker:v2:<symbol>`. For the symbol `TRAP` its
//! `topics` call traps.

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
pub struct TickerRequest {
    pub symbol: String,
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

    fn topic(request: &Self::Request) -> Result<String, TopicError> {
        match request.symbol.as_str() {
            "TRAP" => panic!("ticker-v2: trapping on purpose"),
            symbol => Ok(format!("ticker:v2:{symbol}")),
        }
    }
}

ws_router_sdk::export_route!(TickerRoute);
