"""Interop with the `weft` binary: a session written from Python is listed
and resumed by the CLI and served by `weft serve`; one the CLI or the daemon
wrote is listed and resumed from Python."""

import contextlib
import json
import socket
import subprocess
import time
import urllib.request

import weft
from conftest import run, scripted_plan


def cli(weft_bin, *args):
    out = subprocess.run([weft_bin, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"weft {' '.join(args)} failed: {out.stderr}"
    return out.stdout


async def resume(store, sid, prompt):
    """Resumes session `sid` from Python with the echo-context model and
    runs `prompt`; the answer (every user message so far, joined)."""
    s = weft.Session(store, scripted_plan(mode="echo-context"), session_id=sid)
    assert await s.initialize() == sid
    answer = await s.execute(prompt)
    await s.cleanup()
    return answer


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

    assert run(resume(store, sid, "second")) == "first | second"

    async def listed():
        return [m["id"] for m in await store.list()]

    assert run(listed()) == [sid]


@contextlib.contextmanager
def serve(weft_bin, tmp_path):
    """`weft serve` on a free loopback port (the test's WEFT_HOME); yields
    its base URL and stops it after."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(tmp_path / "serve.log", "w")
    daemon = subprocess.Popen([weft_bin, "serve", "--port", str(port)], stdout=log, stderr=log)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/health", timeout=2).read()
                break
            except OSError:
                assert daemon.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, "weft serve did not answer /health within 30 s"
                time.sleep(0.1)
        yield base
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        log.close()


def call(base, method, path, body=None):
    """One JSON call to the daemon's API; its decoded answer."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + "/api/v1" + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as res:
        return json.loads(res.read().decode() or "null")


def test_python_session_is_visible_through_weft_serve(store, weft_bin, home, tmp_path):
    async def write():
        s = weft.Session(store, scripted_plan(["served"]))
        sid = await s.initialize()
        await s.execute("hi")
        await s.cleanup()
        return sid

    sid = run(write())
    with serve(weft_bin, tmp_path) as base:
        assert call(base, "GET", f"/sessions/{sid}")["sessionId"] == sid
        assert sid in [m["sessionId"] for m in call(base, "GET", "/sessions/")]


def test_daemon_session_is_listed_and_resumed_from_python(store, weft_bin, home, tmp_path):
    with serve(weft_bin, tmp_path) as base:
        sid = call(base, "POST", "/sessions/", {"name": "from-the-daemon"})["sessionId"]
        call(base, "POST", f"/sessions/{sid}/start")
        call(base, "POST", f"/sessions/{sid}/messages", {"content": "written by the daemon"})

        # Read from Python while the daemon still serves the same store.
        async def listed():
            return {m["id"]: m for m in await store.list()}

        sessions = run(listed())
        assert sessions[sid]["name"] == "from-the-daemon"

        assert run(resume(store, sid, "then from python")) == "written by the daemon | then from python"
        # The daemon sees what Python appended.
        transcript = call(base, "GET", f"/sessions/{sid}/transcript")
        texts = json.dumps(transcript)
        assert "then from python" in texts
