//! A route plugin configured by patching its `.wasm`: the tests replace the
//! `CONFIG` block (found by its marker) with `;key=value;...` text of the
//! same length. Keys (all optional):
//!
//! * `name`: the route name (default `patchable`).
//! * `version`, `version_repeat`: the version string, repeated N times.
//! * `description`, `description_repeat`: likewise.
//! * `tags`: comma-separated tags; `tag_count`: N generated tags `t0`...
//! * `sleep`: the call that sleeps for an hour in WASI (`info`,
//!   `request-schema`, `data-schema`, `topics`).
//! * `schema`: `recursive` makes both schemas a self-referencing `$defs`
//!   node with `branch` (default 8) children.
//!
//! Whatever the configuration, `topics` misbehaves on request: a request
//! whose text contains `"sleep"` sleeps for an hour (in WASI), one
//! containing `"busy"` holds its instance for 25 ms of wasm work.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "route-plugin-core",
});

use exports::ws_router::plugin::route::{Guest, RouteInfo, Subscription, TopicError};

const CONFIG_LEN: usize = 512;

const fn config_block() -> [u8; CONFIG_LEN] {
    let mut block = [b' '; CONFIG_LEN];
    let text = b"@@WSR-PATCHABLE@@;name=patchable";
    let mut i = 0;
    while i < text.len() {
        block[i] = text[i];
        i += 1;
    }
    block
}

/// The block the tests patch. Read with volatile loads so that the compiler
/// keeps it verbatim in a data segment instead of folding it into code.
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

fn number(key: &str, default: usize) -> usize {
    config(key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn name() -> String {
    config("name").unwrap_or_else(|| "patchable".to_owned())
}

fn maybe_sleep(call: &str) {
    if config("sleep").as_deref() == Some(call) {
        // A WASI clock poll: no wasm runs while it waits.
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

fn recursive_schema() -> String {
    let branch = number("branch", 8);
    let children: Vec<String> = (0..branch)
        .map(|i| format!(r##""child_{i}":{{"$ref":"#/$defs/Node"}}"##))
        .collect();
    let required: Vec<String> = (0..branch).map(|i| format!(r#""child_{i}""#)).collect();
    format!(
        r##"{{"$defs":{{"Node":{{"type":"object","properties":{{{}}},"required":[{}]}}}},"$ref":"#/$defs/Node"}}"##,
        children.join(","),
        required.join(",")
    )
}

struct Patchable;

impl Guest for Patchable {
    fn info() -> RouteInfo {
        maybe_sleep("info");
        let version = config("version")
            .unwrap_or_else(|| "0.1.0".to_owned())
            .repeat(number("version_repeat", 1));
        let description = config("description")
            .unwrap_or_else(|| "patchable test route".to_owned())
            .repeat(number("description_repeat", 1));
        let mut tags: Vec<String> = config("tags")
            .map(|t| t.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        tags.extend((0..number("tag_count", 0)).map(|i| format!("t{i}")));
        RouteInfo {
            name: name(),
            version,
            description,
            tags,
        }
    }

    fn request_schema() -> String {
        maybe_sleep("request-schema");
        if config("schema").as_deref() == Some("recursive") {
            return recursive_schema();
        }
        r#"{"type":"object","properties":{"symbol":{"type":"string"}}}"#.to_owned()
    }

    fn data_schema() -> String {
        maybe_sleep("data-schema");
        if config("schema").as_deref() == Some("recursive") {
            return recursive_schema();
        }
        r#"{"type":"object"}"#.to_owned()
    }

    fn topics(request: String) -> Result<Subscription, TopicError> {
        maybe_sleep("topics");
        if request.contains("\"sleep\"") {
            // A WASI clock poll: the epoch deadline never fires while the
            // host waits, only a wall-clock bound stops it.
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
        if request.contains("\"busy\"") {
            let start = std::time::Instant::now();
            while start.elapsed() < std::time::Duration::from_millis(25) {
                std::hint::black_box(0);
            }
        }
        let topic = format!("{}:{}", name(), request);
        Ok(Subscription {
            keys: vec![topic.clone()],
            topic,
        })
    }
}

export!(Patchable);
