//! Structured output: a turn that must answer with JSON matching a JSON
//! Schema (LionAGI's `operate(response_format=…)`).
//!
//! This module owns the [`ResponseFormat`] (name, schema, strict flag), its
//! checks (a schema that is not a valid JSON Schema is refused before any
//! model call), the validation of an answer against it, and the repair
//! prompt sent once when an answer does not match. Providers map a
//! request's format to their native mode (OpenAI `json_schema`, Anthropic
//! tool-forcing, Ollama `format`); the orchestrator validates and repairs;
//! the runtime returns the validated value. This module knows nothing of
//! providers, sessions or stores.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The name a format gets when the caller gives none.
pub const DEFAULT_FORMAT_NAME: &str = "response";

/// The most validation errors reported (in the repair prompt and in
/// [`crate::SessionError::StructuredOutput`]).
const MAX_ERRORS: usize = 10;

/// What a structured turn must answer with: JSON valid against `schema`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseFormat {
    /// The format's name (letters, digits, `_` and `-`, at most 64): the
    /// OpenAI `json_schema` name, the Anthropic tool the answer is forced
    /// through.
    pub name: String,
    /// The JSON Schema the answer must match.
    pub schema: Value,
    /// Whether the provider should enforce the schema strictly where it can
    /// (OpenAI `strict`).
    #[serde(default)]
    pub strict: bool,
}

/// Why a response format was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SchemaError(pub String);

impl ResponseFormat {
    /// A format named [`DEFAULT_FORMAT_NAME`], not strict, checked.
    pub fn new(schema: Value) -> Result<Self, SchemaError> {
        Self::named(DEFAULT_FORMAT_NAME, schema, false)
    }

    /// A format with a name and a strict flag, checked (see
    /// [`ResponseFormat::check`]).
    pub fn named(
        name: impl Into<String>,
        schema: Value,
        strict: bool,
    ) -> Result<Self, SchemaError> {
        let format = Self {
            name: name.into(),
            schema,
            strict,
        };
        format.check()?;
        Ok(format)
    }

