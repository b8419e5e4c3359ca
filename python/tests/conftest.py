"""Shared fixtures: an isolated weft home, scripted mount plans, the CLI."""

import asyncio
import os
import pathlib
from typing import Any, Dict, List, Optional

import pytest

import weft


def scripted_plan(responses: Optional[List[Any]] = None, mode: Optional[str] = None) -> Dict[str, Any]:
    """A mount plan with the scripted provider (inline responses or a mode)."""
    config: Dict[str, Any] = {}
    if responses is not None:
        config["responses"] = [{"text": r} if isinstance(r, str) else r for r in responses]
    if mode is not None:
        config["mode"] = mode
    return {
        "session": {"orchestrator": {"module": "loop-basic"}, "context": {"module": "context-simple"}},
        "providers": [{"module": "provider-scripted", "config": config}],
    }


@pytest.fixture
def home(tmp_path, monkeypatch) -> pathlib.Path:
    """A fresh weft home, also for the `weft` binary (WEFT_HOME)."""
    h = tmp_path / "weft-home"
    h.mkdir()
    monkeypatch.setenv("WEFT_HOME", str(h))
    monkeypatch.chdir(tmp_path)
    return h


@pytest.fixture
def store(home) -> "weft.Store":
    """The fs store under the fresh home."""
    return weft.Store(home=home)


@pytest.fixture
def weft_bin() -> str:
    """The `weft` binary scripts/python-test built (WEFT_BIN)."""
    path = os.environ.get("WEFT_BIN")
    if not path or not os.access(path, os.X_OK):
        pytest.fail("WEFT_BIN must name the built weft binary: run the suite through scripts/python-test")
    return path


def run(coro):
    """Runs a coroutine on a fresh loop (tests stay synchronous)."""
    return asyncio.run(coro)
