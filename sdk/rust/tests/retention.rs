//! `Route::RETENTION` as the host reads it (the WIT `retention` export),
//! through the glue `export_route!` uses.

use std::time::Duration;

use ws_router_sdk::__private::retention;
use ws_router_sdk::prelude::*;

/// Subscribe to one symbol.
#[model]
pub struct Request {
    pub symbol: String,
}

/// One update.
#[model]
pub struct Update {
    pub v: f64,
}

/// Keeps the default: nothing retained.
struct Plain;

impl Route for Plain {
    const NAME: &'static str = "plain";
    type Request = Request;
    type Data = Update;
}

/// Snapshot and ten minutes of 500 updates, as bars declares.
struct Kept;

impl Route for Kept {
    const NAME: &'static str = "kept";
    const RETENTION: Retention = Retention::NONE
        .with_snapshot()
        .with_history(500, Duration::from_secs(600));
    type Request = Request;
    type Data = Update;
}

/// A TTL beyond u32 milliseconds.
struct Forever;

impl Route for Forever {
    const NAME: &'static str = "forever";
    const RETENTION: Retention = Retention::NONE.with_history(1, Duration::from_secs(u64::MAX));
    type Request = Request;
    type Data = Update;
}

#[test]
fn the_default_keeps_nothing() {
    let r = retention::<Plain>();
    assert!(!r.snapshot);
    assert_eq!((r.history_size, r.history_ttl_ms), (0, 0));
}

#[test]
fn declared_settings_reach_the_host_in_milliseconds() {
    let r = retention::<Kept>();
    assert!(r.snapshot);
    assert_eq!((r.history_size, r.history_ttl_ms), (500, 600_000));
}

#[test]
fn a_ttl_too_long_for_the_contract_saturates_for_the_host_to_refuse() {
    assert_eq!(retention::<Forever>().history_ttl_ms, u32::MAX);
}
