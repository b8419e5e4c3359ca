"""weft.lionagi: what LionAGI's own tests check for Session and Branch, on weft."""

import pytest

import weft
from conftest import run, scripted_plan
from weft.lionagi import Session

COLUMNS = ["created_at", "role", "content", "id", "sender", "recipient", "branch", "metadata"]


def roles(messages):
    return [m["role"] for m in messages]


def test_new_branch_and_default(store):
    s = Session(plan=scripted_plan([]), store=store)
    start = len(s.branches)
    b = s.new_branch(system="You research.", name="research", messages=[{"role": "user", "content": "hello"}])
    assert b.name == "research" and b in s.branches
    assert len(s.branches) == start + 1
    assert s.get_branch("research") == b and s.get_branch(b.id) == b
    assert [m for m in b.messages if m["role"] == "user"][0]["metadata"].get("loaded") is True
    s.change_default_branch(b)
    assert s.default_branch == b


def test_split_keeps_count_sets_clone_metadata_and_one_system_message(store):
    s = Session(plan=scripted_plan([]), store=store)
    src = s.new_branch(
        system="Be brief.",
        name="src",
        messages=[{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}],
    )
    clone = s.split(src)
    assert clone.name != src.name and clone.id != src.id
    assert len(clone.messages) == len(src.messages)
    assert roles(clone.messages).count("system") == roles(src.messages).count("system") <= 1
    originals = {m["id"] for m in src.messages}
    for m in clone.messages:
        if m["role"] != "system":
            assert m["metadata"]["clone_from"] in originals
            assert m["id"] not in originals

    async def asplit():
        return await s.asplit(src, name="async-copy")

    assert run(asplit()).name == "async-copy"


def test_concat_messages_filters(store):
    s = Session(plan=scripted_plan([]), store=store)
    a = s.new_branch(name="a", messages=["loaded one"])
    b = s.split(a, name="b")
    everything = s.concat_messages()
    assert len(everything) >= 2
    assert all("clone_from" not in m.get("metadata", {}) for m in s.concat_messages(exclude_clone=True))
    assert all(not m.get("metadata", {}).get("loaded") for m in s.concat_messages(exclude_load=True))
    only_a = s.concat_messages(branches=[a])
    assert only_a and all(m["branch"] == a.id for m in only_a)
    assert s.concat_messages(branches=[b], exclude_clone=True) == []


def test_remove_branch_picks_a_new_default(store):
    s = Session(plan=scripted_plan([]), store=store)
    x = s.new_branch(name="x")
    s.change_default_branch(x)
    s.remove_branch(x)
    assert x not in s.branches
    assert s.default_branch != x and s.default_branch in s.branches
    with pytest.raises(weft.WeftError):
        s.get_branch("x")


def test_to_df_rows_and_columns(store):
    s = Session(plan=scripted_plan([]), store=store)
    s.new_branch(name="t", messages=[{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"}])
    rows = s.to_rows(branches=["t"])
    df = s.to_df(branches=["t"])
    assert list(df.columns) == COLUMNS
    assert len(df) == len(rows) == 2
    assert list(df["content"]) == ["one", "two"]
    assert list(df["role"]) == ["user", "assistant"]


def test_to_df_without_pandas_names_it(store, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_pandas(name, *a, **k):
        if name == "pandas":
            raise ImportError("no pandas")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    s = Session(plan=scripted_plan([]), store=store)
    with pytest.raises(ImportError, match="pip install pandas"):
        s.to_df()


def test_mail_send_and_collect(store):
    s = Session(plan=scripted_plan([]), store=store)
    a = s.new_branch(name="sender")
    b = s.new_branch(name="receiver")
    a.send(b, package="a note for b")
    s.send(to_=b)
    before = len(b.messages)
    assert s.collect(from_=a) == 1
    after = b.messages
    assert len(after) == before + 1
    assert "a note for b" in str(after[-1]["content"])
    assert s.collect_all() == 0


def test_communicate_calls_a_python_tool(store):
    calls = []

    def multiply(a: int, b: int) -> int:
        """Multiplies two integers.

        Args:
            a: the first factor
            b: the second factor
        """
        calls.append((a, b))
        return a * b

    name, desc, schema, _ = weft.tool_spec(multiply)
    assert name == "multiply" and desc == "Multiplies two integers."
    assert schema["properties"]["a"] == {"type": "integer", "description": "the first factor"}
    assert schema["required"] == ["a", "b"]

    plan = scripted_plan(
        [{"tool_calls": [{"name": "multiply", "arguments": {"a": 6, "b": 7}}]}, "The answer is 42."]
    )

    async def main():
        s = Session(plan=plan, store=store, tools=[multiply])
        b = s.default_branch
        assert await b.communicate("What is 6 times 7?") == "The answer is 42."
        tool_results = [m for m in b.messages if m["role"] == "tool"]
        assert tool_results and "42" in str(tool_results[0]["content"])

    run(main())
    assert calls == [(6, 7)]


def test_async_python_tool(store):
    async def shout(text: str) -> str:
        """Upper-cases text."""
        return text.upper()

    plan = scripted_plan([{"tool_calls": [{"name": "shout", "arguments": {"text": "hey"}}]}, "ok"])

    async def main():
        s = Session(plan=plan, store=store, tools=[shout])
        assert await s.default_branch.communicate("go") == "ok"
        tool_results = [m for m in s.default_branch.messages if m["role"] == "tool"]
        assert "HEY" in str(tool_results[0]["content"])

    run(main())
