//! Python callables inside weft: hook handlers ([`PyHook`]), tools
//! ([`PyTool`]), approval ([`PyApproval`]) and display ([`PyDisplay`])
//! systems. Each may be a plain function or return an awaitable; an
//! awaitable runs on the asyncio loop that was running when the callable
//! was handed to weft, while the tokio task waits for it without holding
//! the GIL.

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3_async_runtimes::TaskLocals;
use serde_json::Value;
use weft_core::approval::{
    ApprovalDecision, ApprovalError, ApprovalRequest, ApprovalSystem, DisplayLevel, DisplaySystem,
};
use weft_core::hooks::{HookError, HookHandler, HookResult};
use weft_core::tool::{Tool, ToolContext, ToolOutput};

use crate::convert::{from_py, from_py_as, to_py};

type PyFuture = Pin<Box<dyn Future<Output = PyResult<Py<PyAny>>> + Send>>;

/// A Python callable and the asyncio loop its awaitables run on.
pub struct Callable {
    func: Py<PyAny>,
    locals: Option<TaskLocals>,
}

impl Callable {
    /// `func`, with the loop running now (if any) for its awaitables.
    pub fn new(py: Python<'_>, func: Py<PyAny>) -> Self {
        let locals = pyo3_async_runtimes::tokio::get_current_locals(py).ok();
        Self { func, locals }
    }

    /// The Python object.
    pub fn object(&self) -> &Py<PyAny> {
        &self.func
    }

    /// Calls it with what `args` builds (positional, keyword) and awaits
    /// the result if it is awaitable.
    pub async fn call<F>(&self, args: F) -> PyResult<Py<PyAny>>
    where
        F: for<'py> FnOnce(
            Python<'py>,
        ) -> PyResult<(Bound<'py, PyTuple>, Option<Bound<'py, PyDict>>)>,
    {
        let pending = Python::attach(|py| {
            let (pos, kw) = args(py)?;
            let result = self.func.bind(py).call(pos, kw.as_ref())?;
            self.settle(
                result,
                "an async callable was given to weft outside a running asyncio loop: register it from async code",
            )
        })?;
        match pending {
            Ok(v) => Ok(v),
            Err(fut) => fut.await,
        }
    }

    /// Calls `self.method(...)` the same way.
    pub async fn call_method<F>(&self, method: &'static str, args: F) -> PyResult<Py<PyAny>>
    where
        F: for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, PyTuple>>,
    {
        let pending = Python::attach(|py| {
            let result = self.func.bind(py).call_method1(method, args(py)?)?;
            self.settle(
                result,
                "an async method was given to weft outside a running asyncio loop: pass it from async code",
            )
        })?;
        match pending {
            Ok(v) => Ok(v),
            Err(fut) => fut.await,
        }
    }

    /// `result` as it is, or, when it is awaitable, a future that awaits
    /// it on the loop that was running at registration (`no_loop`: the
    /// error when there was none).
    fn settle(
        &self,
        result: Bound<'_, PyAny>,
        no_loop: &str,
    ) -> PyResult<Result<Py<PyAny>, PyFuture>> {
        if !result.hasattr("__await__")? {
            return Ok(Ok(result.unbind()));
        }
        let locals = self
            .locals
            .as_ref()
            .ok_or_else(|| crate::errors::invalid(no_loop))?;
        let fut = pyo3_async_runtimes::into_future_with_locals(locals, result)?;
        Ok(Err(Box::pin(fut) as PyFuture))
    }
}

fn describe(e: PyErr) -> String {
    Python::attach(|py| {
        let name = e
            .get_type(py)
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "Exception".into());
        format!("{name}: {}", e.value(py))
    })
}

/// A hook result from Python: `None` (continue), a dict with
/// `HookResult`'s fields, or an object with `to_dict()` returning one.
pub fn hook_result(obj: &Bound<'_, PyAny>) -> PyResult<HookResult> {
    if obj.is_none() {
        return Ok(HookResult::proceed());
    }
    if obj.hasattr("to_dict")? && !obj.is_instance_of::<PyDict>() {
        return from_py_as(&obj.call_method0("to_dict")?, "hook result");
    }
    from_py_as(obj, "hook result")
}

/// A Python hook handler `(event, data) -> HookResult | dict | None`.
pub struct PyHook(pub Callable);

#[async_trait]
impl HookHandler for PyHook {
    async fn handle(&self, event: &str, data: &Value) -> Result<HookResult, HookError> {
        let result = self
            .0
            .call(|py| {
                let args = PyTuple::new(
                    py,
                    [
                        event.into_pyobject(py)?.into_any(),
                        to_py(py, data)?.into_bound(py),
                    ],
                )?;
                Ok((args, None))
            })
            .await
            .map_err(|e| HookError(describe(e)))?;
        Python::attach(|py| hook_result(result.bind(py))).map_err(|e| HookError(describe(e)))
    }
}

