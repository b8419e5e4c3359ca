"""weft for Python: weft's session kernel (a Rust library) as a native module.

- ``weft.Store`` opens a store (``fs`` under ``~/.weft`` by default,
  ``sqlite``, ``memory``, ``postgres``, ``redis``, ``dynamodb``);
- ``weft.Session`` is a live session opened from a mount plan (dict, plan
  file or profile name): ``await initialize()``, ``await execute(prompt)``,
  hooks, state, branches and mail;
- ``weft.amplifier``, ``weft.lionagi`` and ``weft.agentkernel`` give the
  APIs of Amplifier, LionAGI and agentkernel on top of it.

Errors are ``weft.WeftError`` subclasses carrying weft's one-sentence
messages.
"""

from ._weft import (
    CancelledError,
    ConflictError,
    DeniedError,
    HookHandle,
    InvalidError,
    NotFoundError,
    NotInitializedError,
    ProviderError,
    Session,
    Store,
    StoreError,
    TurnStream,
    WeftError,
    __version__,
)
from .tools import tool_spec

__all__ = [
    "CancelledError",
    "ConflictError",
    "DeniedError",
    "HookHandle",
    "InvalidError",
    "NotFoundError",
    "NotInitializedError",
    "ProviderError",
    "Session",
    "Store",
    "StoreError",
    "TurnStream",
    "WeftError",
    "__version__",
    "tool_spec",
]
