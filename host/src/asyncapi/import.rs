//! Importing plugin schemas into the document's `components.schemas`.
//!
//! Plugin schemas are JSON Schema (2020-12 or 07) with their own `$defs`.
//! AsyncAPI resolves `$ref` against the whole document, so each schema is
//! moved into `components.schemas` under route-prefixed names
//! (`<route>.request`, `<route>.data`, `<route>.<Def>`) and its references are
//! rewritten to match: two plugins may both define `$defs/Status` and keep
//! distinct types. Host-defined schemas have no dot in their names; route
//! ones always do, so the two never collide either.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// `components.schemas` under construction.
#[derive(Default)]
pub(super) struct Schemas {
    pub map: Map<String, Value>,
    /// The plugin's original text of each imported `$defs` entry, so that
    /// the request and data schemas of one route share an identical def.
    origin: BTreeMap<String, Value>,
}

impl Schemas {
    /// Move `schema` (with its `$defs`) into the components under names
    /// prefixed by `route`; returns the key of the root schema.
    pub fn import(&mut self, route: &str, role: &str, schema: &Value) -> String {
        let root_key = self.free_key(&format!("{route}.{role}"));
        let mut root = schema.clone();
        let mut defs = Map::new();
        if let Value::Object(obj) = &mut root {
            for keyword in ["$defs", "definitions"] {
                if let Some(Value::Object(d)) = obj.remove(keyword) {
                    for (name, def) in d {
                        defs.insert(format!("{keyword}\u{0}{name}"), def);
                    }
                }
            }
            // Meta keywords of a standalone schema mean nothing inside the
            // document (and `$id` would change how references resolve).
            obj.remove("$schema");
            obj.remove("$id");
        }
        // Reserve the root key before naming defs, so a def called like the
        // role gets another name.
        self.map.insert(root_key.clone(), Value::Null);

        let mut names: BTreeMap<String, String> = BTreeMap::new();
        for (tagged, def) in &defs {
            let name = tagged.split('\u{0}').nth(1).unwrap_or_default();
            let wanted = format!("{route}.{}", sanitize(name));
            let key = match self.origin.get(&wanted) {
                Some(original) if original == def => wanted,
                _ => {
                    let key = self.free_key(&wanted);
                    self.map.insert(key.clone(), Value::Null);
                    key
                }
            };
            names.insert(tagged.clone(), key);
        }

        let rewrite = |v: &mut Value| rewrite_refs(v, &root_key, &names);
        rewrite(&mut root);
        self.map.insert(root_key.clone(), root);
        for (tagged, def) in defs {
            let key = names[&tagged].clone();
            if self.origin.contains_key(&key) {
                continue;
            }
            let mut converted = def.clone();
            rewrite(&mut converted);
            self.origin.insert(key.clone(), def);
            self.map.insert(key, converted);
        }
        root_key
    }

    fn free_key(&self, wanted: &str) -> String {
        if !self.map.contains_key(wanted) {
            return wanted.to_owned();
        }
        (2..)
            .map(|n| format!("{wanted}_{n}"))
            .find(|k| !self.map.contains_key(k))
            .unwrap_or_else(|| wanted.to_owned())
    }
}

/// AsyncAPI component keys allow `[A-Za-z0-9._-]` only.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "_".to_owned() } else { s }
}

/// Keywords whose values are data, not schemas: never rewritten.
const DATA_KEYWORDS: [&str; 5] = ["const", "default", "enum", "examples", "example"];

/// Point every local `$ref` of a plugin schema at the components, and turn
/// JSON Schema 2020-12 constructs into their draft-07 equivalents, which is
/// what AsyncAPI schemas are.
fn rewrite_refs(value: &mut Value, root_key: &str, names: &BTreeMap<String, String>) {
    match value {
        Value::Object(obj) => {
            // Children first: the `allOf` wrapper made below must not be
            // rewritten a second time.
            for (key, child) in obj.iter_mut() {
                if !DATA_KEYWORDS.contains(&key.as_str()) {
                    rewrite_refs(child, root_key, names);
                }
            }
            if let Some(Value::String(r)) = obj.get("$ref") {
                let target = map_ref(r, root_key, names);
                if obj.len() == 1 {
                    obj.insert("$ref".to_owned(), Value::String(target));
                } else {
                    // Draft 07 ignores keywords beside `$ref` (2020-12 does
                    // not): keep them by wrapping the reference in `allOf`.
                    obj.remove("$ref");
                    obj.insert("allOf".to_owned(), json!([{ "$ref": target }]));
                }
            }
            if let Some(prefix) = obj.remove("prefixItems") {
                if let Some(rest) = obj.remove("items") {
                    obj.insert("additionalItems".to_owned(), rest);
                }
                obj.insert("items".to_owned(), prefix);
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| rewrite_refs(v, root_key, names)),
        _ => {}
    }
}

fn map_ref(reference: &str, root_key: &str, names: &BTreeMap<String, String>) -> String {
    let Some(pointer) = reference.strip_prefix('#') else {
        // Plugins must be self-contained; a remote reference cannot be
        // fetched by the host or by clients reading the document.
        return format!("#/components/schemas/{root_key}");
    };
    let segments: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|s| percent_decode(s).replace("~1", "/").replace("~0", "~"))
        .collect();
    if let [keyword, name, rest @ ..] = segments.as_slice()
        && let Some(key) = names.get(&format!("{keyword}\u{0}{name}"))
    {
        return pointer_to(key, rest);
    }
    pointer_to(root_key, &segments)
}

fn pointer_to(key: &str, rest: &[String]) -> String {
    let mut out = format!("#/components/schemas/{key}");
    for seg in rest {
        out.push('/');
        out.push_str(&seg.replace('~', "~0").replace('/', "~1"));
    }
    out
}

pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(hex) = std::str::from_utf8(&bytes[i + 1..i + 3])
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_owned())
}
