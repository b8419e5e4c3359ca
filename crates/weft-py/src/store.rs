//! [`PyStore`] (`weft.Store`): a store opened as the CLI opens it
//! (`weft_store::open_store`), the module registry the CLI mounts from,
//! and the session-level operations on stored sessions (list, get,
//! delete) plus opening a live session.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use weft_core::SessionId;
use weft_core::registry::ModuleRegistry;
use weft_core::store::{DeleteOptions, ForkPoint, ListFilter, ListQuery, Store};
use weft_store::{StoreConfig, StoreKind};

use crate::convert::ser_to_py;
use crate::errors::{invalid, store_err};

/// A session store: `Store(kind="fs", path=None, url=None, home=None)`.
///
/// `kind` is `fs` (JSONL files under `home`, default `~/.weft`), `sqlite`,
/// `memory`, `postgres`, `redis` or `dynamodb` (the last three at `url`).
#[pyclass(name = "Store", module = "weft._weft", frozen)]
pub struct PyStore {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) registry: Arc<ModuleRegistry>,
    pub(crate) home: PathBuf,
    kind: StoreKind,
}

fn parse_id(id: &str) -> PyResult<SessionId> {
    SessionId::parse(id).map_err(|e| invalid(format!("{e}; pass a session id")))
}

#[pymethods]
impl PyStore {
    #[new]
    #[pyo3(signature = (kind = "fs", path = None, url = None, home = None))]
    fn new(
        py: Python<'_>,
        kind: &str,
        path: Option<PathBuf>,
        url: Option<String>,
        home: Option<PathBuf>,
    ) -> PyResult<Self> {
        let kind: StoreKind = kind.parse().map_err(store_err)?;
        let home = home.unwrap_or_else(weft_store::default_weft_home);
        let config = StoreConfig {
            kind,
            path,
            url,
            // Encryption at rest as the CLI has it from the environment.
            encryption: weft_store::encryption::EncryptionConfig::from_env(),
        };
        let store = py.detach(|| {
            // Network stores build their clients on the runtime.
            let _guard = pyo3_async_runtimes::tokio::get_runtime().enter();
            weft_store::open_store(&config, &home)
        });
        let store = store.map_err(store_err)?;
        let registry = Arc::new(weft_modules::full_registry(weft_modules::tool_access(
            &home, &config,
        )));
        Ok(Self {
            store,
            registry,
            home,
            kind,
        })
    }

    /// The backend's name (`fs`, `sqlite`, `memory`, …).
    #[getter]
    fn kind(&self) -> &'static str {
        self.kind.as_str()
    }

    /// The weft home (profiles, the fs store's files).
    #[getter]
    fn home(&self) -> PathBuf {
        self.home.clone()
    }

    fn __repr__(&self) -> String {
        // Never the URL: it may hold a password.
        format!("Store(kind={:?}, home={:?})", self.kind.as_str(), self.home)
    }

    /// Lists sessions, newest first (awaitable → list of metadata dicts).
    #[pyo3(signature = (limit = 50))]
    fn list<'py>(&self, py: Python<'py>, limit: usize) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let query = ListQuery {
                filter: ListFilter::default(),
                cursor: None,
                limit: limit.max(1),
            };
            let page = store.list(&query).await.map_err(store_err)?;
            Python::attach(|py| ser_to_py(py, &page.sessions))
        })
    }

    /// A session's metadata (awaitable → dict); `id` may be a unique
    /// prefix.
    fn get<'py>(&self, py: Python<'py>, id: String) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let id = store.resolve(&id).await.map_err(store_err)?;
            let meta = store.get(&id).await.map_err(store_err)?;
            Python::attach(|py| ser_to_py(py, &meta))
        })
    }

    /// Deletes a session (and its sub-sessions with `with_children`);
    /// awaitable → the deleted ids.
    #[pyo3(signature = (id, with_children = false))]
    fn delete<'py>(
        &self,
        py: Python<'py>,
        id: String,
        with_children: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store.clone();
        let id = parse_id(&id)?;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let options = DeleteOptions {
                with_children,
                unless_active: false,
            };
            let gone = store.delete(&id, options).await.map_err(store_err)?;
            Ok(gone.into_iter().map(|i| i.to_string()).collect::<Vec<_>>())
        })
    }

    /// Forks a session into a new one: after turn `turn` of its default
    /// branch (None: the whole log); awaitable → the new session's metadata.
    #[pyo3(signature = (id, turn = None, name = None, new_id = None))]
    fn fork<'py>(
        &self,
        py: Python<'py>,
        id: String,
        turn: Option<u64>,
        name: Option<String>,
        new_id: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store.clone();
        let new_id = new_id.as_deref().map(parse_id).transpose()?;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let id = store.resolve(&id).await.map_err(store_err)?;
            let point = turn.map_or(ForkPoint::End, ForkPoint::Turn);
            let meta = store
                .fork(&id, point, new_id, name)
                .await
                .map_err(store_err)?;
            Python::attach(|py| ser_to_py(py, &meta))
        })
    }
}
