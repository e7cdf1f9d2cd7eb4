//! A route plugin for a future major version of the contract
//! (`ws-router:plugin@1.0.0`), which this host does not implement.

wit_bindgen::generate!({
    inline: r#"
        package ws-router:plugin@1.0.0;

        interface route {
            info: func() -> string;
        }

        world route-plugin {
            export route;
        }
    "#,
    world: "route-plugin",
});

struct Future;

impl exports::ws_router::plugin::route::Guest for Future {
    fn info() -> String {
        "future".into()
    }
}

export!(Future);
