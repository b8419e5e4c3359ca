"""Runs weft's awaitables from synchronous code (agentkernel's ``get``/``set``):
on one private asyncio loop in a daemon thread, so it also works while the
caller's own loop runs."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Awaitable, Callable, Optional

_loop: Optional[asyncio.AbstractEventLoop] = None
_lock = threading.Lock()


def _get_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="weft-sync", daemon=True).start()
            _loop = loop
        return _loop


def run(make: Callable[[], Awaitable[Any]]) -> Any:
    """Calls ``make()`` on the private loop and waits for its result."""

    async def call() -> Any:
        return await make()

    return asyncio.run_coroutine_threadsafe(call(), _get_loop()).result()