/// A Python function as a tool: the model's arguments become its keyword
/// arguments; a string result is the output, anything else its JSON; an
/// exception is the tool's error.
pub struct PyTool {
    name: String,
    description: String,
    schema: Value,
    func: Callable,
}

impl PyTool {
    /// A tool `name` described by `description` and the JSON Schema
    /// `schema` that calls `func`.
    pub fn new(name: String, description: String, schema: Value, func: Callable) -> Self {
        Self {
            name,
            description,
            schema,
            func,
        }
    }
}

#[async_trait]
impl Tool for PyTool {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn input_schema(&self) -> Value {
        self.schema.clone()
    }

    async fn execute(&self, input: Value, _ctx: &ToolContext) -> ToolOutput {
        let called = self
            .func
            .call(|py| {
                let kwargs = PyDict::new(py);
                if let Value::Object(map) = &input {
                    for (k, v) in map {
                        kwargs.set_item(k, to_py(py, v)?)?;
                    }
                }
                Ok((PyTuple::empty(py), Some(kwargs)))
            })
            .await;
        let result = called.and_then(|r| {
            Python::attach(|py| {
                let r = r.bind(py);
                if let Ok(s) = r.extract::<String>() {
                    return Ok(s);
                }
                Ok(from_py(r)?.to_string())
            })
        });
        match result {
            Ok(text) => ToolOutput::ok(text),
            Err(e) => ToolOutput::error(describe(e)),
        }
    }
}

/// An approval system with Amplifier's method
/// `request_approval(prompt, options, timeout, default) -> str`. An answer
/// starting with "allow always"/"always" allows from now on, one starting
/// with "allow", "yes", "approve" or "y" allows once, anything else denies.
pub struct PyApproval(pub Callable);

#[async_trait]
impl ApprovalSystem for PyApproval {
    async fn request_approval(
        &self,
        request: ApprovalRequest,
    ) -> Result<ApprovalDecision, ApprovalError> {
        let answer = self
            .0
            .call_method("request_approval", |py| {
                let default = match request.default {
                    weft_core::approval::ApprovalDefault::Allow => "allow",
                    weft_core::approval::ApprovalDefault::Deny => "deny",
                };
                PyTuple::new(
                    py,
                    [
                        request.prompt.clone().into_pyobject(py)?.into_any(),
                        request.options.clone().into_pyobject(py)?.into_any(),
                        request.timeout.as_secs_f64().into_pyobject(py)?.into_any(),
                        default.into_pyobject(py)?.into_any(),
                    ],
                )
            })
            .await
            .and_then(|a| Python::attach(|py| a.bind(py).str().map(|s| s.to_string())))
            .map_err(|e| ApprovalError(describe(e)))?;
        Ok(decision(&answer))
    }
}

/// The decision an approval answer means.
pub fn decision(answer: &str) -> ApprovalDecision {
    let a = answer.trim().to_lowercase();
    if a.starts_with("allow always") || a.starts_with("always") {
        ApprovalDecision::AllowAlways
    } else if ["allow", "yes", "approve", "y", "true"]
        .iter()
        .any(|p| a == *p || a.starts_with(&format!("{p} ")))
    {
        ApprovalDecision::Allow
    } else {
        ApprovalDecision::Deny {
            reason: Some(format!("the approval system answered {answer:?}")),
        }
    }
}

/// A display system with Amplifier's method
/// `show_message(message, level, source)`; an async one is scheduled on
/// its loop.
pub struct PyDisplay(pub Callable);

impl DisplaySystem for PyDisplay {
    fn show_message(&self, message: &str, level: DisplayLevel, source: &str) {
        let level = match level {
            DisplayLevel::Info => "info",
            DisplayLevel::Warning => "warning",
            DisplayLevel::Error => "error",
        };
        Python::attach(|py| {
            let shown = self
                .0
                .object()
                .bind(py)
                .call_method1("show_message", (message, level, source));
            match shown {
                Ok(r) if r.hasattr("__await__").unwrap_or(false) => {
                    if let Some(locals) = &self.0.locals {
                        let scheduled = py.import("asyncio").and_then(|m| {
                            m.call_method1("run_coroutine_threadsafe", (r, locals.event_loop(py)))
                        });
                        if let Err(e) = scheduled {
                            e.print(py);
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => e.print(py),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approval_answers_map_to_decisions() {
        assert_eq!(decision("Allow once"), ApprovalDecision::Allow);
        assert_eq!(decision("yes"), ApprovalDecision::Allow);
        assert_eq!(decision("Allow always"), ApprovalDecision::AllowAlways);
        assert!(!decision("Deny").is_allowed());
        assert!(!decision("yesterday").is_allowed());
    }
}
