//! A test route whose schemas reuse the `$defs` names of the quotes route
//! with other contents, so tests can check the AsyncAPI document keeps
//! both types apart.

use ws_router_sdk::prelude::*;

/// Whether the symbol trades; same name as quotes' `QuoteStatus`, other values.
#[model]
#[serde(rename_all = "lowercase")]
pub enum QuoteStatus {
    Open,
    Halted,
}

/// Same name as quotes' `QuoteValues`, other fields.
#[model]
pub struct QuoteValues {
    /// Last price.
    pub last: f64,
}

#[model]
pub struct TickerRequest {
    #[schemars(example = &"AAPL")]
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
}

ws_router_sdk::export_route!(TickerRoute);
