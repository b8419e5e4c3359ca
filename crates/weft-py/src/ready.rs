//! Awaitables that skip the trip through tokio when they can: a future
//! polled once on the calling thread that is already done (a hook emit
//! whose handlers are all synchronous) becomes a [`Ready`] awaitable;
//! otherwise it is handed to the runtime as usual.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;

/// An awaitable whose result is already known: `await` returns it at once.
#[pyclass(name = "Ready", module = "weft._weft")]
pub struct Ready(Option<Py<PyAny>>);

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let value = self.0.take().unwrap_or_else(|| py.None());
        Err(PyStopIteration::new_err((value,)))
    }
}

/// `fut` polled once here (inside the runtime's context, with the GIL
/// held: only for futures that do no I/O of their own before their first
/// wait); done → a [`Ready`], else an awaitable running it on tokio.
pub fn inline_or_spawn<'py, F>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<Py<PyAny>>> + Send + 'static,
{
    let mut fut = Box::pin(fut);
    let polled = {
        let _guard = pyo3_async_runtimes::tokio::get_runtime().enter();
        let mut cx = Context::from_waker(Waker::noop());
        fut.as_mut().poll(&mut cx)
    };
    match polled {
        Poll::Ready(value) => Ok(Bound::new(py, Ready(Some(value?)))?.into_any()),
        // Polled again by the task with a real waker: nothing is lost.
        Poll::Pending => pyo3_async_runtimes::tokio::future_into_py(py, fut),
    }
}
