//! Contract test plugin: exports `ws-router:plugin/route@0.1.9` (see
//! `wit/ws-router.wit` in this crate, a copy of the host's WIT file with
//! only the package version changed) and nothing else of note.

wit_bindgen::generate!({ path: "wit", world: "route-plugin" });

include!("../../contract-route.rs");
