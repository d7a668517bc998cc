"""End-to-end benchmark: noop tasks through a real, durable DTF stack.

    python bench/e2e.py --tasks 20000 --workers 1 [--json]

It starts its own stack (the real nats.conf, sync_interval: always) on a temporary data
dir; its client runs on the loop of DTF's CLI (uvloop where installed). It measures in
one run:
- tasks_per_s: N noop tasks submitted -> every one terminal -> projected into DuckDB;
- p50_ms / p99_ms: single-task latency, submit -> terminal event stored (what `dtf wait`
  sees), 500 samples after 100 not counted (as for the floor and Celery);
  published_p50_ms: the same event as a plain subscriber sees it, published but not yet
  stored (200 samples after those: the subscriber is not there while p50_ms is
  measured);
- floor_p50_ms: the same single-task round trip with DTF's processes, hops and fsyncs
  but no DTF code (bench/floor.py: plain nats-py), on the same server; p50_over_floor;
- naive_tasks_per_s: a loop of three awaited JetStream publishes per task (no DTF code);
- ceiling_tasks_per_s: three events per task in atomic batches of 100 (no DTF code),
  the mean of one measure right before DTF's and one after it (the machine's speed drifts
  within minutes); ceiling_spread: how far apart the two were, as a share of the mean;
- with --celery: celery_p50_ms / celery_p99_ms / celery_tasks_per_s, the same measures of
  Celery + Redis on this machine (bench/celery_ref.py; needs redis-server and celery).
The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import StorageType, StreamConfig

from agents.host.loop import run
from agents.host.supervisor import Stack
from agents.log.jetstream import JetStreamLog
from agents.log.tail import Tail
from agents.nats.connect import connect
from agents.nats.server import free_port
from agents.wire.client import ApiClient
from bench import emit, floor
from dtf_core import subjects
from dtf_core.events.task import TERMINAL_TYPES
from dtf_core.replies import ResultsQuery, ResultsTable
from dtf_core.spec import TaskSpec

NOOP = TaskSpec(type="noop")
PUBLISHED_SAMPLES = 200


async def throughput(nc: Client, n: int, credential: str | None = None
                     ) -> tuple[float, float, int]:
    """Submit n noop tasks; returns (seconds to all terminal, seconds to all projected,
    last sequence)."""
    api = ApiClient(nc, timeout=60, credential=credential)
    eventlog = JetStreamLog(nc)
    start_seq = await eventlog.last_seq() + 1
    filters = [f"dtf.evt.task.*.{t}" for t in TERMINAL_TYPES]
    done = asyncio.Event()
    seen = 0
    last_seq = 0

    async def count() -> None:
        nonlocal seen, last_seq
        async with eventlog.tail(filters, start_seq) as tail:
            async for batch in tail:
                seen += len(batch)
                last_seq = batch[-1].seq
                if seen >= n:
                    done.set()
                    return

    counter = asyncio.create_task(count())
    await asyncio.sleep(0)
    t0 = time.perf_counter()
    chunk = 1000
    sem = asyncio.Semaphore(4)

    async def submit(k: int) -> None:
        async with sem:
            await api.submit([NOOP] * min(chunk, n - k))

    await asyncio.gather(*(submit(k) for k in range(0, n, chunk)))
    await done.wait()
    t_terminal = time.perf_counter() - t0
    await counter
    # projected: what a user's query sees once every task has ended (the projector answers
    # after storing every event the log held when it was asked)
    msg = await nc.request(subjects.Q_RESULTS, msgspec.json.encode(ResultsQuery(
        sql="SELECT max(last_seq) FROM tasks")), timeout=60)
    table = msgspec.json.decode(msg.data, type=ResultsTable)
    if not table.ok or not isinstance(table.rows[0][0], int) or table.rows[0][0] < last_seq:
        raise SystemExit(f"the projection did not hold the run's tasks: {msg.data!r}")
    return t_terminal, time.perf_counter() - t0, last_seq


async def latency(nc: Client, samples: int, credential: str | None = None,
                  published_too: bool = False) -> tuple[list[float], list[float]]:
    """Single tasks, one at a time: (ms from submit to the terminal event stored, as
    `dtf wait` sees it; with ``published_too``, ms to the same event published, as a plain
    subscriber sees it, before nats-server has stored it: that subscriber is one more
    delivery to this process in each sample, so the stored figures are measured without
    it)."""
    api = ApiClient(nc, credential=credential)
    eventlog = JetStreamLog(nc)
    filters = [f"dtf.evt.task.*.{t}" for t in TERMINAL_TYPES]
    stored: dict[str, asyncio.Event] = {}

    async def watch(tail: Tail) -> None:
        async for batch in tail:
            for rec in batch:
                got = stored.get(rec.subject.split(".")[3])
                if got is not None:
                    got.set()

    out: list[float] = []
    published: list[float] = []
    seen: dict[str, float] = {}  # task -> when its terminal event was seen published

    async def on_msg(msg: Msg) -> None:
        seen.setdefault(msg.subject.split(".")[3], time.perf_counter())

    # Subscribed once, not per sample: a subscription made and dropped for every task
    # would make nats-server rebuild its interest (and drop its subject cache) each time.
    subs = [await nc.subscribe(f"dtf.evt.task.*.{t}", cb=on_msg) for t in TERMINAL_TYPES
            ] if published_too else []
    async with eventlog.tail(filters, await eventlog.last_seq() + 1) as tail:
        watcher = asyncio.create_task(watch(tail))
        for _ in range(samples):
            task_id = "lat-" + uuid.uuid4().hex[:16]
            got = stored[task_id] = asyncio.Event()
            t0 = time.perf_counter()
            await api.submit([TaskSpec(type="noop", id=task_id)])
            await asyncio.wait_for(got.wait(), 30)
            out.append((time.perf_counter() - t0) * 1000)
            if task_id in seen:
                published.append((seen.pop(task_id) - t0) * 1000)
            del stored[task_id]
        watcher.cancel()
    for sub in subs:
        await sub.unsubscribe()
    return out, published


async def references(nc: Client, n: int) -> tuple[float, float]:
    """(naive tasks/s, ceiling tasks/s) of n tasks, on streams of their own."""
    js = nc.jetstream()
    tag = uuid.uuid4().hex[:8]
    for name in ("NAIVE", "CEIL"):
        await js.add_stream(StreamConfig(name=f"BENCH_{name}_{tag}",
                                         subjects=[f"bench.{name.lower()}{tag}.>"],
                                         storage=StorageType.FILE, allow_atomic=True))
    t0 = time.perf_counter()
    for i in range(n):
        for ev in ("submitted", "leased", "succeeded"):
            await js.publish(f"bench.naive{tag}.t{i}.{ev}", b"x" * 64)
    naive = n / (time.perf_counter() - t0)
    ceiling = await batched(nc, f"bench.ceil{tag}", n)
    for name in ("NAIVE", "CEIL"):
        await js.delete_stream(f"BENCH_{name}_{tag}")
    return naive, ceiling


async def batched(nc: Client, prefix: str, n: int) -> float:
    """Tasks/s of three events per task appended in atomic batches of 100."""
    msgs = [f"{prefix}.t{i}.{ev}" for i in range(n) for ev in ("submitted", "leased", "succeeded")]
    t0 = time.perf_counter()
    for b in range(0, len(msgs), 100):
        batch = msgs[b : b + 100]
        bid = uuid.uuid4().hex
        for j, subject in enumerate(batch[:-1], start=1):
            await nc.publish(subject, b"x" * 64,
                             headers={"Nats-Batch-Id": bid, "Nats-Batch-Sequence": str(j)})
        await nc.request(batch[-1], b"x" * 64, timeout=10, headers={
            "Nats-Batch-Id": bid, "Nats-Batch-Sequence": str(len(batch)),
            "Nats-Batch-Commit": "1"})
    return n / (time.perf_counter() - t0)


async def ceiling_now(nc: Client, n: int) -> float:
    js = nc.jetstream()
    name = f"BENCH_CEIL_{uuid.uuid4().hex[:8]}"
    await js.add_stream(StreamConfig(name=name, subjects=[f"bench.{name.lower()}.>"],
                                     storage=StorageType.FILE, allow_atomic=True))
    try:
        return await batched(nc, f"bench.{name.lower()}", n)
    finally:
        await js.delete_stream(name)


async def main(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="dtf-bench-") as tmp:
        stack = Stack(data_dir=Path(tmp), port=free_port(), workers=args.workers,
                      slots=args.slots)
        await stack.start()
        supervisor = asyncio.create_task(stack.supervise())
        try:
            await stack.wait_ready()
            cred = stack.creds.admin.read_text().strip() if stack.creds else None
            nc = await connect(stack.url, "dtf-bench", credential=cred)
            await throughput(nc, min(1000, args.tasks), cred)  # warm up
            before = await ceiling_now(nc, args.ref_tasks)
            t_terminal, t_projected, _ = await throughput(nc, args.tasks, cred)
            await latency(nc, min(args.samples, floor.WARMUP), cred)  # as the floor's
            lat, _ = await latency(nc, args.samples, cred)  # and Celery's: warmed up
            _, published = await latency(nc, min(args.samples, PUBLISHED_SAMPLES), cred,
                                         published_too=True)
            floor_lat = await floor.latency(nc, stack.url, args.samples, cred)
            naive, after = await references(nc, args.ref_tasks)
            await nc.close()
        finally:
            supervisor.cancel()
            await stack.stop()
    lat.sort()
    published.sort()
    tps = args.tasks / t_projected
    ceiling = (before + after) / 2
    return {
        "tasks": args.tasks,
        "workers": args.workers,
        "tasks_per_s": round(tps, 1),
        "terminal_tasks_per_s": round(args.tasks / t_terminal, 1),
        "p50_ms": round(statistics.median(lat), 3),
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 3),
        "published_p50_ms": round(statistics.median(published), 3),
        "floor_p50_ms": round(statistics.median(floor_lat), 3),
        "p50_over_floor": round(statistics.median(lat) / statistics.median(floor_lat), 2),
        "naive_tasks_per_s": round(naive, 1),
        "ceiling_tasks_per_s": round(ceiling, 1),
        "ceiling_spread": round(abs(before - after) / ceiling, 2),
        "ratio": round(tps / ceiling, 3),
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=20000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--slots", type=int, default=1000, help="slots per worker")
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--ref-tasks", type=int, default=3000)
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    p.add_argument("--celery", action="store_true",
                   help="also measure Celery + Redis (redis-server and celery installed)")
    a = p.parse_args()
    if a.celery:
        from bench import celery_ref

        why = celery_ref.available()
        if why:
            p.error(f"--celery: {why}")
    # the client on the loop of DTF's CLI (`dtf submit`, `dtf wait`) and agents
    result: dict[str, float] = run(main(a))
    if a.celery:
        result.update(celery_ref.measure(a.samples, a.ref_tasks))
        result["p50_over_celery"] = round(result["p50_ms"] / result["celery_p50_ms"], 2)
    emit(result, a.json)
