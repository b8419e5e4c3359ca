//! [`PyTurnStream`] (`weft.TurnStream`): a running turn's records and
//! events as a Python async iterator, its answer and its cancellation.

use std::sync::Arc;

use pyo3::exceptions::PyStopAsyncIteration;
use pyo3::prelude::*;
use serde_json::json;
use weft_core::feed::FeedItem;
use weft_core::orchestrator::TurnCancel;
use weft_core::{CancelMode, TurnEvents, TurnHandle};

use crate::convert::to_py;
use crate::errors::{WeftError, invalid, session_err};

struct State {
    events: Option<TurnEvents>,
    handle: Option<TurnHandle>,
}

/// A running turn: `async for item in stream` yields
/// `{"type": "event", "event": name, "data": {...}}` and
/// `{"type": "record", "record": {...}}` dicts until the turn ends;
/// `await stream.answer()` gives the answer text; `cancel()` stops it.
#[pyclass(name = "TurnStream", module = "weft._weft", frozen)]
pub struct PyTurnStream {
    state: Arc<tokio::sync::Mutex<State>>,
    cancel: TurnCancel,
    turn: String,
    branch: String,
}

impl PyTurnStream {
    /// A stream over `handle`'s items.
    pub fn new(mut handle: TurnHandle) -> Self {
        let events = handle.events();
        Self {
            cancel: handle.canceller(),
            turn: handle.id().to_string(),
            branch: handle.branch().to_string(),
            state: Arc::new(tokio::sync::Mutex::new(State {
                events,
                handle: Some(handle),
            })),
        }
    }
}

fn item_value(item: &FeedItem) -> serde_json::Value {
    match item {
        FeedItem::Event(e) => json!({"type": "event", "event": e.name, "data": e.data}),
        FeedItem::Record(r) => json!({"type": "record", "record": r}),
    }
}

#[pymethods]
impl PyTurnStream {
    /// The turn id.
    #[getter]
    fn turn(&self) -> String {
        self.turn.clone()
    }

    /// The branch the turn runs on.
    #[getter]
    fn branch(&self) -> String {
        self.branch.clone()
    }

    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = self.state.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let mut state = state.lock().await;
            let next = match state.events.as_mut() {
                Some(events) => events.next().await,
                None => None,
            };
            match next {
                Some(Ok(item)) => Python::attach(|py| to_py(py, &item_value(&item))),
                Some(Err(e)) => Err(WeftError::new_err(e.to_string())),
                None => {
                    state.events = None;
                    Err(PyStopAsyncIteration::new_err(()))
                }
            }
        })
    }

    /// Waits for the answer text (awaitable; once).
    fn answer<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = self.state.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let handle = state
                .lock()
                .await
                .handle
                .take()
                .ok_or_else(|| invalid("the answer was already taken: call answer() once"))?;
            handle.result().await.map_err(session_err)
        })
    }

    /// Cancels the turn (`immediate`: abort the model call and running
    /// tools now; else stop after the running tools).
    #[pyo3(signature = (immediate = false))]
    fn cancel(&self, immediate: bool) {
        let mode = if immediate {
            CancelMode::Immediate
        } else {
            CancelMode::Graceful
        };
        self.cancel.request(mode);
    }
}
