//! The `quotes` route: level-1 quotes for a list of symbols.
//!
//! The subscription keeps the default topic (clients compute it), but is
//! routed by one key per symbol: a publisher publishes each symbol's quote
//! with a one-symbol request, and every subscription naming that symbol
//! receives it, under its own topic.

use ws_router_sdk::prelude::*;

/// Subscribe to quotes of several symbols at once.
#[model]
pub struct QuoteDataSubscriptionRequest {
    /// Symbols to receive quotes for.
    #[serde(default)]
    #[schemars(example = example_symbols())]
    pub symbols: Vec<String>,
    /// Symbols to receive at the fast update rate.
    #[serde(default)]
    pub fast_symbols: Vec<String>,
}

/// Shown in the AsyncAPI document and prefilled by the docs page console.
fn example_symbols() -> [&'static str; 2] {
    ["AAPL", "MSFT"]
}

/// Whether the quote could be produced.
#[model]
#[serde(rename_all = "lowercase")]
pub enum QuoteStatus {
    Ok,
    Error,
}

/// The quote values of one symbol.
#[model]
pub struct QuoteValues {
    /// Last price.
    pub lp: f64,
    pub ask: f64,
    pub bid: f64,
    pub spread: f64,
    pub open_price: f64,
    pub high_price: f64,
    pub low_price: f64,
    pub prev_close_price: f64,
    /// Change since previous close.
    pub ch: f64,
    /// Change since previous close, percent.
    pub chp: f64,
    pub volume: i64,
    pub short_name: String,
    pub exchange: String,
    pub description: String,
    pub original_name: String,
}

/// A quote update for one symbol.
#[model]
pub struct QuoteData {
    /// Status of this quote.
    pub s: QuoteStatus,
    /// Symbol name.
    pub n: String,
    /// Quote values.
    pub v: QuoteValues,
}

pub struct Quotes;

impl Route for Quotes {
    const NAME: &'static str = "quotes";
    const TAGS: &'static [&'static str] = &["datafeed"];
    /// A slow client wants the current quote, not a backlog.
    const DELIVERY: Delivery = Delivery::LatestValue;
    type Request = QuoteDataSubscriptionRequest;
    type Data = QuoteData;

    /// One key per (list, symbol): the topic of the one-symbol request that a
    /// publisher uses for that symbol.
    fn keys(request: &Self::Request, topic: &str) -> Result<Vec<String>, TopicError> {
        let one = |symbols: &[&String], fast: &[&String]| {
            let request = serde_json::json!({ "symbols": symbols, "fast_symbols": fast });
            default_topic(Self::NAME, &request)
        };
        let mut keys: Vec<String> = request.symbols.iter().map(|s| one(&[s], &[])).collect();
        keys.extend(request.fast_symbols.iter().map(|s| one(&[], &[s])));
        if keys.is_empty() {
            keys.push(topic.to_owned());
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }
}

ws_router_sdk::export_route!(Quotes);
