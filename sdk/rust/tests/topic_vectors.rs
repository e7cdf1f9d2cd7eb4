//! The Rust topic builder against the vectors shared with the Python and
//! JavaScript SDKs (`tests/topic-vectors.json`).

use serde_json::Value;
use ws_router_sdk::topic::default_topic;

#[test]
fn shared_topic_vectors_byte_for_byte() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/topic-vectors.json"
    );
    let text = std::fs::read_to_string(path).expect("read tests/topic-vectors.json");
    let doc: Value = serde_json::from_str(&text).expect("vectors file is JSON");
    let vectors = doc["vectors"].as_array().expect("a vectors array");
    assert!(vectors.len() > 10);
    for v in vectors {
        let note = v["note"].as_str().unwrap_or_default();
        let route = v["route"].as_str().expect("route");
        let request: Value = serde_json::from_str(v["request"].as_str().expect("request text"))
            .expect("request is JSON");
        let expected = v["topic"].as_str().expect("topic");
        assert_eq!(default_topic(route, &request), expected, "vector: {note}");
    }
}
