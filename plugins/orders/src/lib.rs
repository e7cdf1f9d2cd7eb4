//! The `orders` route: the orders of one trading account, as the earlier
//! design's broker module sent them (TradingView broker API types: camelCase
//! fields, enums as their integer values).
//!
//! Only a client whose token lists the account may subscribe: orders are
//! not public. Every update matters (a fill must not be skipped), so a
//! client that cannot keep up is disconnected rather than left behind.

use std::time::Duration;

use ws_router_sdk::prelude::*;
use ws_router_sdk::schemars::{JsonSchema, JsonSchema_repr, Schema};

/// Subscribe to the orders of one account.
#[model]
pub struct OrdersSubscriptionRequest {
    /// The trading account, e.g. "DEMO". The client's token must list it
    /// in its `accounts` claim.
    #[serde(rename = "accountId")]
    #[schemars(example = &"DEMO")]
    pub account_id: String,
}

// The data models only describe what publishers send (the host validates
// it against their schema); the plugin never reads one, so they derive the
// schema alone, and the enums travel as integers without a serde impl.

/// One order of the account, as it stands now: each update replaces the
/// order with the same `id`.
#[derive(JsonSchema)]
#[schemars(crate = "ws_router_sdk::schemars", rename_all = "camelCase")]
#[schemars(transform = absent_not_null)]
pub struct PlacedOrder {
    /// The order's id, unique within the account.
    pub id: String,
    /// The instrument, e.g. "AAPL".
    pub symbol: String,
    #[schemars(rename = "type")]
    pub order_type: OrderType,
    pub side: Side,
    /// Quantity ordered, greater than 0.
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub qty: f64,
    pub status: OrderStatus,
    /// Limit price (limit and stop-limit orders).
    pub limit_price: Option<f64>,
    /// Stop price (stop and stop-limit orders).
    pub stop_price: Option<f64>,
    /// Take-profit price of the order's bracket.
    pub take_profit: Option<f64>,
    /// Stop-loss price of the order's bracket.
    pub stop_loss: Option<f64>,
    /// Quantity filled so far.
    pub filled_qty: Option<f64>,
    /// Average price of the fills so far.
    pub avg_price: Option<f64>,
    /// When the order last changed, Unix milliseconds.
    pub update_time: Option<i64>,
}

/// The optional fields are left out when they do not apply, never `null`
/// (TypeScript's `limitPrice?: number`); schemars would allow `null` for an
/// `Option`.
fn absent_not_null(schema: &mut Schema) {
    let Some(properties) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for property in properties.values_mut() {
        let Some(ty) = property.get_mut("type") else {
            continue;
        };
        if let Some([only, null]) = ty.as_array().map(Vec::as_slice)
            && null == "null"
        {
            *ty = only.clone();
        }
    }
}

/// How the order executes: 1 limit, 2 market, 3 stop, 4 stop-limit.
#[derive(JsonSchema_repr)]
#[schemars(crate = "ws_router_sdk::schemars")]
#[repr(i8)]
pub enum OrderType {
    Limit = 1,
    Market = 2,
    Stop = 3,
    StopLimit = 4,
}

/// Which side the order is on: 1 buy, -1 sell.
#[derive(JsonSchema_repr)]
#[schemars(crate = "ws_router_sdk::schemars")]
#[repr(i8)]
pub enum Side {
    Buy = 1,
    Sell = -1,
}

/// Where the order stands: 1 canceled, 2 filled, 3 inactive, 4 placing,
/// 5 rejected, 6 working.
#[derive(JsonSchema_repr)]
#[schemars(crate = "ws_router_sdk::schemars")]
#[repr(i8)]
pub enum OrderStatus {
    Canceled = 1,
    Filled = 2,
    Inactive = 3,
    Placing = 4,
    Rejected = 5,
    Working = 6,
}

pub struct Orders;

