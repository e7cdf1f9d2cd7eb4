//! Property tests (fuzzing) of the canonical topic builder: its output is
//! JSON equal to the input (with `null` as `""`), independent of key order,
//! and a fixed point. `just test` runs a few cases; `just fuzz` runs many
//! (PROPTEST_CASES).

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use ws_router_sdk::topic::{canonical_json, default_topic};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// Any JSON value; objects as key/value lists so that tests can rebuild
/// them in another order.
#[derive(Debug, Clone)]
enum Tree {
    Leaf(Value),
    Array(Vec<Tree>),
    Object(Vec<(String, Tree)>),
}

impl Tree {
    fn to_value(&self, reverse: bool) -> Value {
        match self {
            Tree::Leaf(v) => v.clone(),
            Tree::Array(items) => Value::Array(items.iter().map(|t| t.to_value(reverse)).collect()),
            Tree::Object(pairs) => {
                let mut map = Map::new();
                // Keys are distinct (see `tree`), so any order builds the
                // same object.
                let mut pairs: Vec<&(String, Tree)> = pairs.iter().collect();
                if reverse {
                    pairs.reverse();
                }
                for (k, t) in pairs {
                    map.insert(k.clone(), t.to_value(reverse));
                }
                Value::Object(map)
            }
        }
    }
}

fn tree() -> impl Strategy<Value = Tree> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,10}".prop_map(Value::String),
        ".{0,10}".prop_map(Value::String),
    ]
    .prop_map(Tree::Leaf);
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Tree::Array),
            // Distinct keys: JSON objects with duplicate keys are ambiguous.
            prop::collection::btree_map("\\PC{0,6}", inner, 0..6)
                .prop_map(|m| Tree::Object(m.into_iter().collect())),
        ]
    })
}

/// `value` with every `null` replaced by `""`, as the canonical form does.
fn nulls_as_empty(value: &Value) -> Value {
    match value {
        Value::Null => Value::String(String::new()),
        Value::Array(items) => Value::Array(items.iter().map(nulls_as_empty).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), nulls_as_empty(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn output_is_json_equal_to_the_input_with_nulls_as_empty_strings(t in tree()) {
        let value = t.to_value(false);
        let text = canonical_json(&value);
        let back: Value = serde_json::from_str(&text)
            .map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {text}")))?;
        prop_assert_eq!(back, nulls_as_empty(&value));
    }

    #[test]
    fn canonical_floats_are_exact(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
        let text = canonical_json(&json!(f));
        let back: f64 = text.parse().expect("a float");
        prop_assert_eq!(back, f, "{}", text);
    }

    #[test]
    fn key_order_does_not_matter(t in tree()) {
        let forward = canonical_json(&t.to_value(false));
        let backward = canonical_json(&t.to_value(true));
        prop_assert_eq!(forward, backward);
    }

    #[test]
    fn canonical_form_is_a_fixed_point(t in tree()) {
        let once = canonical_json(&t.to_value(false));
        let reparsed: Value = serde_json::from_str(&once).expect("canonical JSON parses");
        prop_assert_eq!(canonical_json(&reparsed), once);
    }

    #[test]
    fn no_whitespace_outside_strings(t in tree()) {
        let text = canonical_json(&t.to_value(false));
        let mut in_string = false;
        let mut escaped = false;
        for c in text.chars() {
            if in_string {
                if escaped { escaped = false } else if c == '\\' { escaped = true } else if c == '"' { in_string = false }
            } else if c == '"' {
                in_string = true;
            } else {
                prop_assert!(!c.is_whitespace(), "whitespace outside a string in {}", text);
            }
        }
    }

    #[test]
    fn default_topic_is_route_colon_canonical_json(route in "[a-z]{1,8}", t in tree()) {
        let value = t.to_value(false);
        prop_assert_eq!(default_topic(&route, &value), format!("{route}:{}", canonical_json(&value)));
    }
}
