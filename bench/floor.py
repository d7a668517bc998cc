"""The floor of one task's round trip: DTF's message flow in plain nats-py, no DTF code.

A client's request reaches an "api" process, which appends the lease (an fsynced publish,
guarded as DTF guards a submission) and answers; a "worker" process gets the lease from a
JetStream consumer and sends its report (core NATS) to the api, which appends the verdict;
the client sees the verdict from a JetStream consumer. Requests and reports travel on
subjects outside the stream (``<prefix>-req.*``), as DTF's commands do: only the lease and
the verdict are stored. The same processes, hops and
fsyncs as a DTF task, with no checks, folds or projections: what DTF's p50 compares with.

    python bench/floor.py api|worker URL STREAM   (started by ``latency``)
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import StorageType, StreamConfig

from agents.nats.connect import connect

PAYLOAD = b"x" * 200  # about a noop lease's size
WARMUP = 100


async def _api(nc: Client, prefix: str) -> None:
    js = nc.jetstream()

    async def on_submit(msg: Msg) -> None:
        tid = msg.data.decode()
        await js.publish(f"{prefix}.{tid}.leased", PAYLOAD, headers={
            "Nats-Msg-Id": f"{tid}.submitted", "Nats-Expected-Last-Subject-Sequence": "0",
            "Nats-Expected-Last-Subject-Sequence-Subject": f"{prefix}.{tid}.>"})
        await nc.publish(msg.reply, b"ok")

    async def on_report(msg: Msg) -> None:
        tid = msg.data.decode()
        await js.publish(f"{prefix}.{tid}.succeeded", PAYLOAD,
                         headers={"Nats-Msg-Id": f"{tid}.succeeded"})

    await nc.subscribe(f"{prefix}-req.submit", cb=on_submit)
    await nc.subscribe(f"{prefix}-req.report", cb=on_report)


async def _worker(nc: Client, prefix: str) -> None:
    async def on_lease(msg: Msg) -> None:
        await nc.publish(f"{prefix}-req.report", msg.subject.split(".")[-2].encode())

    await nc.jetstream().subscribe(f"{prefix}.*.leased", cb=on_lease, ordered_consumer=True)


async def _serve(role: str, url: str, prefix: str) -> None:
    nc = await connect(url, f"floor-{role}", credential=os.environ.get("DTF_BENCH_TOKEN"))
    await (_api if role == "api" else _worker)(nc, prefix)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()


async def latency(nc: Client, url: str, samples: int, credential: str | None) -> list[float]:
    """ms from a request to its verdict seen by a consumer, one task at a time, on a
    stream of its own on ``nc``'s server (deleted afterwards)."""
    js = nc.jetstream()
    tag = uuid.uuid4().hex[:8]
    prefix, stream = f"bench.floor{tag}", f"BENCH_FLOOR_{tag}"
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{prefix}.>"],
                                     storage=StorageType.FILE, duplicate_window=120.0))
    env = {**os.environ, "DTF_BENCH_TOKEN": credential or ""}
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, __file__, role, url, prefix, env=env, stdout=asyncio.subprocess.PIPE)
        for role in ("api", "worker")]
    try:
        for p in procs:
            assert p.stdout is not None
            line = await asyncio.wait_for(p.stdout.readline(), 30)
            if line.strip() != b"ready":
                raise SystemExit(f"the floor's processes did not start: {line!r}")
        waiting: dict[str, asyncio.Event] = {}

        async def on_done(msg: Msg) -> None:
            done = waiting.pop(msg.subject.split(".")[-2], None)
            if done is not None:
                done.set()

        sub = await js.subscribe(f"{prefix}.*.succeeded", cb=on_done, ordered_consumer=True)
        out: list[float] = []
        for i in range(samples + WARMUP):
            tid = uuid.uuid4().hex[:12]
            done = waiting[tid] = asyncio.Event()
            t0 = time.perf_counter()
            await nc.request(f"{prefix}-req.submit", tid.encode(), timeout=10)
            await asyncio.wait_for(done.wait(), 10)
            if i >= WARMUP:
                out.append((time.perf_counter() - t0) * 1000)
        await sub.unsubscribe()
        return out
    finally:
        for p in procs:
            p.kill()
            await p.wait()
        await js.delete_stream(stream)


if __name__ == "__main__":
    from agents.host.loop import run

    run(_serve(sys.argv[1], sys.argv[2], sys.argv[3]))  # the agents' loop, as DTF's
