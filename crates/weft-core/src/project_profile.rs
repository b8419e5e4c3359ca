//! A directory's default profile: the profile a session made in that
//! directory runs when none is named (amplifierd's `default_profile` of an
//! amplified directory). The CLI asks it for the current directory, the
//! daemon for a create's `amplified_dir`.
//!
//! The directory itself is read (not its parents), in this order:
//!
//! 1. `.weft/config.toml`: `default_profile = "NAME"`;
//! 2. `.amplified/metadata.json` (amplifierd's amplified-directory
//!    marker): `{"default_profile": "NAME", …}`;
//! 3. `.amplifier/settings.local.yaml`, then `.amplifier/settings.yaml`
//!    (Amplifier's project settings): `profile: { default: NAME }`.
//!
//! A file that exists but cannot be read, does not parse, or gives a
//! default profile that is not a non-empty string is an error naming the
//! file. It knows file formats only, nothing of which profiles exist.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Where a directory's default profile came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryProfile {
    /// The profile name.
    pub name: String,
    /// The file that names it.
    pub source: PathBuf,
}

/// A marker file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}; fix or remove the file")]
pub struct DirectoryProfileError {
    /// The file.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

enum Format {
    Toml,
    Json,
    Yaml,
}

/// The marker files, in the order they are read, with the path to the
/// profile name inside each.
const MARKERS: &[(&str, Format, &[&str])] = &[
    (".weft/config.toml", Format::Toml, &["default_profile"]),
    (
        ".amplified/metadata.json",
        Format::Json,
        &["default_profile"],
    ),
    (
        ".amplifier/settings.local.yaml",
        Format::Yaml,
        &["profile", "default"],
    ),
    (
        ".amplifier/settings.yaml",
        Format::Yaml,
        &["profile", "default"],
    ),
];

/// The default profile `dir` names, if any (see the module docs).
pub fn directory_profile(dir: &Path) -> Result<Option<DirectoryProfile>, DirectoryProfileError> {
    for (rel, format, key) in MARKERS {
        let path = dir.join(rel);
        if !path.is_file() {
            continue;
        }
        let err = |message: String| DirectoryProfileError {
            path: path.display().to_string(),
            message,
        };
        let text =
            std::fs::read_to_string(&path).map_err(|e| err(format!("cannot read it: {e}")))?;
        let value: Value = match format {
            Format::Toml => toml::from_str::<toml::Value>(&text)
                .map_err(|e| err(format!("not valid TOML: {}", e.message())))
                .and_then(|v| serde_json::to_value(v).map_err(|e| err(e.to_string())))?,
            Format::Json => {
                serde_json::from_str(&text).map_err(|e| err(format!("not valid JSON: {e}")))?
            }
            Format::Yaml if text.trim().is_empty() => Value::Null,
            Format::Yaml => {
                serde_yaml::from_str(&text).map_err(|e| err(format!("not valid YAML: {e}")))?
            }
        };
        let mut found = Some(&value);
        for k in key.iter() {
            found = found.and_then(|v| v.get(k));
        }
        let dotted = key.join(".");
        match found {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) if !s.trim().is_empty() => {
                return Ok(Some(DirectoryProfile {
                    name: s.trim().to_string(),
                    source: path,
                }));
            }
            Some(other) => {
                return Err(err(format!(
                    "`{dotted}` must be a profile name (a non-empty string), not {other}"
                )));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, body: &str) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }

    #[test]
    fn reads_each_marker_in_order() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(directory_profile(dir.path()).unwrap(), None);
        write(
            dir.path(),
            ".amplifier/settings.yaml",
            "profile:\n  default: dev\n",
        );
        let p = directory_profile(dir.path()).unwrap().unwrap();
        assert_eq!(p.name, "dev");
        assert!(p.source.ends_with(".amplifier/settings.yaml"));
        write(
            dir.path(),
            ".amplified/metadata.json",
            r#"{"default_profile": "foundation/base"}"#,
        );
        assert_eq!(
            directory_profile(dir.path()).unwrap().unwrap().name,
            "foundation/base"
        );
        write(
            dir.path(),
            ".weft/config.toml",
            "default_profile = \"mine\"\n",
        );
        assert_eq!(directory_profile(dir.path()).unwrap().unwrap().name, "mine");
    }

    #[test]
    fn a_marker_without_a_profile_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), ".weft/config.toml", "other = 1\n");
        write(
            dir.path(),
            ".amplified/metadata.json",
            r#"{"name": "x", "default_profile": "dev"}"#,
        );
        assert_eq!(directory_profile(dir.path()).unwrap().unwrap().name, "dev");
    }

    #[test]
    fn invalid_content_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), ".weft/config.toml", "default_profile = [\n");
        let err = directory_profile(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(".weft/config.toml") && err.contains("TOML"),
            "{err}"
        );
        write(dir.path(), ".weft/config.toml", "default_profile = 3\n");
        let err = directory_profile(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("default_profile") && err.contains("must be"),
            "{err}"
        );
        std::fs::remove_file(dir.path().join(".weft/config.toml")).unwrap();
        write(dir.path(), ".amplified/metadata.json", "{ nope");
        let err = directory_profile(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("metadata.json") && err.contains("JSON"),
            "{err}"
        );
    }
}
