//! Example values for a schema, for the document's message examples.
//!
//! The work is bounded, not only the depth: a recursive schema whose
//! definitions refer to themselves through several properties would
//! otherwise branch exponentially.

use serde_json::{Map, Value, json};

use super::import::percent_decode;

/// An example value for `schema` (a plugin schema, with its own `$defs`):
/// its `examples`, `default`, `const` or first `enum` value where it has
/// one, otherwise a value of its type. For a request (`all == false`)
/// objects get their required properties and those with a default or an
/// example; for data, every property.
pub fn example_value(schema: &Value, all: bool) -> Value {
    let mut budget = MAX_NODES;
    example_at(schema, schema, all, 0, &mut budget)
}

/// Schema nodes visited for one example at most, and the deepest nesting:
/// past either, the example says `null` there.
const MAX_NODES: usize = 2_000;
const MAX_DEPTH: usize = 12;

fn example_at(root: &Value, schema: &Value, all: bool, depth: usize, budget: &mut usize) -> Value {
    if depth > MAX_DEPTH || *budget == 0 {
        return Value::Null;
    }
    *budget -= 1;
    let Value::Object(obj) = schema else {
        return Value::Null;
    };
    if let Some(Value::Array(examples)) = obj.get("examples")
        && let Some(first) = examples.first()
    {
        return first.clone();
    }
    for keyword in ["example", "default", "const"] {
        if let Some(v) = obj.get(keyword) {
            return v.clone();
        }
    }
    if let Some(Value::Array(values)) = obj.get("enum")
        && let Some(first) = values.first()
    {
        return first.clone();
    }
    if let Some(Value::String(r)) = obj.get("$ref") {
        let target = r
            .strip_prefix('#')
            .and_then(|p| root.pointer(&percent_decode(p)));
        return target.map_or(Value::Null, |t| example_at(root, t, all, depth + 1, budget));
    }
    for keyword in ["allOf", "oneOf", "anyOf"] {
        if let Some(Value::Array(options)) = obj.get(keyword)
            && let Some(first) = options
                .iter()
                .find(|o| o.get("type") != Some(&json!("null")))
        {
            return example_at(root, first, all, depth + 1, budget);
        }
    }
    let ty = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if obj.contains_key("properties") => "object",
        _ => "",
    };
    match ty {
        "object" => {
            let required: Vec<&str> = obj
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut out = Map::new();
            if let Some(Value::Object(props)) = obj.get("properties") {
                for (name, prop) in props {
                    let documented = ["default", "examples", "example"]
                        .iter()
                        .any(|k| prop.get(k).is_some());
                    if all || documented || required.contains(&name.as_str()) {
                        out.insert(name.clone(), example_at(root, prop, all, depth + 1, budget));
                    }
                }
            }
            Value::Object(out)
        }
        "array" => match obj.get("items") {
            Some(items @ Value::Object(_)) => {
                json!([example_at(root, items, all, depth + 1, budget)])
            }
            _ => json!([]),
        },
        "string" => match obj.get("format").and_then(Value::as_str) {
            Some("date-time") => json!("2024-01-02T15:04:05Z"),
            Some("date") => json!("2024-01-02"),
            _ => json!("string"),
        },
        "integer" => obj.get("minimum").cloned().unwrap_or(json!(0)),
        "number" => obj.get("minimum").cloned().unwrap_or(json!(0.0)),
        "boolean" => json!(false),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recursive_schema_costs_bounded_work() {
        // Every node refers to itself eight times: 8^12 nodes unbounded.
        let children: Map<String, Value> = (0..8)
            .map(|i| (format!("c{i}"), json!({ "$ref": "#/$defs/Node" })))
            .collect();
        let schema = json!({
            "$defs": { "Node": { "type": "object", "properties": children } },
            "$ref": "#/$defs/Node",
        });
        let started = std::time::Instant::now();
        let example = example_value(&schema, true);
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
        assert!(example.to_string().len() < 200_000);
        assert!(example.get("c0").is_some());
    }
}
