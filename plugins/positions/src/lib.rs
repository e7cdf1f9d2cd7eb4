//! The `positions` route: the positions of one trading account, as the
//! earlier design's broker module sent them (TradingView broker API types:
//! camelCase fields, enums as their integer values).
//!
//! Only a client whose token lists the account may subscribe. Every update
//! matters (a closing update must not be skipped), so a client that cannot
//! keep up is disconnected rather than left with a stale book.

use std::time::Duration;

use ws_router_sdk::prelude::*;
use ws_router_sdk::schemars::{JsonSchema, JsonSchema_repr};

/// Subscribe to the positions of one account.
#[model]
pub struct PositionsSubscriptionRequest {
    /// The trading account, e.g. "DEMO". The client's token must list it
    /// in its `accounts` claim.
    #[serde(rename = "accountId")]
    #[schemars(example = &"DEMO")]
    pub account_id: String,
}

// The data models only describe what publishers send (the host validates
// it against their schema); the plugin never reads one, so they derive the
// schema alone, and the enum travels as an integer without a serde impl.

/// One position of the account, as it stands now: each update replaces
/// the position with the same `id`, and a `qty` of 0 closes it.
#[derive(JsonSchema)]
#[schemars(crate = "ws_router_sdk::schemars", rename_all = "camelCase")]
pub struct Position {
    /// The position's id, unique within the account (usually the symbol).
    pub id: String,
    /// The instrument, e.g. "AAPL".
    pub symbol: String,
    /// Quantity held, 0 or more; 0 means the position is closed.
    #[schemars(range(min = 0))]
    pub qty: f64,
    pub side: Side,
    /// Average entry price.
    pub avg_price: f64,
}

/// Which side the position is on: 1 long (bought), -1 short (sold).
#[derive(JsonSchema_repr)]
#[schemars(crate = "ws_router_sdk::schemars")]
#[repr(i8)]
pub enum Side {
    Buy = 1,
    Sell = -1,
}

pub struct Positions;

impl Route for Positions {
    const NAME: &'static str = "positions";
    const TAGS: &'static [&'static str] = &["broker"];
    // Every change matters: a slow client is disconnected (4008) rather
    // than silently missing one.
    const DELIVERY: Delivery = Delivery::QueueAll;
    // History, so that a client that reconnects recovers every change it
    // missed (an hour, up to 1,000 per account), or learns it must refetch
    // the account's positions. No snapshot: the key is the account, and its
    // last update is one position, which a new subscriber could take for the
    // whole book; the book comes from the broker, the changes from here.
    const RETENTION: Retention = Retention::NONE.with_history(1_000, Duration::from_secs(60 * 60));
    type Request = PositionsSubscriptionRequest;
    type Data = Position;

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

ws_router_sdk::export_route!(Positions);

#[cfg(test)]
mod tests {
    use super::*;
    use ws_router_sdk::schemars::schema_for;
    use ws_router_sdk::serde_json::{Value, json};

    fn claims(value: Value) -> Claims {
        Claims::from_value(value).expect("an object")
    }

    fn request(account: &str) -> PositionsSubscriptionRequest {
        PositionsSubscriptionRequest {
            account_id: account.to_owned(),
        }
    }

    #[test]
    fn a_token_reads_only_its_accounts() {
        let token = claims(json!({"sub": "u1", "accounts": ["A1"]}));
        assert_eq!(Positions::authorize(Some(&token), &request("A1")), Ok(()));
        assert_eq!(
            Positions::authorize(Some(&token), &request("A2")),
            Err(r#"account "A2" is not among this token's accounts"#.to_owned())
        );
        let no_list = claims(json!({"sub": "u1", "accounts": "A1"}));
        assert!(Positions::authorize(Some(&no_list), &request("A1")).is_err());
    }

    #[test]
    fn without_authentication_everyone_reads() {
        assert_eq!(Positions::authorize(None, &request("DEMO")), Ok(()));
    }

    #[test]
    fn the_wire_format_of_the_earlier_design() {
        let schema = ws_router_sdk::serde_json::to_value(schema_for!(Position)).expect("JSON");
        assert_eq!(
            schema["required"],
            json!(["id", "symbol", "qty", "side", "avgPrice"])
        );
        assert_eq!(schema["properties"]["qty"]["minimum"], 0);
        assert_eq!(schema["$defs"]["Side"]["enum"], json!([1, -1]));
    }
}
