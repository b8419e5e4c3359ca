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


def test_python_session_is_visible_through_weft_serve(store, weft_bin, home, tmp_path):
    import socket
    import time
    import urllib.request

    async def write():
        s = weft.Session(store, scripted_plan(["served"]))
        sid = await s.initialize()
        await s.execute("hi")
        await s.cleanup()
        return sid

    sid = run(write())
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
        body = urllib.request.urlopen(f"{base}/api/v1/sessions/{sid}", timeout=10).read().decode()
        assert sid in body
        listed = urllib.request.urlopen(base + "/api/v1/sessions", timeout=10).read().decode()
        assert sid in listed
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        log.close()
