//! [`PySession`] (`weft.Session`): a live weft session opened from a
//! store and a mount plan (dict, plan file or profile name), with its
//! turns, hooks, state, branches and mail. It is built the way the CLI
//! builds one (`SessionConfig::new` / `SessionConfig::resume`, the plan
//! recorded with the session when it came from a file or a dict) so the
//! `weft` binary lists and resumes it.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use pyo3::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::types::PyString;
use serde_json::{Value, json};
use weft_core::branches::{NewBranch, table_rows};
use weft_core::hooks::{HookHandle, HookHandler};
use weft_core::mount::{ModuleSpec, MountPlan};
use weft_core::profiles::load_profile;
use weft_core::record::{MetaPatch, RecordKind};
use weft_core::session::MailCategory;
use weft_core::store::StoreError;
use weft_core::tool::Tool;
use weft_core::view::BranchView;
use weft_core::{CancelMode, Session, SessionConfig, SessionId, TurnRequest};

use crate::bridge::{Callable, PyApproval, PyDisplay, PyHook, PyTool, hook_result};
use crate::convert::{from_py, from_py_as, ser_to_py, to_py};
use crate::errors::{NotInitializedError, invalid, session_err, store_err};
use crate::store::PyStore;

/// The tool module holding a session's Python tools.
const PYTHON_TOOLS: &str = "tool-python";

type PendingHook = (
    String,
    Arc<dyn HookHandler>,
    i32,
    String,
    Arc<Mutex<Option<HookHandle>>>,
);

/// A tool from Python: `(name, description, json_schema, callable)`.
type ToolArg<'py> = (String, String, Bound<'py, PyAny>, Py<PyAny>);

/// What `initialize()` builds the session from.
struct Pending {
    plan: Option<(MountPlan, String, bool)>,
    session_id: Option<SessionId>,
    parent_id: Option<SessionId>,
    name: Option<String>,
    model: Option<String>,
    approval: Option<Arc<dyn weft_core::ApprovalSystem>>,
    display: Option<Arc<dyn weft_core::DisplaySystem>>,
    tools: Vec<Arc<dyn Tool>>,
    hooks: Vec<PendingHook>,
}

/// A handler registration; `unregister()` removes it.
#[pyclass(name = "HookHandle", module = "weft._weft", frozen)]
pub struct PyHookHandle(Arc<Mutex<Option<HookHandle>>>);

#[pymethods]
impl PyHookHandle {
    /// Removes the handler (nothing if it is gone already).
    fn unregister(&self) {
        if let Some(h) = lock(&self.0).take() {
            h.unregister();
        }
    }

