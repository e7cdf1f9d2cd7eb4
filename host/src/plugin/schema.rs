//! A route's JSON Schemas: checked once at load, compiled into validators,
//! and the problems a document has, in a form safe to show to whoever sent it.

mod scan;

use serde_json::Value;

/// One problem found in a request or in published data.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Problem {
    /// JSON pointer to the offending value (`""` is the whole document).
    pub path: String,
    pub message: String,
}

/// Problems reported for one document, at most: a client learns everything
/// wrong at once, but a hostile document cannot make the reply unbounded.
const MAX_PROBLEMS: usize = 20;
/// Longest problem message kept.
const MAX_MESSAGE: usize = 300;

/// A schema as the plugin reported it, and its compiled validator.
pub struct Schema {
    pub source: Value,
    validator: jsonschema::Validator,
    /// The same check while scanning the text, when the schema is simple
    /// enough (see [`scan`]).
    scan: Option<scan::ScanSchema>,
}

impl Schema {
    /// Parse and compile a schema the plugin returned as JSON text; the
    /// error says what is wrong with it.
    pub fn compile(text: &str) -> Result<Schema, String> {
        let source: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        if !source.is_object() && !source.is_boolean() {
            return Err("a JSON Schema is an object or a boolean".to_owned());
        }
        jsonschema::meta::validate(&source).map_err(|e| e.to_string())?;
        let validator = jsonschema::validator_for(&source).map_err(|e| e.to_string())?;
        let scan = scan::ScanSchema::compile(&source);
        Ok(Schema {
            source,
            validator,
            scan,
        })
    }

    /// Whether `text` (JSON) certainly matches, found without building a
    /// tree when the schema is simple enough; `false` means "not known":
    /// parse it and [`Schema::check`] it.
    pub fn admits(&self, text: &str) -> bool {
        self.scan.as_ref().is_some_and(|scan| scan.admits(text))
    }

    /// Check `value`; every problem (bounded) when it does not match.
    pub fn check(&self, value: &Value) -> Result<(), Vec<Problem>> {
        if self.validator.is_valid(value) {
            return Ok(());
        }
        Err(self
            .validator
            .iter_errors(value)
            .take(MAX_PROBLEMS)
            .map(|e| Problem {
                path: e.instance_path().as_str().to_owned(),
                message: truncate(&e.to_string(), MAX_MESSAGE),
            })
            .collect())
    }
}

/// `s` cut to at most `max` bytes (on a character boundary), marked with `…`.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