    /// A format from a request body: a JSON Schema object, or
    /// `{name, schema, strict}` (an object whose `schema` is an object:
    /// `schema` is no JSON Schema keyword), checked.
    pub fn from_value(value: Value) -> Result<Self, SchemaError> {
        match value {
            Value::Object(mut map) if map.get("schema").is_some_and(Value::is_object) => {
                let schema = map.remove("schema").unwrap_or(Value::Null);
                let name = match map.remove("name") {
                    None | Some(Value::Null) => DEFAULT_FORMAT_NAME.to_string(),
                    Some(Value::String(s)) => s,
                    Some(_) => {
                        return Err(SchemaError(
                            "the response format's name must be a string: give letters, digits, `_` or `-`".into(),
                        ));
                    }
                };
                let strict = match map.remove("strict") {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(b)) => b,
                    Some(_) => {
                        return Err(SchemaError(
                            "the response format's strict flag must be true or false".into(),
                        ));
                    }
                };
                if let Some(key) = map.keys().next() {
                    return Err(SchemaError(format!(
                        "the response format has an unknown field {key:?}: give a JSON Schema, or {{name, schema, strict}}"
                    )));
                }
                Self::named(name, schema, strict)
            }
            schema => Self::new(schema),
        }
    }

    /// Checks the name and that the schema is a valid JSON Schema (an
    /// object; `$ref`s to other documents are refused, never fetched).
    pub fn check(&self) -> Result<(), SchemaError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok {
            return Err(SchemaError(format!(
                "the response format's name {:?} is invalid: use 1 to 64 letters, digits, `_` or `-`",
                self.name
            )));
        }
        if !self.schema.is_object() {
            return Err(SchemaError(
                "the response schema must be a JSON object (a JSON Schema such as {\"type\": \"object\", ...})".into(),
            ));
        }
        jsonschema::validator_for(&self.schema)
            .map(|_| ())
            .map_err(|e| {
                SchemaError(format!(
                    "the response schema is not a valid JSON Schema ({e}): fix the schema and try again"
                ))
            })
    }

    /// Validates `value` against the schema: the errors (`/path: what`),
    /// at most ten, when it does not match.
    pub fn validate(&self, value: &Value) -> Result<(), Vec<String>> {
        let validator = jsonschema::validator_for(&self.schema).map_err(|e| {
            vec![format!(
                "the response schema is not a valid JSON Schema: {e}"
            )]
        })?;
        let errors: Vec<String> = validator
            .iter_errors(value)
            .take(MAX_ERRORS)
            .map(|e| {
                let path = e.instance_path().to_string();
                let path = if path.is_empty() {
                    "/".to_string()
                } else {
                    path
                };
                format!("{path}: {e}")
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The JSON value of a model's answer `text` (surrounding whitespace
    /// and a Markdown code fence tolerated), validated: the errors when it
    /// is not JSON or does not match.
    pub fn parse_answer(&self, text: &str) -> Result<Value, Vec<String>> {
        let body = strip_fence(text.trim());
        let value: Value = serde_json::from_str(body).map_err(|e| {
            if body.is_empty() {
                vec!["the answer is empty: it must be one JSON value".to_string()]
            } else {
                vec![format!("the answer is not valid JSON ({e})")]
            }
        })?;
        self.validate(&value)?;
        Ok(value)
    }
}

/// `text` without a surrounding Markdown code fence (```` ```json ````).
fn strip_fence(text: &str) -> &str {
    let Some(rest) = text.strip_prefix("```") else {
        return text;
    };
    let Some(rest) = rest.strip_suffix("```") else {
        return text;
    };
    // The info string (`json`) runs to the first newline.
    match rest.find('\n') {
        Some(i) => rest[i + 1..].trim(),
        None => rest.trim(),
    }
}

/// The user message asking for a corrected answer after `errors`.
pub fn repair_prompt(errors: &[String]) -> String {
    let mut prompt = String::from("Your answer does not match the required JSON Schema:\n");
    for e in errors {
        prompt.push_str("- ");
        prompt.push_str(e);
        prompt.push('\n');
    }
    prompt
        .push_str("Answer again with only the corrected JSON value, matching the schema exactly.");
    prompt
}

/// The answer of a structured turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StructuredAnswer {
    /// The answer's text, as the model gave it.
    pub text: String,
    /// The answer's JSON value, valid against the format's schema.
    pub value: Value,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn person() -> ResponseFormat {
        ResponseFormat::new(json!({
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"],
            "additionalProperties": false
        }))
        .unwrap()
    }

    #[test]
    fn valid_answers_parse_fenced_or_not() {
        let f = person();
        let want = json!({"name": "Ada", "age": 36});
        assert_eq!(
            f.parse_answer(r#" {"name":"Ada","age":36} "#).unwrap(),
            want
        );
        assert_eq!(
            f.parse_answer("```json\n{\"name\":\"Ada\",\"age\":36}\n```")
                .unwrap(),
            want
        );
    }

    #[test]
    fn invalid_answers_name_the_path() {
        let f = person();
        let errors = f
            .parse_answer(r#"{"name": "Ada", "age": "old"}"#)
            .unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("/age: "), "{errors:?}");
        let errors = f.parse_answer("Ada, 36").unwrap_err();
        assert!(errors[0].contains("not valid JSON"), "{errors:?}");
        let errors = f.parse_answer(r#"{"name": "Ada"}"#).unwrap_err();
        assert!(errors[0].starts_with("/: "), "{errors:?}");
    }

    #[test]
    fn invalid_schemas_and_names_are_refused() {
        let e = ResponseFormat::new(json!({"type": "not-a-type"})).unwrap_err();
        assert!(e.0.contains("not a valid JSON Schema"), "{e}");
        assert!(ResponseFormat::new(json!("string")).is_err());
        assert!(ResponseFormat::new(json!({"$ref": "https://example.com/s.json"})).is_err());
        assert!(ResponseFormat::named("has space", json!({}), false).is_err());
        assert!(ResponseFormat::named("", json!({}), false).is_err());
    }

    #[test]
    fn odd_schemas_are_refused_or_accepted_without_panicking() {
        for schema in [
            json!({"$schema": "http://example.com/custom-meta"}),
            json!({"$schema": 5}),
            json!({"$ref": "#/definitions/missing"}),
            json!({"pattern": "("}),
            json!({"type": "object", "properties": {"a": {"$ref": "other.json"}}}),
            json!({"$id": "urn:x", "$ref": "urn:y"}),
        ] {
            if let Ok(f) = ResponseFormat::new(schema.clone()) {
                let _ = f.validate(&json!({"a": 1}));
            }
        }
    }

    #[test]
    fn request_values_take_both_shapes() {
        let bare = ResponseFormat::from_value(json!({"type": "object"})).unwrap();
        assert_eq!(bare.name, DEFAULT_FORMAT_NAME);
        assert!(!bare.strict);
        let wrapped = ResponseFormat::from_value(
            json!({"name": "person", "schema": {"type": "object"}, "strict": true}),
        )
        .unwrap();
        assert_eq!(
            wrapped,
            ResponseFormat {
                name: "person".into(),
                schema: json!({"type": "object"}),
                strict: true
            }
        );
        assert!(ResponseFormat::from_value(json!({"schema": {}, "extra": 1})).is_err());
        assert!(ResponseFormat::from_value(json!({"schema": {}, "strict": "yes"})).is_err());
    }

    #[test]
    fn the_repair_prompt_lists_the_errors() {
        let p = repair_prompt(&["/age: \"old\" is not of type \"integer\"".into()]);
        assert!(p.contains("- /age: "));
        assert!(p.contains("corrected JSON"));
    }
}
