//! Data checked while its text is scanned, for schemas simple enough: an
//! object of scalar properties, as the SDKs generate for most routes (bars,
//! trades). Building a `serde_json::Value` tree for the validator, and
//! dropping it, cost more per update than routing the update did; a scan
//! builds nothing.
//!
//! A scan only ever answers "valid" or "not known". Anything it does not
//! understand, in the schema when it is compiled or in a document, sends
//! the document to the full validator, which also words the problems. So
//! it must never call valid what the validator refuses: a property test
//! compares the two on random schemas and documents.

use serde_json::{Map, Value};

/// The only draft scanned: in 2020-12, `format` is an annotation (the
/// validator does not assert it; a test pins that), and a schema without
/// `$schema` is read as 2020-12.
const DRAFT: &str = "https://json-schema.org/draft/2020-12/schema";

/// Keywords that never change whether a document is valid.
const ANNOTATIONS: [&str; 8] = [
    "title",
    "description",
    "default",
    "examples",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// How deep `$ref`s may lead before the schema is not scanned (a cycle).
const MAX_REF_DEPTH: u8 = 8;

/// A compiled object-of-scalars schema.
pub(super) struct ScanSchema {
    properties: Vec<(Box<str>, Property)>,
    /// Bit `i`: `properties[i]` is required.
    required: u64,
    /// Whether properties the schema does not name are allowed.
    additional: bool,
}

#[derive(Clone, Debug)]
struct Property {
    types: Types,
    /// The values allowed, when the schema lists them (`enum`).
    choices: Option<Vec<Choice>>,
}

/// JSON types as bits; `NUMBER` includes integers.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Types(u8);

impl Types {
    const NULL: u8 = 1;
    const BOOLEAN: u8 = 2;
    const INTEGER: u8 = 4;
    const NUMBER: u8 = 8;
    const STRING: u8 = 16;
    /// No `type` keyword: containers too.
    const ANY: Types = Types(u8::MAX);

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    fn compile(types: &Value) -> Option<Types> {
        let one = |name: &Value| match name.as_str()? {
            "null" => Some(Types::NULL),
            "boolean" => Some(Types::BOOLEAN),
            "integer" => Some(Types::INTEGER),
            "number" => Some(Types::NUMBER),
            "string" => Some(Types::STRING),
            // Containers have keywords of their own: not scanned.
            _ => None,
        };
        match types {
            Value::Array(names) if !names.is_empty() => names
                .iter()
                .try_fold(0, |bits, name| Some(bits | one(name)?))
                .map(Types),
            Value::Array(_) => None,
            name => one(name).map(Types),
        }
    }
}

/// One allowed value. Numbers only as integers: comparing a float with
/// the validator's idea of equal numbers is left to the validator.
#[derive(Clone, Debug, PartialEq)]
enum Choice {
    Null,
    Bool(bool),
    Integer(i128),
    String(Box<str>),
}

impl Choice {
    fn compile(value: &Value) -> Option<Choice> {
        Some(match value {
            Value::Null => Choice::Null,
            Value::Bool(b) => Choice::Bool(*b),
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => Choice::Integer(i.into()),
                (None, Some(u)) => Choice::Integer(u.into()),
                _ => return None,
            },
            Value::String(s) => Choice::String(s.as_str().into()),
            Value::Array(_) | Value::Object(_) => return None,
        })
    }
}

impl ScanSchema {
    /// The scan of `schema`, when it is simple enough (see the module).
    pub(super) fn compile(schema: &Value) -> Option<ScanSchema> {
        let root = schema.as_object()?;
        let none = Map::new();
        let mut properties = &none;
        let mut required: &[Value] = &[];
        let mut additional = true;
        for (keyword, value) in root {
            match keyword.as_str() {
                "$schema" if value == DRAFT => {}
                "type" if value == "object" => {}
                "properties" => properties = value.as_object()?,
                "required" => required = value.as_array()?,
                "additionalProperties" => additional = value.as_bool()?,
                "$defs" => {
                    value.as_object()?;
                }
                k if ANNOTATIONS.contains(&k) => {}
                _ => return None,
            }
        }
        if properties.len() > 64 {
            return None;
        }
        let defs = root.get("$defs").and_then(Value::as_object);
        let properties = properties
            .iter()
            .map(|(name, s)| Some((name.as_str().into(), Property::compile(s, defs, 0)?)))
            .collect::<Option<Vec<(Box<str>, Property)>>>()?;
        let mut scan = ScanSchema {
            properties,
            required: 0,
            additional,
        };
        for name in required {
            scan.required |= 1 << scan.index(name.as_str()?.as_bytes())?;
        }
        Some(scan)
    }

