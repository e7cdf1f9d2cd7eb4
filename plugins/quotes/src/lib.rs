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

/// The quote values of one symbol. Every field is optional: a feed may
/// send only what changed.
#[model]
pub struct QuoteValues {
    /// Last price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lp: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ask: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bid: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_price: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_price: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_price: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_close_price: Option<f64>,
    /// Change since previous close.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ch: Option<f64>,
    /// Change since previous close, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chp: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_name: Option<String>,
}

/// A quote's values (in full or in part), or any other object, such as
/// the `{"error": "Symbol not found"}` of an error quote (the earlier
/// design's `QuoteValues | dict`).
#[model]
#[serde(untagged)]
pub enum QuoteValue {
    Values(QuoteValues),
    Other(serde_json::Map<String, serde_json::Value>),
}

/// A quote update for one symbol.
#[model]
pub struct QuoteData {
    /// Status of this quote.
    pub s: QuoteStatus,
    /// Symbol name.
    pub n: String,
    /// Quote values, or what went wrong (`{"error": "..."}`) when `s` is
    /// `error`.
    pub v: QuoteValue,
}

pub struct Quotes;

impl Route for Quotes {
    const NAME: &'static str = "quotes";
    const TAGS: &'static [&'static str] = &["datafeed"];
    /// A slow client wants the current quote, not a backlog.
    const DELIVERY: Delivery = Delivery::LatestValue;
    /// The same for a new subscription: the last quote at once. No
    /// history: after a reconnect, the current quote is all that matters.
    const RETENTION: Retention = Retention::NONE.with_snapshot();
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
