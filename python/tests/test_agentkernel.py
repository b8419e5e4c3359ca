"""weft.agentkernel: keyed state with set/get/delete/clear across a restart."""

import os
import subprocess
import sys
import textwrap

import pytest

import weft
from weft.agentkernel import Session, store_from_env


def test_set_get_delete_clear(home):
    s = Session(id="user-123-conversation-1", store=weft.Store(home=home))
    s.set("langgraph_state", {"step": 3})
    s.set("crewai_context", ["a", "b"])
    s.set("scratch", 1, volatile=True)
    assert s.get("langgraph_state") == {"step": 3}
    assert s.get("scratch") == 1
    assert s.get("missing", "dflt") == "dflt"
    s.delete("crewai_context")
    assert s.get("crewai_context") is None
    s.clear()
    assert s.get("langgraph_state") is None


def _child(code: str, env: dict) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_durable_keys_survive_a_restart_and_clear_sticks(home):
    env = {**os.environ, "AK_SESSION__TYPE": "fs", "WEFT_HOME": str(home)}
    _child(
        """
        from weft.agentkernel import Session
        s = Session(id="restart-1")
        s.set("durable", {"v": 1})
        s.set("volatile", 2, volatile=True)
        """,
        env,
    )
    got = _child(
        """
        from weft.agentkernel import Session
        s = Session(id="restart-1")
        print(s.get("durable"), s.get("volatile"))
        s.clear()
        """,
        env,
    )
    assert got == "{'v': 1} None"
    got = _child(
        """
        from weft.agentkernel import Session
        print(Session(id="restart-1").get("durable"))
        """,
        env,
    )
    assert got == "None"


def test_in_memory_is_the_default_store(monkeypatch):
    monkeypatch.delenv("AK_SESSION__TYPE", raising=False)
    assert store_from_env().kind == "memory"
    monkeypatch.setenv("AK_SESSION__TYPE", "redis")
    monkeypatch.delenv("AK_SESSION__REDIS__URL", raising=False)
    with pytest.raises(weft.InvalidError, match="AK_SESSION__REDIS__URL"):
        store_from_env()
