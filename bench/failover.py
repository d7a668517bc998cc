"""Failover, replay and cold-start speed, measured on real servers in one run.

    python bench/failover.py [--tasks 3000] [--cold-events 1000000] [--json] [--failover-only]

1. failover: `dtf up --cluster 3` (three nats-server nodes, R3 streams, two control planes,
   two workers). N noop tasks flow; the process holding the scheduler claim is killed with
   SIGKILL a quarter of the way through. `failover_s`: kill -> first lease written by the
   new leader. `recovered_s`: kill -> the first one-second window whose completions reach
   90% of the rate before the kill (the baseline, measured in the same run).
2. replay: decode + fold of recorded events (bench/replay.py), `replay_events_per_s`.
3. cold start: a single nats-server gets `--cold-events` synthetic events; a snapshot is
   stored 1% before the end. `cold_start_s`: an empty board loads the snapshot from the
   object store and folds the tail from JetStream until caught up. The baseline in the same
   run is `full_replay_s`, the same board folded from the first event. Each start runs in a
   fresh process (as a restarted agent does); the fastest of three is `cold_start_s`.

The last line is JSON with `failover_s`, `replay_events_per_s` and `cold_start_s` (issue 7's
targets: <= 2 s, >= 200k/s, <= 1 s at 1M events).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from agents.log import snapshots
from agents.log.fold import Folder
from agents.log.jetstream import JetStreamLog
from agents.nats.connect import connect, ensure_streams
from agents.nats.server import NatsServer, free_port
from bench import replay
from dtf_core.events.codec import decode
from dtf_core.events.task import TaskLeased, TaskSucceeded
from dtf_core.spec import TaskSpec
from projections.board import Board
from tests.chaos.cluster import failover_phases, lead_events, pid_of, running, task_events
from tests.helpers import until

WINDOW_S = 1.0
COLD_REPEAT = 3  # cold starts, each in a fresh process: the fastest is reported, and the median


async def failover(tasks: int, data: Path) -> dict[str, float | None]:
    with running(data, workers=2, slots=4) as cluster:
        nc, api, log = await cluster.client()
        try:
            t0 = time.time()
            await api.submit([TaskSpec(type="noop")] * tasks)
            async def succeeded(n: int) -> bool:
                return bool((await api.status()).tasks.get("succeeded", 0) >= n)

            await until(lambda: succeeded(tasks // 4), 300, "a quarter of the tasks")
            status = await api.status()
            holder = status.leaders["scheduler"].holder
            os.kill(pid_of(holder), signal.SIGKILL)
            killed = time.time()
            await until(lambda: succeeded(tasks), 600, "every task")
            events = [e for _, e in await task_events(log)]
            claims = await lead_events(log, "scheduler")
        finally:
            await nc.close()
    leases = [e.at for e in events if isinstance(e, TaskLeased)
              and e.actor != holder and e.at >= killed]
    done = sorted(e.at for e in events if isinstance(e, TaskSucceeded))
    # the baseline: completions per second over the second half of the run before the kill
    before = [t for t in done if t < killed]
    half = before[len(before) // 2:] if len(before) > 1 else before
    base_rate = len(half) / max(killed - half[0], 1e-9) if half else 0.0
    del t0
    recovered = float("nan")
    start = killed
    while start < done[-1]:
        in_window = sum(1 for t in done if start <= t < start + WINDOW_S)
        if in_window >= 0.9 * base_rate * WINDOW_S:
            recovered = start + WINDOW_S - killed
            break
        start += 0.1
    phases = (failover_phases(claims, events, holder, killed, min(leases)) if leases
              else "no new lease")
    return {"failover_s": round(min(leases) - killed, 3) if leases else None,
            "failover_phases": phases,
            "recovered_s": round(recovered, 3) if recovered == recovered else None,
            "base_tasks_per_s": round(base_rate, 1)}


# The cold-start server writes without an fsync per message (the events are synthetic, and
# what is measured is reading them back): a million events then take seconds, not minutes.
FAST_CONF = "max_payload: 1MB\njetstream {\n}\n"


async def cold_start(n_events: int, data: Path) -> dict[str, float]:
    server = NatsServer(store_dir=data / "nats", port=free_port(), conf=data / "nats.conf")
    server.start()
    try:
        nc = await connect(server.url, "bench-cold")
        js = nc.jetstream()
        await ensure_streams(js)
        records = replay.recorded(n_events)
        cut = n_events - n_events // 100
        t = time.perf_counter()
        await _publish(js, records)
        publish_s = time.perf_counter() - t
        board = Board()
        for seq, (subject, payload) in enumerate(records[:cut], 1):
            board.apply(seq, decode(subject, payload))
        await snapshots.save(js, board, cut)
        del board

        del records
        await nc.close()
        # a cold start is a fresh process: measured in one, not in this one, whose heap
        # holds a million records (the garbage collector would charge them to the start)
        colds = [_in_fresh_process(server.url, True) for _ in range(COLD_REPEAT)]
        cold_s, cold_hash = min(colds)
        cold_median_s = sorted(t for t, _ in colds)[COLD_REPEAT // 2]
        full_s, full_hash = _in_fresh_process(server.url, False)
    finally:
        server.stop()
    return {"cold_start_s": round(cold_s, 3), "cold_start_median_s": round(cold_median_s, 3),
            "full_replay_s": round(full_s, 3),
            "cold_events": n_events, "publish_s": round(publish_s, 1),
            "cold_equals_full": cold_hash == full_hash}


def _in_fresh_process(url: str, from_snapshot: bool) -> tuple[float, str]:
    out = subprocess.run([sys.executable, __file__, "--start-from", url,
                          "--snapshot" if from_snapshot else "--no-snapshot"],
                         capture_output=True, text=True, check=True, timeout=600)
    took, state_hash = out.stdout.split()[-2:]
    return float(took), state_hash


async def _start(url: str, from_snapshot: bool) -> tuple[float, str]:
    """What a control plane does when it starts: load the snapshot, fold the tail."""
    t = time.perf_counter()
    nc = await connect(url, "bench-cold-start")
    board = Board()
    folder = Folder(JetStreamLog(nc), board, dead_letter=_no_dead_letters)
    if from_snapshot:
        folder.position = await snapshots.load_into(nc.jetstream(), board)
    runner = asyncio.create_task(folder.run())
    await folder.caught_up.wait()
    took = time.perf_counter() - t
    runner.cancel()
    await nc.close()
    return took, board.state_hash()


async def _publish(js: object, records: list[tuple[str, bytes]]) -> None:
    from nats.js import JetStreamContext

    assert isinstance(js, JetStreamContext)
    window = 2000
    for i in range(0, len(records), window):
        acks = [await js.publish_async(subject, payload)
                for subject, payload in records[i:i + window]]
        await asyncio.gather(*acks)
    await js.publish_async_completed()


async def _no_dead_letters(rec: object, why: str) -> None:
    raise RuntimeError(f"the bench's own events did not decode: {why}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=3000)
    p.add_argument("--replay-events", type=int, default=300_000)
    p.add_argument("--cold-events", type=int, default=1_000_000)
    p.add_argument("--json", action="store_true")
    p.add_argument("--failover-only", action="store_true", help="measure the failover only")
    p.add_argument("--start-from", help=argparse.SUPPRESS)  # internal: one cold start
    p.add_argument("--snapshot", action=argparse.BooleanOptionalAction, default=True,
                   help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.start_from:
        took, state_hash = asyncio.run(_start(args.start_from, args.snapshot))
        print(took, state_hash)
        return
    with tempfile.TemporaryDirectory(prefix="dtf-failover-") as tmp:
        result: dict[str, Any] = dict(asyncio.run(failover(args.tasks, Path(tmp) / "dtf")))
        if args.failover_only:
            print(json.dumps(result))
            return
        records = replay.recorded(args.replay_events)
        best = min(replay.fold(records)[0] for _ in range(3))
        result["replay_events_per_s"] = round(len(records) / best)
        cold = Path(tmp) / "cold"
        cold.mkdir()
        (cold / "nats.conf").write_text(FAST_CONF)
        result.update(asyncio.run(cold_start(args.cold_events, cold)))
    result["cold_over_full"] = round(result["cold_start_s"] / result["full_replay_s"], 3)
    if not args.json:
        print(f"failover: first lease by the new leader {result['failover_s']}s after the "
              f"kill ({result['failover_phases']}); throughput back to 90% after "
              f"{result['recovered_s']}s")
        print(f"replay: {result['replay_events_per_s']} events/s")
        print(f"cold start at {args.cold_events} events: {result['cold_start_s']}s from the "
              f"snapshot (median of {COLD_REPEAT}: {result['cold_start_median_s']}s), "
              f"{result['full_replay_s']}s from the first event "
              f"(ratio {result['cold_over_full']}; same state: {result['cold_equals_full']})")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
