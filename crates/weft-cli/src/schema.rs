//! `weft run --schema FILE`: reading the response schema (JSON or YAML)
//! and printing a structured turn's validated answer (pretty on a
//! terminal, compact when piped). The validation itself is the kernel's
//! (`weft_core::structured`); this module knows files and stdout only.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::Value;
use weft_core::ResponseFormat;

/// The response format of the schema in `path`: a JSON Schema, or
/// `{name, schema, strict}`, in JSON (`.json`) or YAML (`.yaml`, `.yml`;
/// any other name is tried as JSON, then YAML). An invalid schema is
/// refused here, before any session opens.
pub fn load(path: &Path) -> anyhow::Result<ResponseFormat> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the schema file {}", path.display()))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let json = || serde_json::from_str::<Value>(&text);
    let yaml = || serde_yaml::from_str::<Value>(&text);
    let value = match ext.as_deref() {
        Some("json") => json().map_err(|e| {
            anyhow::anyhow!(
                "the schema file {} is not valid JSON ({e}): fix it, or write it as YAML in a .yaml file",
                path.display()
            )
        })?,
        Some("yaml" | "yml") => yaml().map_err(|e| {
            anyhow::anyhow!(
                "the schema file {} is not valid YAML ({e}): fix it",
                path.display()
            )
        })?,
        _ => match json() {
            Ok(v) => v,
            Err(_) => yaml().map_err(|e| {
                anyhow::anyhow!(
                    "the schema file {} is neither JSON nor YAML ({e}): fix it",
                    path.display()
                )
            })?,
        },
    };
    match ResponseFormat::from_value(value) {
        Ok(format) => Ok(format),
        Err(e) => bail!("{} (in {})", e, path.display()),
    }
}

/// Prints a structured answer on stdout: pretty on a terminal, one
/// compact line when piped.
pub fn print(value: &Value) {
    let pretty = std::io::stdout().is_terminal();
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    };
    // Serializing a `Value` cannot fail (its keys are strings).
    println!("{}", text.unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn file(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn reads_json_and_yaml_schemas() {
        let (_d, p) = file("s.json", r#"{"type": "object", "required": ["a"]}"#);
        assert_eq!(
            load(&p).unwrap().schema,
            json!({"type": "object", "required": ["a"]})
        );
        let (_d, p) = file(
            "s.yaml",
            "name: person\nstrict: true\nschema:\n  type: object\n  required: [a]\n",
        );
        let f = load(&p).unwrap();
        assert_eq!((f.name.as_str(), f.strict), ("person", true));
        assert_eq!(f.schema, json!({"type": "object", "required": ["a"]}));
        let (_d, p) = file("schema", "type: object\n");
        assert_eq!(load(&p).unwrap().schema, json!({"type": "object"}));
    }

    #[test]
    fn bad_files_are_one_clear_sentence() {
        let (_d, p) = file("s.json", "{not json");
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("is not valid JSON"), "{e}");
        let (_d, p) = file("s.json", r#"{"type": 5}"#);
        let e = load(&p).unwrap_err().to_string();
        assert!(
            e.starts_with("the response schema is not a valid JSON Schema"),
            "{e}"
        );
        let e = load(Path::new("/nonexistent/s.json")).unwrap_err();
        assert!(
            format!("{e:#}").contains("cannot read the schema file"),
            "{e:#}"
        );
    }
}
