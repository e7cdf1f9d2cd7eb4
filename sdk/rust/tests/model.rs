//! `#[model]`: the three derives through the SDK's re-exports, with doc
//! comments reaching the schema (the plugins in `plugins/` prove that a
//! crate depending on the SDK alone builds with it).

use ws_router_sdk::prelude::*;
use ws_router_sdk::schemars::schema_for;

/// Which side initiated the trade.
#[model]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

/// One trade.
#[model]
pub struct Trade {
    /// Ticker symbol.
    pub symbol: String,
    #[serde(default = "one")]
    pub quantity: f64,
    pub side: Side,
}

fn one() -> f64 {
    1.0
}

#[test]
fn doc_comments_and_serde_attributes_reach_the_schema() {
    let schema = serde_json::to_value(schema_for!(Trade)).expect("schema is JSON");
    assert_eq!(schema["description"], "One trade.");
    assert_eq!(
        schema["properties"]["symbol"]["description"],
        "Ticker symbol."
    );
    assert_eq!(schema["properties"]["quantity"]["default"], 1.0);
    assert_eq!(schema["required"], serde_json::json!(["symbol", "side"]));
    let side = &schema["$defs"]["Side"];
    assert_eq!(side["description"], "Which side initiated the trade.");
    assert_eq!(side["enum"], serde_json::json!(["buy", "sell"]));
}

#[test]
fn models_round_trip_through_serde() {
    let trade: Trade =
        serde_json::from_str(r#"{"symbol":"AAPL","side":"sell"}"#).expect("a valid trade");
    assert_eq!(trade.quantity, 1.0);
    assert_eq!(
        serde_json::to_string(&trade).expect("serializes"),
        r#"{"symbol":"AAPL","quantity":1.0,"side":"sell"}"#
    );
}