    /// Calling the handle unregisters too (Amplifier's `unregister = register(...)`).
    fn __call__(&self) {
        self.unregister();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A live session. `Session(store, plan=None, *, session_id=None,
/// parent_id=None, name=None, model=None, approval=None, display=None,
/// tools=None)`; nothing is stored until `await initialize()`.
///
/// `plan` is a mount-plan dict, the path of a YAML/JSON/TOML plan file, or
/// a profile name; None resumes `session_id` with its recorded plan or
/// profile, or starts one with the `base` profile. `tools` is a list of
/// `(name, description, json_schema, callable)`.
#[pyclass(name = "Session", module = "weft._weft", frozen)]
pub struct PySession {
    store: Arc<dyn weft_core::Store>,
    registry: weft_core::ModuleRegistry,
    home: std::path::PathBuf,
    pending: Arc<Mutex<Option<Pending>>>,
    session: Arc<OnceLock<Session>>,
    requested_id: Option<String>,
    parent: Option<String>,
    /// Whether methods wait for their result instead of returning an
    /// awaitable (see `blocking()`).
    blocking: bool,
}

fn plan_from(py_plan: &Bound<'_, PyAny>, home: &Path) -> PyResult<(MountPlan, String, bool)> {
    if let Ok(s) = py_plan.cast::<PyString>() {
        let text = s.to_cow()?;
        let text: &str = &text;
        let path = Path::new(text);
        if path.is_file() {
            let plan = MountPlan::load(path)
                .map_err(|e| invalid(e.to_string()))?
                .plan;
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("custom")
                .to_string();
            return Ok((plan, name, true));
        }
        let plan = load_profile(text, home)
            .map_err(|e| invalid(e.to_string()))?
            .plan;
        return Ok((plan, text.to_string(), false));
    }
    if py_plan.hasattr("__fspath__")? {
        let path: std::path::PathBuf = py_plan.extract()?;
        let plan = MountPlan::load(&path)
            .map_err(|e| invalid(e.to_string()))?
            .plan;
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("custom")
            .to_string();
        return Ok((plan, name, true));
    }
    let plan: MountPlan = from_py_as(py_plan, "mount plan")?;
    Ok((plan, "custom".into(), true))
}

fn branch_dict(py: Python<'_>, b: &BranchView, default: &str) -> PyResult<Py<PyAny>> {
    let messages: Vec<&weft_core::Message> = b.messages.iter().map(|m| &m.message).collect();
    let mut value = serde_json::to_value(&b.branch)
        .map_err(|e| invalid(format!("cannot convert a branch: {e}")))?;
    if let Value::Object(map) = &mut value {
        map.insert(
            "messages".into(),
            serde_json::to_value(&messages).unwrap_or_default(),
        );
        map.insert(
            "is_default".into(),
            Value::Bool(b.branch.id.as_str() == default),
        );
    }
    to_py(py, &value)
}

/// A message to load into a branch: weft's full message JSON, or the
/// short form `{"role", "content": text, "sender"?, "recipient"?}` (a
/// plain string is a user message).
fn full_message(item: Value) -> PyResult<Value> {
    let short = match &item {
        Value::String(text) => Some(("user".to_string(), text.clone(), &Value::Null)),
        Value::Object(map) if !map.contains_key("id") => {
            let role = map
                .get("role")
                .and_then(Value::as_str)
                .unwrap_or("user")
                .to_string();
            let text = match map.get("content") {
                Some(Value::String(t)) => t.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            Some((role, text, &item))
        }
        _ => None,
    };
    let Some((role, text, extra)) = short else {
        return Ok(item);
    };
    let role: weft_core::Role =
        serde_json::from_value(Value::String(role.clone())).map_err(|_| {
            invalid(format!(
                "unknown message role {role:?}: use system, user, assistant or tool"
            ))
        })?;
    let mut message = weft_core::Message::text(weft_core::BranchId::main(), role, text);
    message.sender = extra
        .get("sender")
        .and_then(Value::as_str)
        .map(String::from);
    message.recipient = extra
        .get("recipient")
        .and_then(Value::as_str)
        .map(String::from);
    serde_json::to_value(&message).map_err(|e| invalid(format!("invalid message: {e}")))
}

impl PySession {
    fn live(&self) -> PyResult<Session> {
        self.session.get().cloned().ok_or_else(|| {
            NotInitializedError::new_err("the session is not initialized: call initialize() first")
        })
    }
}

impl PySession {
    /// `fut` as an awaitable, or (for a blocking view) its result, waited
    /// for on the runtime with the GIL released.
    fn run<'py, T, F>(&self, py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
    where
        F: std::future::Future<Output = PyResult<T>> + Send + 'static,
        T: for<'a> IntoPyObject<'a> + Send + 'static,
    {
        if self.blocking {
            let value = py.detach(|| pyo3_async_runtimes::tokio::get_runtime().block_on(fut))?;
            value.into_bound_py_any(py)
        } else {
            pyo3_async_runtimes::tokio::future_into_py(py, fut)
        }
    }
}

macro_rules! awaitable {
    ($self:ident, $py:expr, $body:expr) => {
        $self.run($py, $body)
    };
}

#[pymethods]
impl PySession {
    #[new]
    #[pyo3(signature = (store, plan = None, *, session_id = None, parent_id = None, name = None,
        model = None, approval = None, display = None, tools = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        store: &PyStore,
        plan: Option<&Bound<'_, PyAny>>,
        session_id: Option<String>,
        parent_id: Option<String>,
        name: Option<String>,
        model: Option<String>,
        approval: Option<Py<PyAny>>,
        display: Option<Py<PyAny>>,
        tools: Option<Vec<ToolArg<'_>>>,
    ) -> PyResult<Self> {
        let parse = |s: &str, what: &str| {
            SessionId::parse(s).map_err(|e| invalid(format!("{what}: {e}; pass a valid id")))
        };
        let plan = plan.map(|p| plan_from(p, &store.home)).transpose()?;
        let mut py_tools: Vec<Arc<dyn Tool>> = Vec::new();
        for (tool_name, description, schema, func) in tools.unwrap_or_default() {
            let schema = from_py(&schema)?;
            py_tools.push(Arc::new(PyTool::new(
                tool_name,
                description,
                schema,
                Callable::new(py, func),
            )));
        }
        let pending = Pending {
            plan,
            session_id: session_id
                .as_deref()
                .map(|s| parse(s, "session_id"))
                .transpose()?,
            parent_id: parent_id
                .as_deref()
                .map(|s| parse(s, "parent_id"))
                .transpose()?,
            name,
            model,
            approval: approval.map(|a| Arc::new(PyApproval(Callable::new(py, a))) as _),
            display: display.map(|d| Arc::new(PyDisplay(Callable::new(py, d))) as _),
            tools: py_tools,
            hooks: Vec::new(),
        };
        Ok(Self {
            store: store.store.clone(),
            registry: (*store.registry).clone(),
            home: store.home.clone(),
            pending: Arc::new(Mutex::new(Some(pending))),
            blocking: false,
            session: Arc::new(OnceLock::new()),
            requested_id: session_id,
            parent: parent_id,
        })
    }

    /// The session id (the requested one before `initialize()`).
    #[getter]
    fn id(&self) -> Option<String> {
        match self.session.get() {
            Some(s) => Some(s.id().to_string()),
            None => self.requested_id.clone(),
        }
    }

    /// The parent session's id, if any.
    #[getter]
    fn parent_id(&self) -> Option<String> {
        match self.session.get() {
            Some(s) => s.config().parent_id.as_ref().map(|p| p.to_string()),
            None => self.parent.clone(),
        }
    }

    /// The same session with methods that wait for their results instead of
    /// returning awaitables (for synchronous APIs such as agentkernel's;
    /// never from a coroutine, which it would block).
    fn blocking(&self) -> Self {
        Self {
            store: self.store.clone(),
            registry: self.registry.clone(),
            home: self.home.clone(),
            pending: self.pending.clone(),
            session: self.session.clone(),
            requested_id: self.requested_id.clone(),
            parent: self.parent.clone(),
            blocking: true,
        }
    }

    /// Whether `initialize()` has run.
    #[getter]
    fn initialized(&self) -> bool {
        self.session.get().is_some()
    }

    fn __repr__(&self) -> String {
        format!("Session(id={:?})", self.id().unwrap_or_default())
    }

    /// Creates (or resumes, when `session_id` is stored) and mounts the
    /// session. Awaitable; a second call is an error.
    fn initialize<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let pending = lock(&self.pending)
            .take()
            .ok_or_else(|| invalid("the session is already initialized"))?;
        let store = self.store.clone();
        let mut registry = self.registry.clone();
        let home = self.home.clone();
        let cell = self.session.clone();
        awaitable!(self, py, async move {
            let existing = match &pending.session_id {
                Some(id) => match store.get(id).await {
                    Ok(meta) => Some(meta),
                    Err(StoreError::NotFound(_)) => None,
                    Err(e) => return Err(store_err(e)),
                },
                None => None,
            };
            let (mut plan, profile, record) = match (pending.plan, &existing) {
                (Some(p), _) => p,
                (None, Some(meta)) => match MountPlan::recorded(&meta.metadata) {
                    Some(recorded) => (
                        recorded.map_err(|e| invalid(e.to_string()))?,
                        meta.profile.clone(),
                        false,
                    ),
                    None => (
                        load_profile(&meta.profile, &home)
                            .map_err(|e| invalid(e.to_string()))?
                            .plan,
                        meta.profile.clone(),
                        false,
                    ),
                },
                (None, None) => (
                    load_profile("base", &home)
                        .map_err(|e| invalid(e.to_string()))?
                        .plan,
                    "base".to_string(),
                    false,
                ),
            };
            let recorded = (record && existing.is_none()).then(|| plan.to_metadata());
            if !pending.tools.is_empty() {
                let tools = pending.tools.clone();
                registry.register_tool(PYTHON_TOOLS, move |_spec, _env| Ok(tools.clone()));
                plan.tools.push(ModuleSpec::named(PYTHON_TOOLS));
            }
            let registry = Arc::new(registry);
            let mut config = match &existing {
                Some(meta) => SessionConfig::resume(meta, plan, store.clone(), registry).config,
                None => {
                    let mut c = SessionConfig::new(plan, store.clone(), registry);
                    c.profile = profile;
                    c.session_id = pending.session_id.clone();
                    c.parent_id = pending.parent_id.clone();
                    c
                }
            };
            config.name = pending.name;
            if pending.model.is_some() {
                config.model = pending.model;
            }
            config.approval = pending.approval;
            config.display = pending.display;
            let session = Session::new(config);
            for (event, handler, priority, name, slot) in pending.hooks {
                *lock(&slot) = Some(session.hooks().register(event, handler, priority, name));
            }
            session.initialize().await.map_err(session_err)?;
            // What the CLI prints as `warning: module … cannot start`.
            let warnings = session.mount_warnings();
            if !warnings.is_empty() {
                Python::attach(|py| {
                    let category = py.get_type::<pyo3::exceptions::PyUserWarning>();
                    for w in warnings {
                        let text = std::ffi::CString::new(w.replace('\0', " ")).unwrap_or_default();
                        PyErr::warn(py, &category, &text, 1)?;
                    }
                    Ok::<_, PyErr>(())
                })?;
            }
            if let Some(metadata) = recorded {
                let patch = MetaPatch {
                    metadata: Some(metadata),
                    ..Default::default()
                };
                session
                    .log()
                    .map_err(session_err)?
                    .append(vec![RecordKind::Meta(patch)])
                    .await
                    .map_err(store_err)?;
            }
            let id = session.id().to_string();
            let _ = cell.set(session);
            Ok(id)
        })
    }

    /// Runs `prompt` on `branch` (id or name; default: the default
    /// branch); awaitable → the answer text.
    #[pyo3(signature = (prompt, branch = None))]
    fn execute<'py>(
        &self,
        py: Python<'py>,
        prompt: String,
        branch: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let session = self.live()?;
        awaitable!(self, py, async move {
            session
                .execute_on(branch.as_deref(), &prompt)
                .await
                .map_err(session_err)
        })
    }

