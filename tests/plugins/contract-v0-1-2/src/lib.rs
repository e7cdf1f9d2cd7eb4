//! Contract test plugin: exports `ws-router:plugin/route@0.1.2` with the
//! optional interfaces of 0.1.2 (`delivery`: latest-value, `authorize`:
//! allows all), from a frozen copy of the WIT file as it was released, from
//! before `retention` existed.

wit_bindgen::generate!({ path: "wit", world: "route-plugin" });

include!("../../contract-route.rs");

impl exports::ws_router::plugin::delivery::Guest for Plugin {
    fn delivery_policy() -> exports::ws_router::plugin::delivery::Policy {
        // Not the default: shows the host still reads a 0.1.2 plugin's
        // delivery interface.
        exports::ws_router::plugin::delivery::Policy::LatestValue
    }
}

impl exports::ws_router::plugin::authorize::Guest for Plugin {
    fn authorize(_claims: String, _request: String) -> Result<(), String> {
        Ok(())
    }
}
