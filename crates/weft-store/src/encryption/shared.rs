//! Shared state (`app:…`, `user:…` namespaces) sealed at rest: every value
//! set becomes `wencs1:<key id>:<token body>`, sealed with a store-wide
//! shared-state data key (not tied to one session: every session of the
//! app or user reads it) and bound to its namespace (a value copied into
//! another namespace does not open). Keys stay clear, as in a session's
//! state. The data keys are entries `shared.<id>` of the key ring, wrapped
//! by the master key like the sessions' keys, and re-wrapped by
//! `weft keys rotate`.
//!
//! This module knows the form of a sealed shared value; where its key
//! comes from is `keyring`'s business.

use serde_json::{Map, Value};
use weft_core::store::StoreError;

use super::keys::DataKey;
use super::token;

/// The prefix of a sealed shared-state value.
pub(crate) const SHARED_TOKEN: &str = "wencs1:";

fn undecryptable(namespace: &str) -> StoreError {
    StoreError::Corrupt {
        location: format!("shared state {namespace}"),
        detail: "an encrypted value does not authenticate under its data key (damaged data)".into(),
    }
}

/// `value` of `namespace` sealed with shared-state key `kid`.
pub(crate) fn seal(
    kid: &str,
    key: &DataKey,
    namespace: &str,
    value: &Value,
) -> Result<Value, StoreError> {
    let prefix = format!("{SHARED_TOKEN}{kid}:");
    Ok(Value::String(token::seal_json(
        key, namespace, &prefix, value,
    )?))
}

/// The id of the key that sealed `value`, if it is sealed.
pub(crate) fn kid(value: &Value) -> Option<&str> {
    let rest = value.as_str()?.strip_prefix(SHARED_TOKEN)?;
    Some(&rest[..rest.find(':')?])
}

/// The value a [`seal`]ed `value` holds (opened with `key`, the key
/// [`kid`] names).
pub(crate) fn open(key: &DataKey, namespace: &str, value: Value) -> Result<Value, StoreError> {
    let Some(skip) = kid(&value).map(|k| SHARED_TOKEN.len() + k.len() + 1) else {
        return Ok(value);
    };
    let Value::String(s) = value else {
        return Ok(value);
    };
    let opened = token::open_owned(key, namespace, s.into_bytes(), skip)
        .map_err(|_| undecryptable(namespace))?;
    opened
        .parse(namespace)
        .map_err(|_| undecryptable(namespace))
}

/// Whether any value of `state` is sealed.
pub(crate) fn any_sealed(state: &Map<String, Value>) -> bool {
    state.values().any(|v| kid(v).is_some())
}
