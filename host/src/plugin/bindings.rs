//! The host-side bindings of `wit/ws-router.wit`.

wasmtime::component::bindgen!({
    path: "../wit",
    // The required part of the contract only: `delivery`, `authorize` and
    // `retention` are optional and probed by name at load (see `loader`).
    world: "route-plugin-core",
    exports: { default: async },
});
pub use RoutePluginCore as RoutePlugin;
pub use RoutePluginCorePre as RoutePluginPre;
