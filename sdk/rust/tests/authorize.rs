//! `Route::authorize` as the host calls it (the WIT `authorize` export:
//! claims and request as JSON text), through the glue `export_route!`
//! uses, and the `Claims` accessors.

use ws_router_sdk::__private::authorize;
use ws_router_sdk::prelude::*;
use ws_router_sdk::serde_json::json;

/// Subscribe to one account.
#[model]
pub struct AccountRequest {
    #[serde(rename = "accountId")]
    pub account_id: String,
    #[serde(default = "all")]
    pub scope: String,
}

fn all() -> String {
    "all".into()
}

/// One update.
#[model]
pub struct Update {
    pub id: String,
}

/// Keeps the default `authorize`.
struct Open;

impl Route for Open {
    const NAME: &'static str = "open";
    type Request = AccountRequest;
    type Data = Update;
}

/// Allows an account only to tokens listing it; everything when
/// authentication is off.
struct PerAccount;

impl Route for PerAccount {
    const NAME: &'static str = "per-account";
    type Request = AccountRequest;
    type Data = Update;

    fn authorize(claims: Option<&Claims>, request: &AccountRequest) -> Result<(), String> {
        // Defaults are applied before the route sees the request.
        assert_eq!(request.scope, "all");
        match claims {
            None => Ok(()),
            Some(c) if c.accounts().contains(&request.account_id.as_str()) => Ok(()),
            Some(_) => Err(format!(
                "account {:?} is not among this token's accounts",
                request.account_id
            )),
        }
    }
}

const A1: &str = r#"{"accountId":"A1"}"#;

#[test]
fn the_default_allows_everyone() {
    assert_eq!(authorize::<Open>("null", A1), Ok(()));
    assert_eq!(authorize::<Open>(r#"{"sub":"u1"}"#, A1), Ok(()));
    assert_eq!(
        authorize::<Open>(r#"{"sub":"u1","accounts":[]}"#, A1),
        Ok(())
    );
}

#[test]
fn a_custom_authorize_refuses_with_its_message() {
    let token = r#"{"sub":"u1","accounts":["A1","A3"],"exp":1700000000}"#;
    assert_eq!(authorize::<PerAccount>(token, A1), Ok(()));
    assert_eq!(
        authorize::<PerAccount>(token, r#"{"accountId":"A2"}"#),
        Err(r#"account "A2" is not among this token's accounts"#.to_owned())
    );
    // A claim of the wrong shape grants nothing.
    assert!(authorize::<PerAccount>(r#"{"accounts":"A1"}"#, A1).is_err());
    assert!(authorize::<PerAccount>(r#"{"sub":"u1"}"#, A1).is_err());
}

#[test]
fn null_claims_reach_the_route_as_none() {
    assert_eq!(
        authorize::<PerAccount>("null", r#"{"accountId":"A2"}"#),
        Ok(())
    );
    assert_eq!(authorize::<PerAccount>(" null ", A1), Ok(()));
}

#[test]
fn unreadable_input_refuses() {
    for claims in ["", "[1]", "\"u1\"", "{not json"] {
        let err = authorize::<Open>(claims, A1).expect_err(claims);
        assert!(
            err.starts_with("route open cannot read the token's claims"),
            "{err}"
        );
    }
    let err = authorize::<Open>("null", r#"{"accountId":5}"#).expect_err("a number");
    assert!(err.starts_with("invalid request:"), "{err}");
}

#[test]
fn claims_accessors() {
    let c = Claims::from_value(json!({
        "sub": "u1",
        "accounts": ["A1", 7, "A2"],
        "routes": ["orders"],
        "team": "desk-3",
    }))
    .expect("an object");
    assert_eq!(c.sub(), Some("u1"));
    assert_eq!(c.accounts(), ["A1", "A2"]);
    assert_eq!(c.routes(), Some(vec!["orders"]));
    assert_eq!(c.get("team"), Some(&json!("desk-3")));
    assert_eq!(c.as_object().len(), 4);

    let bare = Claims::from_value(json!({"routes": "orders"})).expect("an object");
    assert_eq!(bare.sub(), None);
    assert!(bare.accounts().is_empty());
    assert_eq!(
        bare.routes(),
        Some(vec![]),
        "a malformed routes claim allows none"
    );
    assert_eq!(
        Claims::from_value(json!({})).and_then(|c| c.routes().map(|_| ())),
        None
    );
    assert_eq!(Claims::from_value(json!(["u1"])), None);
}
