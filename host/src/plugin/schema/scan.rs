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

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
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
        let mut bits = 0u64;
        for name in required {
            let name = name.as_str()?;
            let i = properties.iter().position(|(n, _)| &**n == name)?;
            bits |= 1 << i;
        }
        Some(ScanSchema {
            properties,
            required: bits,
            additional,
        })
    }

    /// Whether `text` (JSON) certainly matches; `false` is "not known".
    pub(super) fn admits(&self, text: &str) -> bool {
        let mut de = serde_json::Deserializer::from_str(text);
        de.deserialize_map(self).is_ok() && de.end().is_ok()
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.properties.iter().position(|(n, _)| &**n == name)
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

    fn allows(&self, bit: u8, choice: impl FnOnce() -> Choice) -> bool {
        let numeric = bit == Types::INTEGER && self.types.has(Types::NUMBER);
        (self.types.has(bit) || numeric)
            && self.choices.as_ref().is_none_or(|c| c.contains(&choice()))
    }
}

/// Why a scan stopped: the document is not known to be valid.
fn not_known<E: de::Error>() -> E {
    E::custom("not known to match")
}

impl<'de> Visitor<'de> for &ScanSchema {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = 0u64;
        while let Some(key) = map.next_key_seed(KeyOf(self))? {
            match key {
                Some(i) => {
                    map.next_value_seed(&self.properties[i].1)?;
                    seen |= 1 << i;
                }
                None if self.additional => {
                    map.next_value::<IgnoredAny>()?;
                }
                None => return Err(not_known()),
            }
        }
        if seen & self.required != self.required {
            return Err(not_known());
        }
        Ok(())
    }
}

/// A key, looked up without being copied: which property it names.
struct KeyOf<'a>(&'a ScanSchema);

impl<'de> DeserializeSeed<'de> for KeyOf<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Option<usize>, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyOf<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.index(key))
    }
}

impl<'de> DeserializeSeed<'de> for &Property {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &Property {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        check(self.allows(Types::NULL, || Choice::Null))
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<(), E> {
        check(self.allows(Types::BOOLEAN, || Choice::Bool(b)))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<(), E> {
        check(self.allows(Types::INTEGER, || Choice::Integer(n.into())))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<(), E> {
        check(self.allows(Types::INTEGER, || Choice::Integer(n.into())))
    }

    /// A number written with a fraction or an exponent, or too large for
    /// 64 bits: a `number`, and not known for anything narrower.
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        check(self.types.has(Types::NUMBER) && self.choices.is_none())
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        check(self.allows(Types::STRING, || Choice::String(s.into())))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        check::<A::Error>(self.types == Types::ANY && self.choices.is_none())?;
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        check::<A::Error>(self.types == Types::ANY && self.choices.is_none())?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

fn check<E: de::Error>(ok: bool) -> Result<(), E> {
    if ok { Ok(()) } else { Err(not_known()) }
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
        assert!(scan.admits(r#"{"price":1,"side":"s\u0065ll"}"#));
        assert!(!scan.admits(r#"{"price":1,"side":"hold"}"#));
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
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Never valid for the scan and invalid for the validator.
        #[test]
        fn the_scan_never_admits_what_the_validator_refuses(schema in schema(), text in document()) {
            let validator = jsonschema::validator_for(&schema).unwrap();
            let Some(scan) = ScanSchema::compile(&schema) else {
                return Ok(());
            };
            if scan.admits(&text) {
                let value: Value = serde_json::from_str(&text).unwrap();
                prop_assert!(validator.is_valid(&value), "{schema} admitted {text}");
            }
        }
    }
}
