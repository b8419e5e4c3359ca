//! Input validation shared by the tools.
//!
//! A tool's input arrives as a JSON value written by a model, so nothing
//! about it can be trusted. [`Args`] checks that it is an object, that it
//! has no fields the tool does not take, and reads each field with a clear,
//! one-sentence error naming the tool, the field and what was expected.
//!
//! Models sometimes quote numbers and booleans (`"10"`, `"true"`); those are
//! accepted, since the intent is unambiguous.

use serde_json::{Map, Value};

/// A tool's validated input object.
pub(crate) struct Args<'a> {
    tool: &'static str,
    map: &'a Map<String, Value>,
}

impl<'a> Args<'a> {
    /// Checks that `input` is an object whose fields are all in `known`.
    pub(crate) fn parse(
        tool: &'static str,
        input: &'a Value,
        known: &[&str],
    ) -> Result<Self, String> {
        let Value::Object(map) = input else {
            return Err(format!(
                "{tool} needs a JSON object with the fields {}, not {}",
                known.join(", "),
                kind(input)
            ));
        };
        if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(format!(
                "{tool} has no field `{unknown}`; it takes {}",
                known.join(", ")
            ));
        }
        Ok(Self { tool, map })
    }

    fn present(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    /// A required string field (it may be empty).
    pub(crate) fn string(&self, field: &str) -> Result<&'a str, String> {
        match self.present(field) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(format!(
                "{} needs `{field}` to be a string, not {}",
                self.tool,
                kind(other)
            )),
            None => Err(format!(
                "{} needs `{field}` (a string), which is missing",
                self.tool
            )),
        }
    }

    /// A required string field that must not be empty or blank.
    pub(crate) fn non_empty(&self, field: &str) -> Result<&'a str, String> {
        let s = self.string(field)?;
        if s.trim().is_empty() {
            return Err(format!("{} needs a non-empty `{field}`", self.tool));
        }
        Ok(s)
    }

    /// An optional string field (blank counts as absent).
    pub(crate) fn opt_string(&self, field: &str) -> Result<Option<&'a str>, String> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!(
                "{} needs `{field}` to be a string, not {}",
                self.tool,
                kind(other)
            )),
        }
    }

    /// An optional non-negative integer field.
    pub(crate) fn opt_u64(&self, field: &str) -> Result<Option<u64>, String> {
        let bad = |what: &str| {
            format!(
                "{} needs `{field}` to be a non-negative whole number, not {what}",
                self.tool
            )
        };
        match self.present(field) {
            None => Ok(None),
            Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
                (Some(v), _) => Ok(Some(v)),
                (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f <= u64::MAX as f64 => {
                    Ok(Some(f as u64))
                }
                _ => Err(bad(&n.to_string())),
            },
            Some(Value::String(s)) => s
                .trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| bad(&format!("{s:?}"))),
            Some(other) => Err(bad(kind(other))),
        }
    }

    /// An optional boolean field (default `false`).
    pub(crate) fn flag(&self, field: &str) -> Result<bool, String> {
        match self.present(field) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
            Some(other) => Err(format!(
                "{} needs `{field}` to be true or false, not {}",
                self.tool,
                kind(other)
            )),
        }
    }
}

/// A short name for a JSON value's type, for error messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rejects_non_objects_and_unknown_fields() {
        let err = Args::parse("t", &json!([1]), &["path"])
            .err()
            .unwrap_or_default();
        assert!(err.contains("JSON object"), "{err}");
        let err = Args::parse("t", &json!({"file": "x"}), &["path"])
            .err()
            .unwrap_or_default();
        assert!(err.contains("no field `file`"), "{err}");
    }

    #[test]
    fn reads_fields_leniently_but_clearly() -> Result<(), String> {
        let input = json!({"s": "x", "n": "12", "f": 3.0, "b": "TRUE", "blank": " ", "null": null});
        let a = Args::parse("t", &input, &["s", "n", "f", "b", "blank", "null"])?;
        assert_eq!(a.string("s")?, "x");
        assert_eq!(a.opt_u64("n")?, Some(12));
        assert_eq!(a.opt_u64("f")?, Some(3));
        assert_eq!(a.opt_u64("null")?, None);
        assert!(a.flag("b")?);
        assert!(!a.flag("null")?);
        assert_eq!(a.opt_string("blank")?, None);
        assert!(a.non_empty("blank").is_err());
        assert!(a.string("missing").is_err_and(|e| e.contains("missing")));
        let bad = json!({"n": -1, "m": 1.5, "b": 1});
        let a = Args::parse("t", &bad, &["n", "m", "b"])?;
        assert!(a.opt_u64("n").is_err());
        assert!(a.opt_u64("m").is_err());
        assert!(a.flag("b").is_err());
        Ok(())
    }
}
