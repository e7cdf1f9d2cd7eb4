//! The `trades` route: executed trades, routed by `trades:<SYMBOL>`.
//!
//! Publishers address a symbol's trades with the key `trades:AAPL` (or with
//! the request `{"symbols":["AAPL"]}`); a subscription to several symbols
//! is reached by each.

use std::time::Duration;

use ws_router_sdk::prelude::*;

/// Subscribe to the trades of one or more symbols.
#[model]
pub struct TradeSubscriptionRequest {
    /// Symbols to subscribe to (at least one).
    #[schemars(example = example_symbols())]
    pub symbols: Vec<String>,
}

/// Shown in the AsyncAPI document and prefilled by the docs page console.
fn example_symbols() -> [&'static str; 1] {
    ["AAPL"]
}

/// Which side initiated the trade.
#[model]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

/// One executed trade.
#[model]
pub struct Trade {
    pub symbol: String,
    pub price: f64,
    pub quantity: f64,
    /// Execution time, Unix milliseconds.
    pub time: i64,
    pub side: Side,
}

pub struct Trades;

impl Route for Trades {
    const NAME: &'static str = "trades";
    const TAGS: &'static [&'static str] = &["trading"];
    /// A tape must not have a hole after a reconnect: five minutes (1,000
    /// trades per symbol) can be recovered. No snapshot: the last trade
    /// alone is not a state a new subscriber needs.
    const RETENTION: Retention = Retention::NONE.with_history(1_000, Duration::from_secs(5 * 60));
    type Request = TradeSubscriptionRequest;
    type Data = Trade;

    fn keys(request: &Self::Request, _topic: &str) -> Result<Vec<String>, TopicError> {
        if request.symbols.is_empty() {
            return Err(TopicError::InvalidRequest(
                "symbols: at least one symbol is required".into(),
            ));
        }
        let mut keys: Vec<String> = request
            .symbols
            .iter()
            .map(|s| format!("trades:{s}"))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }
}

ws_router_sdk::export_route!(Trades);