    /// Starts `prompt` on `branch`; awaitable → a `TurnStream` (async
    /// iterator of the turn's events and records, `answer()`, `cancel()`).
    #[pyo3(signature = (prompt, branch = None))]
    fn stream<'py>(
        &self,
        py: Python<'py>,
        prompt: String,
        branch: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let session = self.live()?;
        awaitable!(self, py, async move {
            let handle = session
                .start_turn_with(TurnRequest::new(prompt).on_branch(branch))
                .await
                .map_err(session_err)?;
            Ok(crate::stream::PyTurnStream::new(handle))
        })
    }

    /// Cancels the running turns (`immediate`: abort now, else after the
    /// running tools); awaitable.
    #[pyo3(signature = (immediate = false))]
    fn cancel<'py>(&self, py: Python<'py>, immediate: bool) -> PyResult<Bound<'py, PyAny>> {
        let session = self.live()?;
        let mode = if immediate {
            CancelMode::Immediate
        } else {
            CancelMode::Graceful
        };
        awaitable!(self, py, async move {
            session.cancel(mode).await;
            Ok(())
        })
    }

    /// Ends the session (recorded as completed); awaitable.
    fn cleanup<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let session = self.live()?;
        awaitable!(self, py, async move {
            session.cleanup().await.map_err(session_err)
        })
    }

    /// Registers a Python hook handler `(event, data) -> HookResult | dict
    /// | None` (sync or async) for `event` (`*`: every event); lower
    /// priorities run first. Returns a handle whose `unregister()` removes it.
    #[pyo3(signature = (event, handler, priority = 0, name = None))]
    fn register_hook(
        &self,
        py: Python<'_>,
        event: String,
        handler: Py<PyAny>,
        priority: i32,
        name: Option<String>,
    ) -> PyResult<PyHookHandle> {
        let name = match name {
            Some(n) => n,
            None => handler
                .bind(py)
                .getattr("__name__")
                .and_then(|n| n.extract::<String>())
                .unwrap_or_else(|_| "python".into()),
        };
        let hook: Arc<dyn HookHandler> = Arc::new(PyHook(Callable::new(py, handler)));
        let slot = Arc::new(Mutex::new(None));
        match self.session.get() {
            Some(s) => *lock(&slot) = Some(s.hooks().register(event, hook, priority, name)),
            None => match lock(&self.pending).as_mut() {
                Some(p) => p.hooks.push((event, hook, priority, name, slot.clone())),
                None => {
                    return Err(invalid(
                        "the session is being initialized: register hooks before or after",
                    ));
                }
            },
        }
        Ok(PyHookHandle(slot))
    }

    /// Emits `event` with `data` through the session's hook registry;
    /// awaitable → the combined result as a dict. Synchronous Python
    /// handlers run on the calling thread; async ones on its loop.
    #[pyo3(signature = (event, data = None))]
    fn emit<'py>(
        &self,
        py: Python<'py>,
        event: String,
        data: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let session = self.live()?;
        let data = match data {
            Some(d) => from_py(d)?,
            None => json!({}),
        };
        let fut = async move {
            let result = session.hooks().emit(&event, data).await;
            Python::attach(|py| ser_to_py(py, &result))
        };
        if self.blocking {
            return awaitable!(self, py, fut);
        }
        // Synchronous handlers finish on this thread (as amplifier-core runs
        // them); an async handler or approval hands the rest to tokio.
        crate::ready::inline_or_spawn(py, fut)
    }

    /// Names of the handlers registered for `event`.
    fn handler_names(&self, event: &str) -> PyResult<Vec<String>> {
        Ok(self.live()?.hooks().handler_names(event))
    }

    /// Sets a state key (scoped by its prefix: `temp:` volatile, `user:`,
    /// `app:` shared, else the session's); awaitable.
    fn state_set<'py>(
        &self,
        py: Python<'py>,
        key: String,
        value: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let session = self.live()?;
        let value = from_py(value)?;
        awaitable!(self, py, async move {
            session.state_set(&key, value).await.map_err(session_err)
        })
    }

    /// A state key's value (None when unset); awaitable.
    fn state_get<'py>(&self, py: Python<'py>, key: String) -> PyResult<Bound<'py, PyAny>> {
        let session = self.live()?;
        awaitable!(self, py, async move {
            let v = session.state_get(&key).await.map_err(session_err)?;
            Python::attach(|py| to_py(py, &v.unwrap_or(Value::Null)))
        })
    }

    /// Deletes a state key; awaitable.
    fn state_delete<'py>(&self, py: Python<'py>, key: String) -> PyResult<Bound<'py, PyAny>> {
        let session = self.live()?;
        awaitable!(self, py, async move {
            session.state_delete(&key).await.map_err(session_err)
        })
    }

    /// Clears the session's state; awaitable.
    fn state_clear<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let session = self.live()?;
        awaitable!(self, py, async move {
            session.state_clear().await.map_err(session_err)
        })
    }

    /// Every state key the session sees; awaitable → dict.
    fn state_all<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let session = self.live()?;
        awaitable!(self, py, async move {
            let all = session.state_all().await.map_err(session_err)?;
            Python::attach(|py| to_py(py, &Value::Object(all)))
        })
    }

    /// The branches with their messages; awaitable → list of dicts (`id`,
    /// `name`, `messages`, `is_default`, settings).
    fn branches<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let session = self.live()?;
        awaitable!(self, py, async move {
            let view = session.view().await.map_err(session_err)?;
            let default = view.meta.default_branch.to_string();
            Python::attach(|py| {
                view.branches
                    .iter()
                    .map(|b| branch_dict(py, b, &default))
                    .collect::<PyResult<Vec<_>>>()
            })
        })
    }

    /// Creates a branch from a dict (`name`, `system`, `messages`, `tools`,
    /// `model`, …); awaitable → its settings.
    fn new_branch<'py>(
        &self,
        py: Python<'py>,
        spec: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let session = self.live()?;
        let mut spec_value = from_py(spec)?;
        if let Some(Value::Array(items)) = spec_value.get_mut("messages") {
            for item in items.iter_mut() {
                *item = full_message(item.take())?;
            }
        }
        let spec: NewBranch = serde_json::from_value(spec_value)
            .map_err(|e| invalid(format!("invalid branch: {e}")))?;
        awaitable!(self, py, async move {
            let b = session.new_branch(spec).await.map_err(session_err)?;
            Python::attach(|py| ser_to_py(py, &b))
        })
    }

    /// Removes a branch (its messages stay in the log unless `delete`);
    /// awaitable.
    #[pyo3(signature = (id_or_name, delete = false))]
    fn remove_branch<'py>(
        &self,
        py: Python<'py>,
        id_or_name: String,
        delete: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let session = self.live()?;
        awaitable!(self, py, async move {
            session
                .remove_branch(&id_or_name, delete)
                .await
                .map_err(session_err)
        })
    }

    /// Makes a branch the default; awaitable.
    fn change_default_branch<'py>(
        &self,
        py: Python<'py>,
        id_or_name: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let session = self.live()?;
        awaitable!(self, py, async move {
            session
                .change_default_branch(&id_or_name)
                .await
                .map_err(session_err)
        })
    }

    /// Copies a branch (messages marked as clones, one system message);
    /// awaitable → the new branch's settings.
    #[pyo3(signature = (source, name = None))]
    fn split<'py>(
        &self,
        py: Python<'py>,
        source: String,
        name: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let session = self.live()?;
        awaitable!(self, py, async move {
            let b = session.split(&source, name).await.map_err(session_err)?;
            Python::attach(|py| ser_to_py(py, &b))
        })
    }

    /// Messages of several branches in log order; awaitable → list of
    /// `{seq, message}`; `rows=True` gives the table export's rows instead.
    #[pyo3(signature = (branches = None, exclude_clone = false, exclude_load = false, rows = false))]
    fn concat_messages<'py>(
        &self,
        py: Python<'py>,
        branches: Option<Vec<String>>,
        exclude_clone: bool,
        exclude_load: bool,
        rows: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let session = self.live()?;
        awaitable!(self, py, async move {
            let msgs = session
                .concat_messages(branches.as_deref(), exclude_clone, exclude_load)
                .await
                .map_err(session_err)?;
            Python::attach(|py| {
                if rows {
                    ser_to_py(py, &table_rows(&msgs))
                } else {
                    ser_to_py(py, &msgs)
                }
            })
        })
    }

    /// Sends mail from branch `sender` to `to` (None: every other branch);
    /// `category` is `message`, `tool` or `model`; awaitable → the mail.
    #[pyo3(signature = (sender, item, to = None, category = "message"))]
    fn send_mail<'py>(
        &self,
        py: Python<'py>,
        sender: String,
        item: &Bound<'py, PyAny>,
        to: Option<String>,
        category: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let session = self.live()?;
        let category: MailCategory = serde_json::from_value(Value::String(category.into()))
            .map_err(|_| {
                invalid(format!(
                    "unknown mail category {category:?}: use message, tool or model"
                ))
            })?;
        let item = from_py(item)?;
        awaitable!(self, py, async move {
            let mail = session
                .send_mail(&sender, to.as_deref(), category, item)
                .await
                .map_err(session_err)?;
            Python::attach(|py| ser_to_py(py, &mail))
        })
    }

    /// Delivers waiting mail to branch `to` (None: every branch), only
    /// from `sender` if given; awaitable → how many were delivered.
    #[pyo3(signature = (to = None, sender = None))]
    fn collect_mail<'py>(
        &self,
        py: Python<'py>,
        to: Option<String>,
        sender: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let session = self.live()?;
        awaitable!(self, py, async move {
            session
                .collect_mail(to.as_deref(), sender.as_deref())
                .await
                .map_err(session_err)
        })
    }
}

/// Parses a hook result the way handlers' results are parsed (for tests
/// and `weft.amplifier.HookResult`).
#[pyfunction]
pub fn parse_hook_result(py: Python<'_>, result: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    ser_to_py(py, &hook_result(result)?)
}
