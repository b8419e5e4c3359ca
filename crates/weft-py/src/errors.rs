//! weft's errors as Python exceptions: `weft.WeftError` and its
//! subclasses, each carrying the library's one-sentence message.

use pyo3::prelude::*;
use pyo3::{PyErr, create_exception};
use weft_core::{SessionError, StoreError};

create_exception!(
    weft,
    WeftError,
    pyo3::exceptions::PyException,
    "Any error weft reports."
);
create_exception!(
    weft,
    NotFoundError,
    WeftError,
    "A session, branch or profile that does not exist."
);
create_exception!(
    weft,
    ConflictError,
    WeftError,
    "Another writer changed the session, or it already exists."
);
create_exception!(
    weft,
    InvalidError,
    WeftError,
    "Input weft refuses (an id, a plan, a key, a branch name)."
);
create_exception!(
    weft,
    NotInitializedError,
    WeftError,
    "A session used before initialize() or after it ended."
);
create_exception!(
    weft,
    CancelledError,
    WeftError,
    "A turn that was cancelled."
);
create_exception!(weft, DeniedError, WeftError, "A prompt a hook denied.");
create_exception!(
    weft,
    ProviderError,
    WeftError,
    "The model provider failed or none is mounted."
);
create_exception!(
    weft,
    StoreError_,
    WeftError,
    "The store failed (I/O, corrupt data, an unreachable server)."
);

/// Adds the exception classes to the module.
pub fn add(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("WeftError", py.get_type::<WeftError>())?;
    m.add("NotFoundError", py.get_type::<NotFoundError>())?;
    m.add("ConflictError", py.get_type::<ConflictError>())?;
    m.add("InvalidError", py.get_type::<InvalidError>())?;
    m.add("NotInitializedError", py.get_type::<NotInitializedError>())?;
    m.add("CancelledError", py.get_type::<CancelledError>())?;
    m.add("DeniedError", py.get_type::<DeniedError>())?;
    m.add("ProviderError", py.get_type::<ProviderError>())?;
    m.add("StoreError", py.get_type::<StoreError_>())?;
    Ok(())
}

/// A store error as its Python exception.
pub fn store_err(e: StoreError) -> PyErr {
    let msg = e.to_string();
    match e {
        StoreError::NotFound(_) | StoreError::NoMatch(_) => NotFoundError::new_err(msg),
        StoreError::Conflict { .. } | StoreError::AlreadyExists(_) => ConflictError::new_err(msg),
        StoreError::Ambiguous { .. }
        | StoreError::InvalidId(_)
        | StoreError::InvalidBatch(_)
        | StoreError::Invalid(_)
        | StoreError::Refused(_) => InvalidError::new_err(msg),
        _ => StoreError_::new_err(msg),
    }
}

/// A session error as its Python exception.
pub fn session_err(e: SessionError) -> PyErr {
    let msg = e.to_string();
    if e.is_cancelled() {
        return CancelledError::new_err(msg);
    }
    match e {
        SessionError::Store(e) => store_err(e),
        SessionError::Provider(_)
        | SessionError::NoProvider
        | SessionError::StructuredOutput { .. } => ProviderError::new_err(msg),
        SessionError::Denied(_) => DeniedError::new_err(msg),
        SessionError::NotInitialized | SessionError::Ended => NotInitializedError::new_err(msg),
        SessionError::Branch(weft_core::branches::BranchError::UnknownBranch(_)) => {
            NotFoundError::new_err(msg)
        }
        _ => InvalidError::new_err(msg),
    }
}

/// A message-only invalid-input error.
pub fn invalid(msg: impl Into<String>) -> PyErr {
    InvalidError::new_err(msg.into())
}
