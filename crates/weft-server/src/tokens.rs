//! The token file (`$WEFT_HOME/tokens.toml`): the daemon's bearer tokens,
//! each with a tenant and a [`Scope`], stored only as hashes.
//!
//! `weft token create` makes a token from 32 random bytes of the operating
//! system's generator and shows it once; the file keeps its SHA-256. A
//! plain (unsalted, fast) hash is enough here because the token is not a
//! password: 256 random bits cannot be guessed or brute-forced from the
//! hash, so a slow password hash would only make every request slower.
//! The file is replaced atomically (a temp file beside it, renamed over
//! it) and is readable by its owner only (0600).
//!
//! [`TokenSet`] is what the daemon checks requests against: it re-reads
//! the file whenever its modification time or size changes, so a revoked
//! token stops working on the next request, without a restart. This module
//! knows nothing of HTTP or sessions.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Compares two byte strings in time that depends only on their lengths,
/// not on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    // Lengths are compared too, without an early return.
    let mut diff: u8 = u8::from(a.len() != b.len());
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    // Keep the optimiser from short-circuiting the loop.
    std::hint::black_box(diff) == 0
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read its tenant's sessions (GET requests only).
    Read,
    /// Read and change its tenant's sessions, run turns.
    Write,
    /// Everything, on every tenant's sessions (also `POST
    /// /api/v1/sessions/cleanup`).
    Admin,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        })
    }
}

impl FromStr for Scope {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "admin" => Ok(Scope::Admin),
            other => Err(TokenError::Invalid(format!(
                "unknown scope {other:?}: use read, write or admin"
            ))),
        }
    }
}

/// Why the token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a valid token file.
    #[error("{path} is not a valid token file ({detail}): fix it or remove it")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A bad argument (tenant name, scope, unknown id).
    #[error("{0}")]
    Invalid(String),
    /// The system's random generator failed.
    #[error("the system's random number generator failed: cannot make a token")]
    Random,
}

/// One token, as stored: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenEntry {
    /// A short id to revoke it by (`tok_` and 12 hex digits); not secret.
    pub id: String,
    /// The tenant its requests act for.
    pub tenant: String,
    /// What it may do.
    pub scope: Scope,
    /// `sha256:` and the hex SHA-256 of the token.
    pub hash: String,
    /// When it was made.
    pub created: DateTime<Utc>,
}

/// The token file's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenFile {
    /// The tokens, oldest first.
    #[serde(default, rename = "token")]
    pub tokens: Vec<TokenEntry>,
}

/// The longest tenant name accepted.
pub const MAX_TENANT_CHARS: usize = 64;

/// Checks a tenant name: 1 to 64 ASCII letters, digits, `-`, `_` or `.`.
pub fn check_tenant(name: &str) -> Result<&str, TokenError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TENANT_CHARS
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(name)
    } else {
        Err(TokenError::Invalid(format!(
            "invalid tenant name {name:?}: use 1 to {MAX_TENANT_CHARS} letters, digits, '-', '_' or '.'"
        )))
    }
}

