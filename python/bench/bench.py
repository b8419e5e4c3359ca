"""weft for Python benchmarks, printed as JSON lines.

- ``amplifier_execute``: ``AmplifierSession.execute`` turns/s with the
  scripted provider (echo mode, zero delay);
- ``hook_emit``: ``coordinator.hooks.emit`` emits/s with 1 and 5 no-op
  Python handlers (amplifier-core 2.0.2 on the same machine: 1,315/s and
  518/s; weft's target is 10x those).

Usage: python bench/bench.py [--turns N] [--emits N] [--store memory|fs|sqlite]
(build the extension with ``WEFT_PY_RELEASE=1 scripts/python-test`` first;
``reference.py`` measures amplifier-core itself in the same run).
"""

import argparse
import asyncio
import json
import tempfile
import time

import weft
from weft.amplifier import AmplifierSession

PLAN = {
    "session": {"orchestrator": {"module": "loop-basic"}, "context": {"module": "context-simple"}},
    "providers": [{"module": "provider-scripted", "config": {"mode": "echo"}}],
}


def store_for(kind: str, home: str) -> "weft.Store":
    return weft.Store(kind=kind, home=home)


async def bench_execute(store, turns: int) -> dict:
    async with AmplifierSession(PLAN, store=store) as s:
        for _ in range(min(20, turns)):
            await s.execute("warm up")
        start = time.perf_counter()
        for i in range(turns):
            await s.execute(f"prompt {i}")
        elapsed = time.perf_counter() - start
    return {"bench": "amplifier_execute", "store": store.kind, "turns": turns,
            "seconds": round(elapsed, 4), "turns_per_s": round(turns / elapsed, 1)}


async def bench_emit(store, handlers: int, emits: int) -> dict:
    async with AmplifierSession(PLAN, store=store) as s:
        for i in range(handlers):
            s.coordinator.hooks.register("bench:event", lambda event, data: None, name=f"noop-{i}")
        data = {"tool_name": "bench", "tool_input": {"n": 1}}
        for _ in range(min(200, emits)):
            await s.coordinator.hooks.emit("bench:event", data)
        start = time.perf_counter()
        for _ in range(emits):
            await s.coordinator.hooks.emit("bench:event", data)
        elapsed = time.perf_counter() - start
    return {"bench": "hook_emit", "handlers": handlers, "emits": emits,
            "seconds": round(elapsed, 4), "emits_per_s": round(emits / elapsed, 1)}


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--turns", type=int, default=2000)
    p.add_argument("--emits", type=int, default=20000)
    p.add_argument("--store", default="memory", choices=["memory", "fs", "sqlite"])
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as home:
        store = store_for(args.store, home)
        print(json.dumps(await bench_execute(store, args.turns)), flush=True)
        for n in (1, 5):
            print(json.dumps(await bench_emit(store, n, args.emits)), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
