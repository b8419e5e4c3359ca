"""agentkernel's ``Session`` on weft: keyed state for several agents and
frameworks, in a store chosen by agentkernel's variables.

    from weft.agentkernel import Session

    session = Session(id="user-123-conversation-1")
    session.set("langgraph_state", {"step": 3})
    session.get("langgraph_state")

``AK_SESSION__TYPE`` chooses the store: ``in_memory`` (default, as
agentkernel: nothing survives the process), ``redis``
(``AK_SESSION__REDIS__URL``, agentkernel's 7-day TTL unless the URL gives
``ttl=``), ``dynamodb`` (``AK_SESSION__DYNAMODB__TABLE_NAME``), or weft's
own ``fs``/``sqlite``/``postgres``. Keys are durable unless set with
``volatile=True`` (weft's ``temp:`` scope: gone when the process ends).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

from . import _weft

__all__ = ["Session", "store_from_env"]

#: agentkernel's default session TTL on Redis, in seconds (7 days).
AGENTKERNEL_REDIS_TTL = 7 * 24 * 3600
#: agentkernel's default DynamoDB table.
AK_DYNAMODB_TABLE = "agent-kernel-sessions"
_VOLATILE = "temp:"


def _env(name: str) -> Optional[str]:
    value = os.environ.get(name, "").strip()
    return value or None


def store_from_env() -> "_weft.Store":
    """The store ``AK_SESSION__*`` chooses (see the module doc)."""
    kind = _env("AK_SESSION__TYPE") or "in_memory"
    kind = "memory" if kind == "in_memory" else kind
    url = _env("AK_SESSION__REDIS__URL")
    if kind == "redis":
        if url is None:
            raise _weft.InvalidError("AK_SESSION__TYPE=redis needs AK_SESSION__REDIS__URL: set it to redis://host:port")
        query = url.split("?", 1)[1] if "?" in url else ""
        if not any(p == "ttl" or p.startswith("ttl=") for p in query.split("&")):
            url += ("&" if "?" in url else "?") + f"ttl={AGENTKERNEL_REDIS_TTL}"
    elif kind == "dynamodb":
        url = f"dynamodb:///{_env('AK_SESSION__DYNAMODB__TABLE_NAME') or AK_DYNAMODB_TABLE}"
    return _weft.Store(kind=kind, url=url)


_default_store: Optional["_weft.Store"] = None


def _store() -> "_weft.Store":
    global _default_store
    if _default_store is None:
        _default_store = store_from_env()
    return _default_store


class Session:
    """A session with keyed state: ``Session(id=...)`` resumes the stored
    session with that id or creates it.

    ``set``/``get``/``delete``/``clear`` are synchronous (as agentkernel's)
    and durable when they return, except volatile keys."""

    def __init__(self, id: str, *, store: Optional["_weft.Store"] = None, plan: Any = None) -> None:
        self.store = store if store is not None else _store()
        self._native = _weft.Session(self.store, plan, session_id=id)
        self._b = self._native.blocking()
        self._b.initialize()

    @property
    def id(self) -> str:
        """The session id."""
        return self._native.id

    @property
    def native(self) -> "_weft.Session":
        """The underlying ``weft.Session`` (turns, branches, hooks)."""
        return self._native

    def set(self, key: str, value: Any, volatile: bool = False) -> None:
        """Stores ``value`` (JSON) under ``key``; ``volatile`` keeps it in
        this process only."""
        full = _VOLATILE + key if volatile else key
        self._b.state_set(full, value)

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` (a volatile one first), else ``default``."""
        value = self._b.state_get(_VOLATILE + key)
        if value is None:
            value = self._b.state_get(key)
        return default if value is None else value

    def delete(self, key: str) -> None:
        """Removes ``key`` (volatile and durable)."""
        self._b.state_delete(_VOLATILE + key)
        self._b.state_delete(key)

    def clear(self) -> None:
        """Removes every key of the session."""
        self._b.state_clear()

    def items(self) -> Dict[str, Any]:
        """Every key and value the session sees."""
        return self._b.state_all()

    def __repr__(self) -> str:
        return f"Session(id={self.id!r})"
