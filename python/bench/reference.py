"""The reference for ``bench.py``'s ``hook_emit``: amplifier-core's own
``HookRegistry.emit`` with 1 and 5 no-op handlers, measured the same way
(same event, same data, same warm-up), printed as JSON lines.

Run it in a venv holding amplifier-core from PyPI, not weft (the pinned
version is the one the issue names)::

    python3 -m venv target/amp-venv
    target/amp-venv/bin/pip install amplifier-core==2.0.2
    target/amp-venv/bin/python python/bench/reference.py --emits 5000

Two handler shapes: ``sync`` (a plain lambda, as ``bench.py`` registers on
weft) and ``async`` (Amplifier's documented contract: ``async def
handler(event, data) -> HookResult``).
"""

import argparse
import asyncio
import json
import time

from amplifier_core.hooks import HookRegistry
from amplifier_core.models import HookResult


def handler_for(shape: str):
    if shape == "sync":
        return lambda event, data: None

    async def noop(event, data):
        return HookResult(action="continue")

    return noop


async def bench_emit(shape: str, handlers: int, emits: int) -> dict:
    registry = HookRegistry()
    for i in range(handlers):
        registry.register("bench:event", handler_for(shape), name=f"noop-{i}")
    data = {"tool_name": "bench", "tool_input": {"n": 1}}
    for _ in range(min(200, emits)):
        await registry.emit("bench:event", data)
    start = time.perf_counter()
    for _ in range(emits):
        await registry.emit("bench:event", data)
    elapsed = time.perf_counter() - start
    return {"bench": "amplifier_core_hook_emit", "handler": shape, "handlers": handlers,
            "emits": emits, "seconds": round(elapsed, 4),
            "emits_per_s": round(emits / elapsed, 1)}


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--emits", type=int, default=20000)
    args = p.parse_args()
    for shape in ("sync", "async"):
        for n in (1, 5):
            print(json.dumps(await bench_emit(shape, n, args.emits)), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
