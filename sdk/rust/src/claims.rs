//! The claims a route's `authorize` sees.

use serde_json::{Map, Value};

/// The verified claims of a client's token (a JSON object), as the host
/// passes them to [`Route::authorize`](crate::Route::authorize).
///
/// The host has checked the signature and expiry; what the claims mean is
/// the route's business. The accessors read the claims the ws-router
/// documentation names; [`Claims::get`] reads any other.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims(Map<String, Value>);

impl Claims {
    /// Claims from a JSON value; `None` unless it is an object (as a
    /// token's claims always are). For tests of a route's `authorize`:
    /// `Claims::from_value(json!({"sub": "u1", "accounts": ["A1"]}))`.
    pub fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Object(map) => Some(Self(map)),
            _ => None,
        }
    }

    /// The subject (`sub`): who the token was issued to.
    pub fn sub(&self) -> Option<&str> {
        self.0.get("sub").and_then(Value::as_str)
    }

    /// The accounts the token grants (`accounts`, a list of strings).
    /// Empty when the claim is absent or not a list: a route checking
    /// accounts then refuses, never allows by accident. Entries that are
    /// not strings are skipped.
    pub fn accounts(&self) -> Vec<&str> {
        self.strings("accounts").unwrap_or_default()
    }

    /// `Ok` when the token's `accounts` claim lists `account`; otherwise the
    /// refusal a client reads.
    pub fn check_account(&self, account: &str) -> Result<(), String> {
        if self.accounts().contains(&account) {
            Ok(())
        } else {
            Err(format!(
                "account {account:?} is not among this token's accounts"
            ))
        }
    }

    /// The routes the token may use (`routes`); `None` when the claim is
    /// absent, which means every route (the host enforces this claim
    /// itself before calling `authorize`).
    pub fn routes(&self) -> Option<Vec<&str>> {
        self.strings("routes")
    }

    /// Any claim, as JSON.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// Every claim, as the JSON object the token carried.
    pub fn as_object(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The string entries of a list claim; `Some(vec![])` when it is
    /// present but not a list.
    fn strings(&self, name: &str) -> Option<Vec<&str>> {
        let value = self.0.get(name)?;
        Some(
            value
                .as_array()
                .map(|list| list.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default(),
        )
    }

    /// The WIT argument: claims JSON text, `null` when authentication is
    /// off.
    pub(crate) fn from_json_text(text: &str) -> Result<Option<Self>, String> {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Null) => Ok(None),
            Ok(value) => Self::from_value(value)
                .map(Some)
                .ok_or_else(|| "claims are not a JSON object".to_owned()),
            Err(e) => Err(format!("claims are not JSON: {e}")),
        }
    }
}
