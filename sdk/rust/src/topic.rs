//! The canonical topic: `<route>:<canonical JSON of the request>`.
//!
//! Browser clients compute this string themselves and match replies and
//! updates on it, so it must be byte-identical to the Python design's
//! `json.dumps(request, sort_keys=True, separators=(",", ":"))` with `null`
//! written as `""`:
//!
//! * object keys sorted recursively, by Unicode code point;
//! * no whitespace;
//! * `null` becomes the empty string `""`;
//! * strings keep non-ASCII characters as UTF-8 (only `"`, `\` and control
//!   characters are escaped, as both `JSON.stringify` and
//!   `json.dumps(..., ensure_ascii=False)` do);
//! * integers print as integers; floats print as Python's `repr` does
//!   (`1.0`, `0.1`, `1e-05`, `1e+16`), so `1.0` stays `1.0`.
//!
//! Integers beyond the 64-bit range are read as floats (as `serde_json` does).

use serde_json::Value;

/// `<route>:<canonical JSON of request>`.
pub fn default_topic(route: &str, request: &Value) -> String {
    let mut out = String::with_capacity(route.len() + 64);
    out.push_str(route);
    out.push(':');
    write_canonical(request, &mut out);
    out
}

/// The canonical JSON text of `value` (see the module docs for the rules).
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::with_capacity(64);
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("\"\""),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
                push_python_float(f, out);
            } else {
                out.push_str(&n.to_string());
            }
        }
        Value::String(s) => push_json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // `str` ordering is byte ordering, which for UTF-8 is code point
            // ordering: the order Python's `sort_keys` uses.
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_string(key, out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

fn push_json_string(s: &str, out: &mut String) {
    // serde_json escapes exactly `"`, `\` and C0 controls (`\n`, `\u001f`...),
    // the same set as Python with `ensure_ascii=False`.
    match serde_json::to_string(s) {
        Ok(escaped) => out.push_str(&escaped),
        Err(_) => unreachable!("serializing a str cannot fail"),
    }
}

/// Python's `repr(float)`: shortest round-trip digits, scientific notation
/// when the decimal exponent is below -4 or at least 16, and an exponent of
/// at least two digits with an explicit sign.
fn push_python_float(f: f64, out: &mut String) {
    // `{:e}` gives the shortest round-trip digits as `d.ddde<exp>`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if negative {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', int_len - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let abs = exp.unsigned_abs();
        if abs < 10 {
            out.push('0');
        }
        out.push_str(&abs.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: Value) -> String {
        canonical_json(&v)
    }

    #[test]
    fn captured_bars_topic() {
        let req = json!({"symbol": "AAPL", "resolution": "1"});
        assert_eq!(
            default_topic("bars", &req),
            r#"bars:{"resolution":"1","symbol":"AAPL"}"#
        );
    }

    #[test]
    fn captured_quotes_topic() {
        let req = json!({"symbols": [], "fast_symbols": []});
        assert_eq!(
            default_topic("quotes", &req),
            r#"quotes:{"fast_symbols":[],"symbols":[]}"#
        );
    }

    #[test]
    fn nested_objects_sorted_recursively() {
        let v = json!({"b": {"z": 1, "a": [ {"y": 2, "x": 1} ]}, "a": true});
        assert_eq!(canon(v), r#"{"a":true,"b":{"a":[{"x":1,"y":2}],"z":1}}"#);
    }

    #[test]
    fn arrays_keep_their_order() {
        assert_eq!(
            canon(json!(["MSFT", "AAPL", 3, false])),
            r#"["MSFT","AAPL",3,false]"#
        );
    }

    #[test]
    fn null_is_empty_string_everywhere() {
        assert_eq!(
            canon(json!({"a": null, "b": [null]})),
            r#"{"a":"","b":[""]}"#
        );
        assert_eq!(canon(Value::Null), r#""""#);
    }

    #[test]
    fn unicode_stays_utf8_and_controls_are_escaped() {
        assert_eq!(
            canon(json!({"s": "Ünïcødé 株 😀"})),
            "{\"s\":\"Ünïcødé 株 😀\"}"
        );
        assert_eq!(canon(json!("a\"b\\c\n\u{1f}")), r#""a\"b\\c\n\u001f""#);
        // Keys sort by code point: "Z" < "a" < "é" < "株".
        assert_eq!(
            canon(json!({"株": 1, "é": 2, "a": 3, "Z": 4})),
            r#"{"Z":4,"a":3,"é":2,"株":1}"#
        );
    }

    #[test]
    fn numbers_print_as_python_does() {
        let cases: &[(Value, &str)] = &[
            (json!(0), "0"),
            (json!(-17), "-17"),
            (json!(9007199254740993_i64), "9007199254740993"),
            (json!(u64::MAX), "18446744073709551615"),
            (json!(1.0), "1.0"),
            (json!(-2.5), "-2.5"),
            (json!(0.1), "0.1"),
            (json!(123.456), "123.456"),
            (json!(0.0001), "0.0001"),
            (json!(0.00001), "1e-05"),
            (json!(1.5e-7), "1.5e-07"),
            (json!(1e15), "1000000000000000.0"),
            (json!(1e16), "1e+16"),
            (json!(1.2345e100), "1.2345e+100"),
            (json!(-0.0), "-0.0"),
        ];
        for (value, expected) in cases {
            assert_eq!(canon(value.clone()), *expected, "for {value}");
        }
    }

    #[test]
    fn empty_containers() {
        assert_eq!(canon(json!({})), "{}");
        assert_eq!(canon(json!([])), "[]");
    }
}
