//! The `equiv` route in Rust; `../python/app.py` and `../js/route.js` are
//! the same route in the other SDKs.

use ws_router_sdk::prelude::*;

/// Ticks of one or more symbols.
#[model]
pub struct EquivRequest {
    /// Ticker symbols, at least one.
    pub symbols: Vec<String>,
    /// Levels per side.
    #[serde(default = "five")]
    pub depth: i64,
    /// Price bucket.
    #[serde(default = "one")]
    pub tick: f64,
    /// Venue code; null for every venue.
    #[serde(default)]
    pub venue: Option<String>,
}

fn five() -> i64 {
    5
}

fn one() -> f64 {
    1.0
}

/// Which side initiated the trade.
#[model]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

/// One tick.
#[model]
pub struct Tick {
    /// Ticker symbol.
    pub symbol: String,
    pub price: f64,
    pub side: Side,
    /// Unix milliseconds.
    pub time: i64,
}

pub struct Equiv;

impl Route for Equiv {
    const NAME: &'static str = "equiv";
    const TAGS: &'static [&'static str] = &["test"];
    const DELIVERY: Delivery = Delivery::LatestValue;
    // Snapshot only: a history would put per-run epochs in the replies compared.
    const RETENTION: Retention = Retention::NONE.with_snapshot();
    type Request = EquivRequest;
    type Data = Tick;

    fn keys(request: &Self::Request, _topic: &str) -> Result<Vec<String>, TopicError> {
        if request.symbols.is_empty() {
            return Err(TopicError::InvalidRequest(
                "at least one symbol is required".into(),
            ));
        }
        let mut keys: Vec<String> = request
            .symbols
            .iter()
            .map(|s| format!("equiv:{s}"))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }
}

ws_router_sdk::export_route!(Equiv);
