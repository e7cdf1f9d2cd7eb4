//! Property tests (fuzzing) of the envelope parser: whatever a client sends,
//! `parse_command` answers without panicking, well-formed commands parse
//! to exactly what was sent, and a valid `id` is echoed byte for byte.
//! `just test` runs a few cases; `just fuzz` runs many (PROPTEST_CASES).

use proptest::prelude::*;
use serde_json::{Value, json};
use ws_router_host::protocol::{self, FrameError, Operation, parse_command};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Strings that look like frame types, valid or not.
fn frame_type() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9_-]{1,12}\\.(subscribe|unsubscribe)",
        "[a-z0-9_-]{1,12}\\.(update|response|subscribe\\.response)",
        "[a-z.]{0,20}",
        ".{0,24}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn any_text_gets_an_answer(text in ".{0,200}") {
        let _ = parse_command(&text);
    }

    #[test]
    fn any_bytes_as_text_get_an_answer(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_command(&text);
    }

    #[test]
    fn any_json_value_gets_an_answer(value in json_value()) {
        let _ = parse_command(&value.to_string());
    }

    #[test]
    fn envelopes_of_any_shape_get_an_answer(ty in frame_type(), payload in json_value(), extra in json_value()) {
        for frame in [
            json!({"type": ty, "payload": payload}),
            json!({"type": ty}),
            json!({"type": ty, "payload": payload, "extra": extra}),
            json!({"type": payload, "payload": ty}),
            json!([ty, payload]),
        ] {
            let _ = parse_command(&frame.to_string());
        }
    }

    #[test]
    fn valid_commands_parse_to_what_was_sent(
        route in "[a-z0-9_-]{1,16}",
        subscribe in any::<bool>(),
        payload in json_value(),
    ) {
        let op = if subscribe { "subscribe" } else { "unsubscribe" };
        let text = json!({"type": format!("{route}.{op}"), "payload": payload}).to_string();
        if payload.is_null() {
            // `"payload": null` is no request: the same answer as a missing one.
            let missing = matches!(
                parse_command(&text).map_err(|r| r.error),
                Err(FrameError::MissingPayload { .. })
            );
            prop_assert!(missing);
            return Ok(());
        }
        let command = parse_command(&text).expect("a valid command parses");
        prop_assert_eq!(command.route, route.as_str());
        prop_assert_eq!(
            command.op,
            if subscribe { Operation::Subscribe } else { Operation::Unsubscribe }
        );
        // The payload is handed on byte for byte.
        prop_assert_eq!(command.payload.get(), payload.to_string());
    }

    #[test]
    fn server_operations_are_refused(route in "[a-z0-9_-]{1,16}", op in "(update|response)", payload in json_value()) {
        let text = json!({"type": format!("{route}.{op}"), "payload": payload}).to_string();
        let refused = matches!(parse_command(&text).map_err(|r| r.error), Err(FrameError::ServerOnly(_)));
        prop_assert!(refused);
    }

    #[test]
    fn any_id_gets_an_answer_and_a_valid_one_is_echoed(id in json_value(), text_id in ".{0,80}", n in any::<u64>()) {
        for id in [id, Value::String(text_id), json!(n)] {
            let frame = json!({"type": "bars.subscribe", "id": id, "payload": {}}).to_string();
            let valid = match &id {
                Value::Null => true,
                Value::String(s) => s.len() <= protocol::MAX_ID_BYTES,
                Value::Number(n) => n.as_u64().is_some_and(|n| n <= protocol::MAX_ID_INTEGER),
                _ => false,
            };
            match parse_command(&frame) {
                Ok(command) => {
                    prop_assert!(valid, "accepted {id}");
                    let reply: Value = serde_json::from_str(&protocol::ok_reply(
                        command.route, command.op, command.id, "bars:x", &[],
                    )).unwrap();
                    if id.is_null() {
                        prop_assert!(reply.get("id").is_none());
                    } else {
                        prop_assert_eq!(&reply["id"], &id);
                    }
                }
                Err(refused) => {
                    prop_assert!(!valid, "refused {id}");
                    let reply: Value = serde_json::from_str(&refused.reply()).unwrap();
                    prop_assert_eq!(&reply["type"], "bars.subscribe.response");
                    prop_assert!(reply.get("id").is_none());
                }
            }
        }
    }
}
