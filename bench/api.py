"""The HTTP agent under load: list latency with a big log, and WebSocket fan-out while
tasks flow.

    python bench/api.py [--tasks 100000] [--clients 100] [--rate 1000] [--json]

It starts its own stack (durable, as `dtf up`, with the HTTP agent) and measures in one run:
- tasks_p50_ms / tasks_p99_ms: `GET /api/tasks` (a page of 100; also filtered by status,
  and a second page by cursor) with ``--tasks`` noop tasks in the log;
- throughput without clients: ``--flow`` noop tasks submitted at ``--rate`` a second,
  tasks per second from the first submission to the last terminal event;
- the same with ``--clients`` WebSocket clients on `/ws`, each following every event:
  ws_max_lag_s (the most any client was behind, event time to receipt) and
  throughput_ratio (with clients / without; 1.0 means they cost nothing).
The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import httpx
import msgspec
from nats.aio.client import Client
from websockets.asyncio.client import connect as ws_connect

from agents.host.supervisor import Stack
from agents.log.jetstream import JetStreamLog
from agents.nats.connect import connect
from agents.nats.server import free_port
from agents.wire.client import ApiClient
from bench import emit
from dtf_core.events.task import TERMINAL_TYPES
from dtf_core.spec import TaskSpec

NOOP = TaskSpec(type="noop")


class Timed(msgspec.Struct):
    """What a follower reads of each event: its time (the rest is skipped unparsed)."""

    time: float | None = None


decoder = msgspec.json.Decoder(list[Timed])


async def flow(nc: Client, api: ApiClient, n: int, rate: float) -> float:
    """Submit ``n`` noop tasks at ``rate`` a second (in chunks of a tenth of a second's
    worth); the tasks per second from the first submission to the last terminal event."""
    eventlog = JetStreamLog(nc)
    start_seq = await eventlog.last_seq() + 1
    done = asyncio.Event()
    seen = 0

    async def count() -> None:
        nonlocal seen
        async with eventlog.tail([f"dtf.evt.task.*.{t}" for t in TERMINAL_TYPES],
                                 start_seq) as tail:
            async for batch in tail:
                seen += len(batch)
                if seen >= n:
                    done.set()
                    return

    counter = asyncio.create_task(count())
    chunk = max(1, int(rate / 10))
    t0 = time.perf_counter()
    for k, at in enumerate(range(0, n, chunk)):
        await api.submit([NOOP] * min(chunk, n - at))
        pause = t0 + (k + 1) * chunk / rate - time.perf_counter()
        if pause > 0:
            await asyncio.sleep(pause)  # pacing the submissions, not waiting on anything
    await done.wait()
    await counter
    return n / (time.perf_counter() - t0)


async def fill(api: ApiClient, n: int) -> None:
    """``n`` noop tasks in the log, every one ended."""
    before = (await api.status()).tasks.get("succeeded", 0)
    sem = asyncio.Semaphore(4)

    async def submit(k: int) -> None:
        async with sem:
            await api.submit([NOOP] * min(1000, n - k))

    await asyncio.gather(*(submit(k) for k in range(0, n, 1000)))
    while (await api.status()).tasks.get("succeeded", 0) < before + n:  # noqa: ASYNC110
        await asyncio.sleep(0.5)  # polling a count kept by other processes


async def list_latency(http: httpx.AsyncClient, samples: int) -> list[float]:
    out = []
    first = (await http.get("/api/tasks", params={"limit": 100})).json()
    queries = [{"limit": 100}, {"limit": 100, "status": "succeeded"},
               {"limit": 100, "cursor": first["next"]}]
    for i in range(samples):
        t0 = time.perf_counter()
        answer = await http.get("/api/tasks", params=queries[i % len(queries)])
        out.append((time.perf_counter() - t0) * 1000)
        assert answer.status_code == 200 and len(answer.json()["items"]) == 100, answer.text
    return out


async def follower(url: str, token: str, lags: list[float], ready: asyncio.Event,
                   stop: asyncio.Event) -> None:
    async with ws_connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                          open_timeout=60, max_size=None) as ws:
        await ws.recv()  # hello
        ready.set()
        worst = 0.0
        while not stop.is_set():
            try:
                batch = decoder.decode(await asyncio.wait_for(ws.recv(decode=False), 0.5))
            except TimeoutError:
                continue
            now = time.time()
            worst = max([worst, *(now - i.time for i in batch if i.time)])
        lags.append(worst)


async def main(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="dtf-bench-api-") as tmp:
        stack = Stack(data_dir=Path(tmp), port=free_port(), workers=1, slots=1000,
                      http_port=free_port())
        await stack.start()
        supervisor = asyncio.create_task(stack.supervise())
        try:
            await stack.wait_ready()
            token = stack.creds.admin.read_text().strip() if stack.creds else ""
            nc = await connect(stack.url, "dtf-bench", credential=token)
            api = ApiClient(nc, timeout=60, credential=token)
            await fill(api, args.tasks)
            async with httpx.AsyncClient(base_url=stack.http_url or "", timeout=30, headers={
                    "Authorization": f"Bearer {token}"}) as http:
                await list_latency(http, 30)  # warm up
                lat = sorted(await list_latency(http, args.samples))
            alone = await flow(nc, api, args.flow, args.rate)
            lags: list[float] = []
            stop = asyncio.Event()
            readies = [asyncio.Event() for _ in range(args.clients)]
            url = (stack.http_url or "").replace("http://", "ws://") + "ws"
            clients = [asyncio.create_task(follower(url, token, lags, r, stop))
                       for r in readies]
            await asyncio.gather(*(r.wait() for r in readies))
            watched = await flow(nc, api, args.flow, args.rate)
            await asyncio.sleep(1.0)  # let the last events reach every client
            stop.set()
            await asyncio.gather(*clients)
            await nc.close()
        finally:
            supervisor.cancel()
            await stack.stop()
    return {
        "tasks_in_log": args.tasks,
        "tasks_p50_ms": round(statistics.median(lat), 2),
        "tasks_p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2),
        "clients": args.clients,
        "rate": args.rate,
        "tasks_per_s_alone": round(alone, 1),
        "tasks_per_s_with_clients": round(watched, 1),
        "throughput_ratio": round(watched / alone, 3),
        "ws_max_lag_s": round(max(lags), 3),
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=100_000, help="tasks in the log")
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--rate", type=float, default=1000.0, help="tasks submitted a second")
    p.add_argument("--flow", type=int, default=10_000, help="tasks per flow measurement")
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    a = p.parse_args()
    emit(asyncio.run(main(a)), a.json)