/// `sha256:<hex>` of `token`.
pub fn hash_token(token: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token);
    format!("sha256:{}", hex(digest.as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_bytes<const N: usize>() -> Result<[u8; N], TokenError> {
    use ring::rand::SecureRandom;
    let mut out = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| TokenError::Random)?;
    Ok(out)
}

impl TokenFile {
    /// Reads `path` (a missing file is an empty one).
    pub fn load(path: &Path) -> Result<Self, TokenError> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| TokenError::Parse {
                path: path.to_path_buf(),
                detail: e.message().to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(TokenError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Replaces `path` with these tokens, atomically, readable by the
    /// owner only (its directory is made when missing).
    pub fn save(&self, path: &Path) -> Result<(), TokenError> {
        let io = |source| TokenError::Io {
            path: path.to_path_buf(),
            source,
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let text = toml::to_string(self).map_err(|e| TokenError::Invalid(e.to_string()))?;
        // tempfile creates the file with mode 0600 on Unix.
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        tmp.write_all(b"# weft's daemon tokens: hashes only (see `weft token --help`).\n")
            .map_err(io)?;
        tmp.write_all(text.as_bytes()).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        if let Ok(d) = std::fs::File::open(dir) {
            // Make the rename durable; a failure here loses nothing written.
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Adds a new token for `tenant` with `scope`; returns its entry and
    /// the token (shown once, never stored).
    pub fn create(
        &mut self,
        tenant: &str,
        scope: Scope,
    ) -> Result<(TokenEntry, String), TokenError> {
        check_tenant(tenant)?;
        let secret = format!("weft_{}", hex(&random_bytes::<32>()?));
        let entry = TokenEntry {
            id: format!("tok_{}", hex(&random_bytes::<6>()?)),
            tenant: tenant.to_string(),
            scope,
            hash: hash_token(secret.as_bytes()),
            created: Utc::now(),
        };
        self.tokens.push(entry.clone());
        Ok((entry, secret))
    }

    /// Removes the token with id `id`; returns it.
    pub fn revoke(&mut self, id: &str) -> Result<TokenEntry, TokenError> {
        let at = self
            .tokens
            .iter()
            .position(|t| t.id == id.trim())
            .ok_or_else(|| {
                TokenError::Invalid(format!(
                    "no token has the id {id:?}: `weft token list` shows the ids"
                ))
            })?;
        Ok(self.tokens.remove(at))
    }

    /// The entry whose hash matches `token`. Every entry is compared, in
    /// constant time, whichever matches.
    pub fn find(&self, token: &[u8]) -> Option<&TokenEntry> {
        let hash = hash_token(token);
        let mut found = None;
        for entry in &self.tokens {
            if constant_time_eq(entry.hash.as_bytes(), hash.as_bytes()) && found.is_none() {
                found = Some(entry);
            }
        }
        found
    }
}

/// The token file as the daemon sees it: re-read when it changes.
#[derive(Debug)]
pub struct TokenSet {
    path: PathBuf,
    cache: Mutex<Cached>,
}

#[derive(Debug)]
struct Cached {
    stamp: Option<Stamp>,
    file: Result<TokenFile, String>,
}

/// What tells a changed file: its modification time, size and (on Unix)
/// inode, which every atomic replacement changes.
type Stamp = (SystemTime, u64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some((meta.modified().ok()?, meta.len(), inode))
}

impl TokenSet {
    /// The token file at `path`, read now (an unreadable or invalid file
    /// refuses every request until it is fixed; a missing one holds no
    /// tokens). [`TokenFile::load`] first to report a bad file at start.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let stamp = stamp(&path);
        let file = TokenFile::load(&path).map_err(|e| e.to_string());
        Self {
            path,
            cache: Mutex::new(Cached { stamp, file }),
        }
    }

    /// The file it reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entry `token` matches, re-reading the file first when it has
    /// changed. Err: the file cannot be read now (the sentence to show);
    /// the daemon then refuses every token rather than serve stale ones.
    pub fn check(&self, token: &[u8]) -> Result<Option<TokenEntry>, String> {
        let now = stamp(&self.path);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if now != cache.stamp {
            cache.file = TokenFile::load(&self.path).map_err(|e| e.to_string());
            cache.stamp = now;
            if let Err(e) = &cache.file {
                tracing::error!(error = %e, "the token file cannot be read: every request is refused until it is fixed");
            }
        }
        match &cache.file {
            Ok(file) => Ok(file.find(token).cloned()),
            Err(e) => Err(e.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_bytes() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn create_find_revoke_and_save() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("tokens.toml");
        let mut file = TokenFile::default();
        let (entry, secret) = file.create("acme", Scope::Write).expect("create");
        assert!(secret.starts_with("weft_") && secret.len() == 5 + 64);
        assert_eq!(file.find(secret.as_bytes()), Some(&entry));
        assert_eq!(file.find(b"weft_other"), None);
        file.save(&path).expect("save");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains(&secret), "the token itself is never stored");
        assert!(text.contains(&entry.hash));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let mut back = TokenFile::load(&path).expect("load");
        assert_eq!(back, file);
        assert!(back.revoke("tok_nope").is_err());
        back.revoke(&entry.id).expect("revoke");
        assert!(back.find(secret.as_bytes()).is_none());
    }

    #[test]
    fn tenant_names_and_scopes() {
        assert!(check_tenant("team-a.eu_1").is_ok());
        for bad in ["", "a b", "../x", &"x".repeat(65)] {
            assert!(check_tenant(bad).is_err(), "{bad}");
        }
        assert_eq!("ADMIN".parse::<Scope>().expect("scope"), Scope::Admin);
        assert!("root".parse::<Scope>().is_err());
    }

    #[test]
    fn set_rereads_a_changed_file_and_fails_closed() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("tokens.toml");
        let mut file = TokenFile::default();
        let (a, secret) = file.create("acme", Scope::Read).expect("create");
        file.save(&path).expect("save");
        let set = TokenSet::new(&path);
        assert_eq!(set.check(secret.as_bytes()), Ok(Some(a.clone())));
        file.revoke(&a.id).expect("revoke");
        // A different size: the change is seen whatever the clock's grain.
        file.create("other", Scope::Admin).expect("create");
        file.save(&path).expect("save");
        assert_eq!(set.check(secret.as_bytes()), Ok(None));
        std::fs::write(&path, "token = 3").expect("write");
        assert!(set.check(secret.as_bytes()).is_err());
    }
}
