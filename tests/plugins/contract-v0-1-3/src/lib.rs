//! Contract test plugin: exports `ws-router:plugin/route@0.1.3` with every
//! optional interface of 0.1.3, from a frozen copy of the WIT file as it was
//! released. Its retention settings come from a configuration block the
//! tests may patch in the `.wasm` (`tests/contract_versions.rs`): the
//! marker, then `;snapshot=0|1;size=N;ttl=MS`, padded with spaces.

wit_bindgen::generate!({ path: "wit", world: "route-plugin" });

include!("../../contract-route.rs");

use exports::ws_router::plugin::{authorize, delivery, retention};

const CONFIG_LEN: usize = 64;

const fn config_block() -> [u8; CONFIG_LEN] {
    let mut block = [b' '; CONFIG_LEN];
    let text = b"@@WSR-RETENTION@@;snapshot=1;size=3;ttl=60000";
    let mut i = 0;
    while i < text.len() {
        block[i] = text[i];
        i += 1;
    }
    block
}

/// Read with volatile loads so that the compiler keeps it verbatim in a
/// data segment instead of folding it into code.
#[used]
static CONFIG: [u8; CONFIG_LEN] = config_block();

fn config(key: &str) -> Option<String> {
    let bytes: Vec<u8> = (0..CONFIG_LEN)
        // SAFETY: reads within the bounds of a static array.
        .map(|i| unsafe { core::ptr::read_volatile(CONFIG.as_ptr().add(i)) })
        .collect();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    text.split(';').find_map(|entry| {
        let (k, v) = entry.split_once('=')?;
        (k.trim() == key).then(|| v.trim().to_owned())
    })
}

fn number(key: &str) -> u32 {
    config(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

impl retention::Guest for Plugin {
    fn retention_policy() -> retention::RetentionSettings {
        retention::RetentionSettings {
            snapshot: number("snapshot") == 1,
            history_size: number("size"),
            history_ttl_ms: number("ttl"),
        }
    }
}

impl delivery::Guest for Plugin {
    fn delivery_policy() -> delivery::Policy {
        delivery::Policy::QueueAll
    }
}

impl authorize::Guest for Plugin {
    fn authorize(_claims: String, _request: String) -> Result<(), String> {
        Ok(())
    }
}
