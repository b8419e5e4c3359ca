"""Amplifier's kernel API on weft: ``AmplifierSession``, its coordinator and
hook registry, ``HookResult``.

    from weft.amplifier import AmplifierSession, HookResult

    async with AmplifierSession(config=mount_plan) as session:
        session.coordinator.hooks.register("tool:pre", handler, priority=10)
        answer = await session.execute("Hello")

Python hook handlers (sync or async) receive ``(event, data)`` and return a
``HookResult``, a dict with its fields, or ``None`` (continue); the Rust
hook registry applies them with its normal precedence. Sessions are stored
in ``store`` (default: ``weft.Store()``, the fs store under ``$WEFT_HOME``
or ``~/.weft``), so the ``weft`` CLI lists and resumes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from . import _weft
from .tools import tool_spec

__all__ = ["AmplifierSession", "HookResult", "HookRegistry", "ModuleCoordinator"]


@dataclass
class HookResult:
    """What a hook handler decides (Amplifier's ``HookResult``).

    ``action`` is ``continue``, ``deny``, ``modify``, ``inject_context`` or
    ``ask_user``."""

    action: str = "continue"
    data: Optional[Dict[str, Any]] = None
    reason: Optional[str] = None
    context_injection: Optional[str] = None
    context_injection_role: str = "system"
    ephemeral: bool = False
    approval_prompt: Optional[str] = None
    approval_options: Optional[List[str]] = None
    approval_timeout: float = 300.0
    approval_default: str = "deny"
    suppress_output: bool = False
    user_message: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        """The fields weft's hook registry reads."""
        out: Dict[str, Any] = {
            "action": self.action,
            "context_injection_role": self.context_injection_role,
            "ephemeral": self.ephemeral,
            "approval_timeout_secs": self.approval_timeout,
            "approval_default": self.approval_default,
        }
        for name in ("data", "reason", "context_injection", "approval_prompt", "user_message"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.approval_options:
            out["approval_options"] = list(self.approval_options)
        return out

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "HookResult":
        """A result from weft's combined dict."""
        return cls(
            action=d.get("action", "continue"),
            data=d.get("data"),
            reason=d.get("reason"),
            context_injection=d.get("context_injection"),
            context_injection_role=d.get("context_injection_role", "system"),
            ephemeral=bool(d.get("ephemeral", False)),
            approval_prompt=d.get("approval_prompt"),
            approval_options=d.get("approval_options") or None,
            approval_timeout=float(d.get("approval_timeout_secs") or 300.0),
            approval_default=d.get("approval_default", "deny"),
            user_message=d.get("user_message"),
        )


class HookRegistry:
    """``coordinator.hooks``: registers Python handlers with the session's
    Rust hook registry (before or after ``initialize()``)."""

    def __init__(self, session: "_weft.Session") -> None:
        self._session = session

    def register(
        self,
        event: str,
        handler: Callable[..., Any],
        priority: int = 0,
        name: Optional[str] = None,
    ) -> "_weft.HookHandle":
        """Registers ``handler(event, data)`` for ``event``; lower priorities
        run first. Returns the unregister function (a ``HookHandle``)."""
        return self._session.register_hook(event, handler, priority, name)

    on = register

    async def emit(self, event: str, data: Optional[Dict[str, Any]] = None) -> HookResult:
        """Runs the handlers of ``event``; the combined result."""
        return HookResult.from_dict(await self._session.emit(event, data or {}))

    def list_handlers(self, event: Optional[str] = None) -> Dict[str, List[str]]:
        """Handler names for ``event`` (or ``*``)."""
        key = event or "*"
        return {key: self._session.handler_names(key)}


class ModuleCoordinator:
    """``session.coordinator``: the session's hooks, ids, config and the
    approval and display systems."""

    def __init__(self, owner: "AmplifierSession") -> None:
        self._owner = owner
        self.hooks = HookRegistry(owner._native)
        self.config = owner.config
        self.approval_system = owner.approval_system
        self.display_system = owner.display_system

    @property
    def session_id(self) -> Optional[str]:
        """The session id."""
        return self._owner.session_id

    @property
    def parent_id(self) -> Optional[str]:
        """The parent session id."""
        return self._owner.parent_id


class AmplifierSession:
    """Amplifier's ``AmplifierSession`` on weft (an async context manager).

    ``config`` is the mount plan (a dict); ``loader`` is accepted for
    signature compatibility and unused (weft's modules are built in);
    ``tools`` (weft's addition) is a list of Python functions the model may
    call; ``store`` a ``weft.Store`` (default ``weft.Store()``)."""

    def __init__(
        self,
        config: Dict[str, Any],
        loader: Any = None,
        session_id: Optional[str] = None,
        parent_id: Optional[str] = None,
        approval_system: Any = None,
        display_system: Any = None,
        *,
        store: Optional["_weft.Store"] = None,
        tools: Optional[List[Callable[..., Any]]] = None,
    ) -> None:
        if not isinstance(config, dict):
            raise TypeError("config must be a mount plan dict")
        self.config = config
        self.loader = loader
        self.approval_system = approval_system
        self.display_system = display_system
        self.store = store if store is not None else _weft.Store()
        self._native = _weft.Session(
            self.store,
            config,
            session_id=session_id,
            parent_id=parent_id,
            approval=approval_system,
            display=display_system,
            tools=[tool_spec(t) for t in (tools or [])],
        )
        self._initialized = False
        self._cleaned_up = False
        self.coordinator = ModuleCoordinator(self)

    @property
    def session_id(self) -> Optional[str]:
        """The session id (generated at ``initialize()`` when none was given)."""
        return self._native.id

    @property
    def parent_id(self) -> Optional[str]:
        """The parent session id, for a child session."""
        return self._native.parent_id

    @property
    def is_initialized(self) -> bool:
        """Whether ``initialize()`` has run."""
        return self._initialized

    async def initialize(self) -> None:
        """Mounts the plan's modules and creates (or resumes) the session;
        a second call does nothing."""
        if self._initialized:
            return
        await self._native.initialize()
        self._initialized = True

    async def execute(self, prompt: str) -> str:
        """Runs one turn; the answer text."""
        if not self._initialized:
            raise RuntimeError("the session is not initialized: call initialize() first")
        return await self._native.execute(prompt)

    async def cancel(self, immediate: bool = False) -> None:
        """Cancels the running turn."""
        if self._initialized:
            await self._native.cancel(immediate)

    async def cleanup(self) -> None:
        """Ends the session; a second call (or one before initialize) does nothing."""
        if not self._initialized or self._cleaned_up:
            return
        self._cleaned_up = True
        await self._native.cleanup()

    async def __aenter__(self) -> "AmplifierSession":
        await self.initialize()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.cleanup()

    def __repr__(self) -> str:
        return f"AmplifierSession(session_id={self.session_id!r})"