impl Route for Orders {
    const NAME: &'static str = "orders";
    const TAGS: &'static [&'static str] = &["broker"];
    // Every order state matters: a slow client is disconnected (4008)
    // rather than silently missing a fill.
    const DELIVERY: Delivery = Delivery::QueueAll;
    // History, so that a client that reconnects recovers every change it
    // missed (an hour, up to 1,000 per account), or learns it must refetch
    // the account's orders. No snapshot: the key is the account, and its
    // last update is one order, which a new subscriber could take for the
    // whole book; the book comes from the broker, the changes from here.
    const RETENTION: Retention = Retention::NONE.with_history(1_000, Duration::from_secs(60 * 60));
    type Request = OrdersSubscriptionRequest;
    type Data = PlacedOrder;

    fn authorize(claims: Option<&Claims>, request: &Self::Request) -> Result<(), String> {
        account_allowed(claims, &request.account_id)
    }
}

/// A token may read an account only when its `accounts` claim lists it.
/// Without authentication (`None`) the host serves everyone and so does
/// this route, so the demo feed's `DEMO` account can be watched.
fn account_allowed(claims: Option<&Claims>, account: &str) -> Result<(), String> {
    claims.map_or(Ok(()), |claims| claims.check_account(account))
}

ws_router_sdk::export_route!(Orders);

#[cfg(test)]
mod tests {
    use super::*;
    use ws_router_sdk::schemars::schema_for;
    use ws_router_sdk::serde_json::{Value, json};

    fn claims(value: Value) -> Claims {
        Claims::from_value(value).expect("an object")
    }

    fn request(account: &str) -> OrdersSubscriptionRequest {
        OrdersSubscriptionRequest {
            account_id: account.to_owned(),
        }
    }

    #[test]
    fn a_token_reads_only_its_accounts() {
        let token = claims(json!({"sub": "u1", "accounts": ["A1", "A3"]}));
        assert_eq!(Orders::authorize(Some(&token), &request("A1")), Ok(()));
        assert_eq!(Orders::authorize(Some(&token), &request("A3")), Ok(()));
        assert_eq!(
            Orders::authorize(Some(&token), &request("A2")),
            Err(r#"account "A2" is not among this token's accounts"#.to_owned())
        );
    }

    #[test]
    fn a_token_without_an_accounts_list_reads_nothing() {
        for token in [
            json!({"sub": "u1"}),
            json!({"accounts": "A1"}),
            json!({"accounts": []}),
        ] {
            assert!(Orders::authorize(Some(&claims(token)), &request("A1")).is_err());
        }
    }

    #[test]
    fn without_authentication_everyone_reads() {
        assert_eq!(Orders::authorize(None, &request("DEMO")), Ok(()));
    }

    #[test]
    fn the_wire_format_of_the_earlier_design() {
        let schema = ws_router_sdk::serde_json::to_value(schema_for!(PlacedOrder)).expect("JSON");
        assert_eq!(
            schema["required"],
            json!(["id", "symbol", "type", "side", "qty", "status"])
        );
        let props = schema["properties"].as_object().expect("properties");
        let names: Vec<&str> = props.keys().map(String::as_str).collect();
        for name in [
            "limitPrice",
            "stopPrice",
            "takeProfit",
            "stopLoss",
            "filledQty",
            "avgPrice",
            "updateTime",
        ] {
            assert!(names.contains(&name), "{name} in {names:?}");
        }
        assert_eq!(
            schema["$defs"]["OrderStatus"]["enum"],
            json!([1, 2, 3, 4, 5, 6])
        );
        assert_eq!(schema["$defs"]["OrderType"]["enum"], json!([1, 2, 3, 4]));
        assert_eq!(schema["$defs"]["Side"]["enum"], json!([1, -1]));
        assert_eq!(schema["$defs"]["Side"]["type"], "integer");
        assert_eq!(schema["properties"]["qty"]["exclusiveMinimum"], 0);
        assert_eq!(schema["properties"]["limitPrice"]["type"], "number");
        assert_eq!(schema["properties"]["updateTime"]["type"], "integer");
    }
}
