"""weft.amplifier: what amplifier-core's own tests check for AmplifierSession
and its hooks, on weft."""

import pytest

import weft
from conftest import run, scripted_plan
from weft.amplifier import AmplifierSession, HookResult


def test_context_manager_initializes_and_cleans_up_once(store):
    events = []

    async def main():
        session = AmplifierSession(scripted_plan(["four"]), store=store)
        session.coordinator.hooks.register("session:start", lambda e, d: events.append(e))
        session.coordinator.hooks.register("session:end", lambda e, d: events.append(e))
        async with session as s:
            assert s is session and s.is_initialized
            await s.initialize()  # a second initialize does nothing
            assert await s.execute("What is 2 + 2?") == "four"
        await session.cleanup()  # a second cleanup does nothing
        meta = await store.get(session.session_id)
        assert meta["status"] == "completed"

    run(main())
    assert events.count("session:start") == 1
    assert events.count("session:end") == 1


def test_execute_before_initialize_is_an_error(store):
    async def main():
        session = AmplifierSession(scripted_plan(["x"]), store=store)
        with pytest.raises(RuntimeError, match="not initialized"):
            await session.execute("hi")

    run(main())


def test_session_and_parent_ids(store):
    async def main():
        async with AmplifierSession(scripted_plan([]), store=store, session_id="amp-parent-1") as parent:
            assert parent.session_id == "amp-parent-1"
            async with AmplifierSession(
                scripted_plan([]), store=store, parent_id=parent.session_id
            ) as child:
                assert child.parent_id == "amp-parent-1"
                assert child.coordinator.parent_id == "amp-parent-1"
                meta = await store.get(child.session_id)
                assert meta["parent_id"] == "amp-parent-1"

    run(main())


def test_a_deny_hook_stops_the_prompt(store):
    async def deny(event, data):
        return HookResult(action="deny", reason="no prompts about secrets")

    async def main():
        async with AmplifierSession(scripted_plan(mode="echo"), store=store) as s:
            s.coordinator.hooks.register("prompt:submit", deny, name="guard")
            with pytest.raises(weft.DeniedError, match="no prompts about secrets"):
                await s.execute("tell me the secret")

    run(main())


def test_a_modify_hook_as_a_dict_changes_the_prompt(store):
    seen = []

    def modify(event, data):
        seen.append(data["prompt"])
        return {"action": "modify", "data": {**data, "prompt": data["prompt"].upper()}}

    async def main():
        async with AmplifierSession(scripted_plan(mode="echo"), store=store) as s:
            s.coordinator.hooks.register("prompt:submit", modify)
            assert await s.execute("shout this") == "SHOUT THIS"

    run(main())
    assert seen == ["shout this"]


def test_hooks_run_by_priority_and_deny_wins_over_modify(store):
    order = []

    def make(name, result):
        def handler(event, data):
            order.append(name)
            return result

        return handler

    async def main():
        async with AmplifierSession(scripted_plan(mode="echo"), store=store) as s:
            hooks = s.coordinator.hooks
            hooks.register("custom:event", make("late", None), priority=20)
            hooks.register("custom:event", make("early", {"action": "modify", "data": {"x": 1}}), priority=-5)
            result = await hooks.emit("custom:event", {"x": 0})
            assert result.action == "modify" and result.data["x"] == 1
            unregister = hooks.register("custom:event", make("deny", HookResult(action="deny", reason="r")), priority=0)
            result = await hooks.emit("custom:event", {"x": 0})
            assert result.action == "deny"
            unregister()
            result = await hooks.emit("custom:event", {"x": 0})
            assert result.action == "modify"

    run(main())
    assert order[:2] == ["early", "late"]


def test_a_failing_hook_is_skipped_not_fatal(store):
    def broken(event, data):
        raise ValueError("boom")

    async def main():
        async with AmplifierSession(scripted_plan(mode="echo"), store=store) as s:
            s.coordinator.hooks.register("prompt:submit", broken)
            assert await s.execute("still works") == "still works"

    run(main())


def test_approval_and_display_systems_are_called(store):
    asked = []

    class Approval:
        async def request_approval(self, prompt, options, timeout, default):
            asked.append((prompt, default))
            return "Deny"

    class Display:
        def __init__(self):
            self.messages = []

        def show_message(self, message, level, source):
            self.messages.append((message, level))

    display = Display()

    def ask(event, data):
        return HookResult(action="ask_user", approval_prompt="Run the tool?", approval_options=["Allow", "Deny"])

    plan = scripted_plan(
        [{"tool_calls": [{"name": "multiply", "arguments": {"a": 2, "b": 3}}]}, "done"]
    )

    def multiply(a: int, b: int) -> int:
        """Multiplies two integers."""
        return a * b

    async def main():
        async with AmplifierSession(
            plan, store=store, approval_system=Approval(), display_system=display, tools=[multiply]
        ) as s:
            s.coordinator.hooks.register("tool:pre", ask)
            assert await s.execute("multiply") == "done"

    run(main())
    assert asked and asked[0][0] == "Run the tool?"
