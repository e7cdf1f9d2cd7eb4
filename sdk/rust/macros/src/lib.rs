//! `#[model]`: the derives a route model needs, through `ws_router_sdk`'s
//! re-exports of serde and schemars. Use it as `ws_router_sdk::model` (or
//! from the prelude); this crate is an implementation detail of the SDK.

use proc_macro::TokenStream;

/// Derive `Serialize`, `Deserialize` and `JsonSchema` for a struct or enum,
/// with serde and schemars reached through `ws_router_sdk`, so a route's
/// `Cargo.toml` needs no other dependency. Doc comments become schema
/// descriptions; `#[serde(...)]` and `#[schemars(...)]` field attributes
/// work as with the plain derives.
#[proc_macro_attribute]
pub fn model(args: TokenStream, item: TokenStream) -> TokenStream {
    if !args.is_empty() {
        return r##"compile_error!("#[model] takes no arguments");"##
            .parse()
            .unwrap_or_default();
    }
    // Only attributes are added in front of the item, so no parsing is
    // needed: the derives themselves report anything they cannot handle.
    let derives: TokenStream = r#"
        #[derive(
            ::ws_router_sdk::serde::Serialize,
            ::ws_router_sdk::serde::Deserialize,
            ::ws_router_sdk::schemars::JsonSchema
        )]
        #[serde(crate = "::ws_router_sdk::serde")]
        #[schemars(crate = "::ws_router_sdk::schemars")]
    "#
    .parse()
    .unwrap_or_default();
    let mut out = derives;
    out.extend(item);
    out
}
