"""The core API: stores, sessions, turns, state, errors."""

import pytest

import weft
from conftest import run, scripted_plan


def test_execute_runs_a_turn_and_the_store_lists_it(store):
    async def main():
        s = weft.Session(store, scripted_plan(["hello from the script"]))
        sid = await s.initialize()
        assert s.id == sid and s.initialized
        assert await s.execute("hi") == "hello from the script"
        await s.cleanup()
        listed = await store.list()
        assert [m["id"] for m in listed] == [sid]
        meta = await store.get(sid)
        assert meta["id"] == sid

    run(main())


def test_unknown_session_is_not_found_with_the_library_message(store):
    async def main():
        with pytest.raises(weft.NotFoundError, match="weft session list"):
            await store.get("0195f2a0-0000-7000-8000-000000000000")

    run(main())


def test_bad_input_is_invalid_and_changes_nothing(store):
    with pytest.raises(weft.InvalidError):
        weft.Store(kind="floppy")
    with pytest.raises(weft.InvalidError):
        weft.Session(store, scripted_plan(["x"]), session_id="no spaces allowed")
    with pytest.raises(ValueError, match="mount plan"):
        weft.Session(store, {"session": 3})
    with pytest.raises(weft.InvalidError, match="profile"):
        weft.Session(store, "no-such-profile")
    run(_empty(store))


async def _empty(store):
    assert await store.list() == []


def test_methods_before_initialize_raise_not_initialized(store):
    s = weft.Session(store, scripted_plan(["x"]))
    with pytest.raises(weft.NotInitializedError, match="initialize"):
        s.execute("hi")


def test_state_survives_a_new_store_and_session_object(home):
    async def write():
        s = weft.Session(weft.Store(home=home), scripted_plan([]), session_id="state-test-1")
        await s.initialize()
        await s.state_set("answer", {"n": 42})
        await s.state_set("temp:scratch", 1)
        assert await s.state_get("temp:scratch") == 1

    async def read():
        s = weft.Session(weft.Store(home=home), None, session_id="state-test-1")
        await s.initialize()
        assert await s.state_get("answer") == {"n": 42}
        assert await s.state_get("temp:scratch") is None

    run(write())
    run(read())


def test_store_never_shows_the_url_password():
    try:
        s = weft.Store(kind="postgres", url="postgres://u:hunter2@127.0.0.1:1/db")
    except weft.WeftError as e:
        assert "hunter2" not in str(e)
    else:
        assert "hunter2" not in repr(s)


def test_memory_store_and_delete(home):
    async def main():
        store = weft.Store(kind="memory")
        s = weft.Session(store, scripted_plan(["a"]))
        sid = await s.initialize()
        await s.cleanup()
        assert await store.delete(sid) == [sid]
        assert await store.list() == []

    run(main())


def test_a_module_that_cannot_start_is_a_warning(store):
    async def main():
        s = weft.Session(store, scripted_plan([{"bogus": 1}]))
        with pytest.warns(UserWarning, match="provider-scripted"):
            await s.initialize()
        with pytest.raises(weft.ProviderError, match="no provider"):
            await s.execute("hi")

    run(main())


def test_stream_yields_events_and_the_answer(store):
    async def main():
        s = weft.Session(store, scripted_plan(["streamed answer"]))
        await s.initialize()
        stream = await s.stream("hi")
        names = []
        async for item in stream:
            if item["type"] == "event":
                names.append(item["event"])
        assert await stream.answer() == "streamed answer"
        assert "prompt:submit" in names and names[-1] == "execution:end"
        assert any(n == "content_block:delta" for n in names)

    run(main())


def test_cancel_stops_a_slow_turn(store):
    async def main():
        s = weft.Session(store, scripted_plan([{"text": "never", "delay_ms": 60000}]))
        await s.initialize()
        stream = await s.stream("wait")
        stream.cancel(immediate=True)
        with pytest.raises(weft.CancelledError):
            await stream.answer()

    run(main())


def test_fork_copies_the_session(store):
    async def main():
        s = weft.Session(store, scripted_plan(["one", "two"]))
        sid = await s.initialize()
        await s.execute("first")
        await s.execute("second")
        await s.cleanup()
        forked = await store.fork(sid, turn=1, name="after-one")
        assert forked["id"] != sid and forked["name"] == "after-one"
        assert forked["forked_from"]["session_id"] == sid

    run(main())
