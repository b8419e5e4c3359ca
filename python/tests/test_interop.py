"""Interop with the `weft` CLI: a session written from Python is listed and
resumed by the binary, and one the binary wrote is resumed from Python."""

import json
import subprocess

import weft
from conftest import run, scripted_plan


def cli(weft_bin, *args):
    out = subprocess.run([weft_bin, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"weft {' '.join(args)} failed: {out.stderr}"
    return out.stdout


def test_python_session_is_listed_and_resumed_by_the_cli(store, weft_bin):
    async def write():
        s = weft.Session(store, scripted_plan(mode="echo-context"), name="from-python")
        sid = await s.initialize()
        assert await s.execute("hello") == "hello"
        await s.cleanup()
        return sid

    sid = run(write())
    listed = json.loads(cli(weft_bin, "session", "list", "--json"))
    assert sid in [m["id"] for m in listed]
    # The plan recorded with the session (it came from a dict) is used.
    out = json.loads(cli(weft_bin, "run", "--resume", sid, "--output", "json", "again"))
    assert out["session_id"] == sid
    assert out["answer"] == "hello | again"


def test_cli_session_is_resumed_from_python(store, weft_bin, tmp_path):
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"responses": [{"text": "from the cli"}]}))
    out = json.loads(cli(weft_bin, "run", "--script", str(script), "--output", "json", "first"))
    sid = out["session_id"]

    async def resume():
        s = weft.Session(store, scripted_plan(mode="echo-context"), session_id=sid)
        assert await s.initialize() == sid
        answer = await s.execute("second")
        await s.cleanup()
        return answer

    assert run(resume()) == "first | second"

    async def listed():
        return [m["id"] for m in await store.list()]

    assert run(listed()) == [sid]