    /// Which property `name` is.
    fn index(&self, name: &[u8]) -> Option<usize> {
        self.properties
            .iter()
            .position(|(n, _)| n.as_bytes() == name)
    }

    /// Whether `text` (JSON) certainly matches; `false` is "not known".
    pub(super) fn admits(&self, text: &str) -> bool {
        self.scan(&mut Reader {
            text: text.as_bytes(),
            at: 0,
        })
        .is_some()
    }

    /// `None` as soon as the document is not known to match.
    fn scan(&self, r: &mut Reader<'_>) -> Option<()> {
        let mut seen = 0u64;
        r.space();
        r.expect(b'{')?;
        r.space();
        if r.peek()? == b'}' {
            r.at += 1;
        } else {
            loop {
                r.space();
                // A key with escapes is rare: left to the validator.
                let (key, escaped) = r.string()?;
                if escaped {
                    return None;
                }
                r.space();
                r.expect(b':')?;
                r.space();
                match self.index(key) {
                    Some(i) => {
                        self.properties[i].1.check(r)?;
                        seen |= 1 << i;
                    }
                    None if self.additional => r.value()?,
                    None => return None,
                }
                r.space();
                match r.next()? {
                    b',' => {}
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        r.space();
        (r.at == r.text.len() && seen & self.required == self.required).then_some(())
    }
}

impl Property {
    const ANY: Property = Property {
        types: Types::ANY,
        choices: None,
    };

    fn compile(schema: &Value, defs: Option<&Map<String, Value>>, depth: u8) -> Option<Property> {
        let keywords = match schema {
            Value::Bool(true) => return Some(Property::ANY),
            Value::Object(keywords) => keywords,
            _ => return None,
        };
        if let Some(target) = keywords.get("$ref") {
            // Alone but for annotations: the target is the whole schema.
            let alone = keywords
                .keys()
                .all(|k| k == "$ref" || ANNOTATIONS.contains(&k.as_str()));
            let name = target.as_str()?.strip_prefix("#/$defs/")?;
            // A plain name: no JSON-pointer or URI escapes to decode.
            let plain = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !alone || !plain || depth >= MAX_REF_DEPTH {
                return None;
            }
            return Property::compile(defs?.get(name)?, defs, depth + 1);
        }
        let mut property = Property::ANY;
        for (keyword, value) in keywords {
            match keyword.as_str() {
                "type" => property.types = Types::compile(value)?,
                "enum" => {
                    let choices = value.as_array()?.iter().map(Choice::compile);
                    property.choices = Some(choices.collect::<Option<Vec<Choice>>>()?);
                }
                "format" => {
                    value.as_str()?;
                }
                k if ANNOTATIONS.contains(&k) => {}
                _ => return None,
            }
        }
        Some(property)
    }

    /// Whether a value of type `bit` is allowed, `is` telling whether it
    /// is a given listed choice (when the schema lists them).
    fn allows(&self, bit: u8, is: impl Fn(&Choice) -> bool) -> bool {
        let numeric = bit == Types::INTEGER && self.types.has(Types::NUMBER);
        (self.types.has(bit) || numeric) && self.choices.as_ref().is_none_or(|c| c.iter().any(is))
    }

    /// Read one value and check it; `None` when it is not known to match.
    fn check(&self, r: &mut Reader<'_>) -> Option<()> {
        let ok = match r.peek()? {
            b'"' => {
                let (raw, escaped) = r.string()?;
                // Compared as written: an escaped string is left to the
                // validator.
                self.allows(Types::STRING, |c| {
                    !escaped && matches!(c, Choice::String(s) if s.as_bytes() == raw)
                })
            }
            b't' => {
                r.literal(b"true")?;
                self.allows(Types::BOOLEAN, |c| *c == Choice::Bool(true))
            }
            b'f' => {
                r.literal(b"false")?;
                self.allows(Types::BOOLEAN, |c| *c == Choice::Bool(false))
            }
            b'n' => {
                r.literal(b"null")?;
                self.allows(Types::NULL, |c| *c == Choice::Null)
            }
            b'-' | b'0'..=b'9' => match r.number()? {
                Number::Integer(n) => {
                    self.allows(Types::INTEGER, |c| *c == Choice::Integer(n.into()))
                }
                // A fraction, an exponent, `-0` or over 18 digits: a number,
                // and not known for anything narrower.
                Number::Other => self.types.has(Types::NUMBER) && self.choices.is_none(),
            },
            b'{' | b'[' => {
                r.value()?;
                self.types == Types::ANY && self.choices.is_none()
            }
            _ => false,
        };
        ok.then_some(())
    }
}

enum Number {
    /// Digits alone, at most 18 of them: an integer for every reader.
    Integer(i64),
    Other,
}

/// A cursor over JSON text that reads the grammar strictly, so that
/// nothing it admits is other than JSON.
struct Reader<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }

    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.text.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// A string's bytes between its quotes, and whether it has escapes.
    fn string(&mut self) -> Option<(&'a [u8], bool)> {
        self.expect(b'"')?;
        let start = self.at;
        let mut escaped = false;
        loop {
            // The text is UTF-8 (a `str`): only ASCII needs a look. The
            // end is found by SIMD search; the run before it is checked for
            // control characters in one branch-free pass.
            let rest = self.text.get(self.at..)?;
            let skip = memchr::memchr2(b'"', b'\\', rest)?;
            if rest[..skip]
                .iter()
                .fold(false, |control, &b| control | (b < 0x20))
            {
                return None;
            }
            self.at += skip;
            match self.next()? {
                b'"' => return Some((&self.text[start..self.at - 1], escaped)),
                b'\\' => {
                    escaped = true;
                    match self.next()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            let hex = self.text.get(self.at..self.at + 4)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.at += 4;
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
    }

    /// `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Option<Number> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        let int_start = self.at;
        let mut value: i64 = 0;
        match self.next()? {
            b'0' => {}
            first @ b'1'..=b'9' => {
                value = i64::from(first - b'0');
                while let Some(d @ b'0'..=b'9') = self.peek() {
                    // Saturating: past 18 digits the value is not used.
                    value = value.saturating_mul(10).saturating_add(i64::from(d - b'0'));
                    self.at += 1;
                }
            }
            _ => return None,
        }
        let int_digits = self.at - int_start;
        let mut integral = true;
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.digit()?;
            self.digits();
            integral = false;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.digit()?;
            self.digits();
            integral = false;
        }
        let negative_zero = negative && value == 0;
        Some(match integral && int_digits <= 18 && !negative_zero {
            true => Number::Integer(if negative { -value } else { value }),
            false => Number::Other,
        })
    }

    fn digit(&mut self) -> Option<()> {
        self.next().filter(u8::is_ascii_digit).map(|_| ())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }

    /// Skip any one value. Containers (rare in a flat schema's document)
    /// are found by their brackets and then checked whole by serde_json.
    fn value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number().map(|_| ()),
            b'{' | b'[' => {
                let start = self.at;
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => depth -= 1,
                        _ => {}
                    }
                    self.at += 1;
                    if depth == 0 {
                        break;
                    }
                }
                serde_json::from_slice::<serde::de::IgnoredAny>(&self.text[start..self.at])
                    .ok()
                    .map(|_| ())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn bars() -> Value {
        json!({"$schema": DRAFT, "description": "One OHLCV bar.", "title": "Bar", "type": "object",
            "properties": {
                "close": {"format": "double", "type": "number"},
                "open": {"format": "double", "type": "number"},
                "time": {"description": "ms", "format": "int64", "type": "integer"},
                "volume": {"default": 0, "format": "int64", "type": "integer"}},
            "required": ["time", "open", "close"]})
    }

    fn trades() -> Value {
        json!({"$defs": {"Side": {"description": "who", "enum": ["buy", "sell"], "type": "string"}},
            "$schema": DRAFT, "type": "object",
            "properties": {"price": {"type": "number"}, "side": {"$ref": "#/$defs/Side"}},
            "required": ["price", "side"]})
    }

    #[test]
    fn a_bar_is_admitted_and_a_bad_one_is_left_to_the_validator() {
        let scan = ScanSchema::compile(&bars()).expect("bars scan");
        assert!(scan.admits(r#"{"time":1,"open":1.0,"close":2,"volume":0,"pad":"x"}"#));
        assert!(scan.admits("{ \"time\" : 1 ,\n \"open\":1e3, \"close\":-2.5 }"));
        for bad in [
            r#"{"time":1,"open":1.0}"#,
            r#"{"time":1.5,"open":1.0,"close":2}"#,
            r#"{"time":"1","open":1.0,"close":2}"#,
            r#"{"time":1,"open":null,"close":2}"#,
            r#"{"time":1,"open":1,"close":2,"volume":[]}"#,
            r#"[1]"#,
            r#"{"time":1,"open":1,"close":2} x"#,
        ] {
            assert!(!scan.admits(bad), "{bad}");
        }
    }

    #[test]
    fn a_referenced_enum_is_scanned() {
        let scan = ScanSchema::compile(&trades()).expect("trades scan");
        assert!(scan.admits(r#"{"price":1,"side":"buy"}"#));
        // Escaped, compared by the validator.
        assert!(!scan.admits(r#"{"price":1,"side":"s\u0065ll"}"#));
        assert!(!scan.admits(r#"{"price":1,"side":"hold"}"#));
        // An escape written as a choice's very text is still another string:
        // "\u0041" is "A", not the six characters listed.
        let schema = json!({"type": "object", "properties": {"s": {"enum": ["\\u0041"]}}});
        let scan = ScanSchema::compile(&schema).expect("enum scan");
        assert!(!scan.admits(r#"{"s":"\u0041"}"#));
    }

    #[test]
    fn numbers_and_their_signs_are_read_exactly() {
        let schema = json!({"type": "object",
            "properties": {"n": {"enum": [1, -7, 123_456_789_012_345_678_i64]}}});
        let scan = ScanSchema::compile(&schema).expect("enum scan");
        for yes in [r#"{"n":1}"#, r#"{"n":-7}"#, r#"{"n":123456789012345678}"#] {
            assert!(scan.admits(yes), "{yes}");
        }
        for no in [
            r#"{"n":-1}"#,
            r#"{"n":7}"#,
            r#"{"n":1.0}"#,
            r#"{"n":-0}"#,
            r#"{"n":1234567890123456789}"#,
        ] {
            assert!(!scan.admits(no), "{no}");
        }
    }

    #[test]
    fn what_is_not_understood_is_not_scanned() {
        for schema in [
            json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"}),
            json!({"type": "object", "properties": {"a": {"type": "number", "minimum": 0}}}),
            json!({"type": "object", "properties": {"a": {"type": "object"}}}),
            json!({"type": "object", "properties": {"a": {"enum": [1.5]}}}),
            json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/A", "type": "string"}},
                   "$defs": {"A": {}}}),
            json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}},
                   "$defs": {"A": {"$ref": "#/$defs/A"}}}),
            json!({"type": "object", "required": ["missing"]}),
            json!({"type": "object", "additionalProperties": {"type": "string"}}),
            json!({"anyOf": [{"type": "object"}]}),
            json!({"type": "array"}),
            json!(true),
        ] {
            assert!(ScanSchema::compile(&schema).is_none(), "{schema}");
        }
    }

    /// The scan leans on `format` being an annotation: were the validator
    /// to assert formats by default, this fails before the scan lies.
    #[test]
    fn the_validator_does_not_assert_formats_in_2020_12() {
        for schema in [
            json!({"$schema": DRAFT, "properties": {"a": {"format": "email"}}}),
            json!({"properties": {"a": {"format": "email"}}}),
        ] {
            let validator = jsonschema::validator_for(&schema).unwrap();
            assert!(validator.is_valid(&json!({"a": "not an email"})));
        }
    }

    fn property() -> impl Strategy<Value = Value> {
        let types =
            prop::sample::subsequence(vec!["null", "boolean", "integer", "number", "string"], 1..3)
                .prop_map(|t| json!(t));
        let choices = prop::sample::subsequence(
            vec![
                json!(null),
                json!(true),
                json!(0),
                json!(1),
                json!(-1),
                json!("a"),
                json!(1.0),
            ],
            0..4,
        );
        (
            prop::option::of(types),
            prop::option::of(choices),
            any::<bool>(),
        )
            .prop_map(|(types, choices, format)| {
                let mut p = Map::new();
                if let Some(t) = types {
                    p.insert("type".into(), t);
                }
                if let Some(c) = choices {
                    p.insert("enum".into(), Value::Array(c));
                }
                if format {
                    p.insert("format".into(), json!("int64"));
                }
                Value::Object(p)
            })
    }

    fn schema() -> impl Strategy<Value = Value> {
        let names = ["a", "b", "c"];
        (
            prop::collection::vec(prop::option::of(property()), 3),
            prop::sample::subsequence(names.to_vec(), 0..3),
            prop::option::of(any::<bool>()),
            any::<bool>(),
        )
            .prop_map(move |(props, required, additional, by_ref)| {
                let mut properties = Map::new();
                let mut defs = Map::new();
                for (name, p) in names.iter().zip(props) {
                    let Some(p) = p else { continue };
                    if by_ref {
                        defs.insert(name.to_uppercase(), p);
                        properties.insert(
                            name.to_string(),
                            json!({"$ref": format!("#/$defs/{}", name.to_uppercase())}),
                        );
                    } else {
                        properties.insert(name.to_string(), p);
                    }
                }
                let required: Vec<&str> = required
                    .into_iter()
                    .filter(|r| properties.contains_key(*r))
                    .collect();
                let mut s = json!({"$schema": DRAFT, "type": "object", "properties": properties,
                    "required": required, "$defs": defs});
                if let Some(a) = additional {
                    s["additionalProperties"] = json!(a);
                }
                s
            })
    }

    /// A document as text, so that keys may repeat.
    fn document() -> impl Strategy<Value = String> {
        let value = prop::sample::select(vec![
            "null",
            "999999999999999999",
            "-1E-2",
            r#""a\"b""#,
            r#""é\n""#,
            r#"[{"a":[1,"]"]}]"#,
            " 1 ",
            // Not JSON: never admitted (the test parses what is).
            "01",
            "1.",
            "-",
            "1e",
            "tru",
            "nul",
            r#""\x""#,
            r#""\u12""#,
            r#""\u12zz""#,
            "[1,]",
            r#"{"a"}"#,
            "[}",
            "\"\u{1}\"",
            "true",
            "false",
            "0",
            "1",
            "-1",
            "1.0",
            "2.5",
            "-0",
            "1e2",
            "18446744073709551616",
            "-9223372036854775809",
            r#""a""#,
            r#""\u0061""#,
            r#""""#,
            "[]",
            "[1]",
            "{}",
            r#"{"a":1}"#,
        ]);
        let key = prop::sample::select(vec!["a", "b", "c", "d", "\\u0061"]);
        prop_oneof![
            9 => prop::collection::vec((key, value.clone()), 0..5).prop_map(|entries| {
                let inner: Vec<String> =
                    entries.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
                format!("{{{}}}", inner.join(","))
            }),
            1 => value.prop_map(str::to_owned),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// Never valid for the scan and invalid for the validator.
        #[test]
        fn the_scan_never_admits_what_the_validator_refuses(schema in schema(), text in document()) {
            let validator = jsonschema::validator_for(&schema).unwrap();
            let Some(scan) = ScanSchema::compile(&schema) else {
                return Ok(());
            };
            if scan.admits(&text) {
                let value: Value = serde_json::from_str(&text).map_err(|e| {
                    TestCaseError::fail(format!("{schema} admitted {text}, not JSON: {e}"))
                })?;
                prop_assert!(validator.is_valid(&value), "{schema} admitted {text}");
            }
        }
    }
}
