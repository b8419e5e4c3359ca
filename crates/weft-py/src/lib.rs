//! # weft-py
//!
//! The native module `weft._weft`: weft's library API for Python through
//! PyO3. It owns the bridge only — opening a store ([`store::PyStore`]), a
//! live session ([`session::PySession`]) with its turns, branches, mail and
//! state, Python callables as hook handlers, tools, approval and display
//! systems ([`bridge`]), JSON ⇄ Python values ([`convert`]) and weft's
//! errors as Python exceptions ([`errors`]). The seed APIs
//! (`weft.amplifier`, `weft.lionagi`, `weft.agentkernel`) are Python code in
//! `python/weft/` on top of it.
//!
//! Async methods return real Python awaitables driven by the tokio runtime
//! of `pyo3-async-runtimes`; the GIL is released while Rust works.
//!
//! What it must not know about: HTTP, terminals, the CLI's configuration
//! files beyond the store and profile choice it is given.

use pyo3::prelude::*;

pub mod bridge;
pub mod convert;
pub mod errors;
pub mod ready;
pub mod session;
pub mod store;
pub mod stream;

/// The module `weft._weft`.
#[pymodule]
fn _weft(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::add(m)?;
    m.add_class::<store::PyStore>()?;
    m.add_class::<session::PySession>()?;
    m.add_class::<session::PyHookHandle>()?;
    m.add_class::<ready::Ready>()?;
    m.add_class::<stream::PyTurnStream>()?;
    m.add_function(wrap_pyfunction!(session::parse_hook_result, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
