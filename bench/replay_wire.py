"""Reading the whole log through the wire, as `dtf replay`, `dtf audit verify`, `dtf
simulate`, a projector rebuild and a cold start without a snapshot do.

    python bench/replay_wire.py [--events 1000000] [--json]

It appends ``--events`` synthetic task events (atomic batches with the message ids and
headers real appends carry) into a nats-server's store, starts a secure stack on that store
(as `dtf up`: auth callout, one worker), waits for it to fold and project them all, and
then measures in one run:

- ``nats_py_events_per_s``: the baseline, nats-py's own ordered consumer reading the log
  with an empty callback (what the tails used before);
- ``wire_replay_events_per_s``: the log read into records through DTF's tail (best of 3);
- ``fold_events_per_s``: decode + fold of those records, in memory (the ceiling);
- ``full_replay_s``: a fresh process reading and folding the whole log (a cold start
  without a snapshot);
- ``audit_verify_1m_s``: `dtf audit verify --json`, the CLI as a user runs it;
- ``replay_at_1m_s``: `dtf replay --at SEQ` at the end of the log (the stack's newest
  snapshot plus the events after it; ``replay_at_snapshot_seq`` says where it started).

The last line is JSON. Issue 17's targets: >= 150k events/s, <= 15 s and <= 2 s at 1M.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from agents.host.supervisor import Stack
from agents.log.fold import Folder
from agents.log.jetstream import JetStreamLog
from agents.log.port import Append
from agents.nats.connect import connect, ensure_streams
from agents.nats.server import NatsServer, free_port
from agents.wire.projector import projector_status
from bench import emit, replay
from dtf_core import subjects
from dtf_core.events.codec import decode
from projections.board import Board
from tests.helpers import until

BATCH = 1000


async def fill(store: Path, n: int) -> float:
    """Append ``n`` recorded events as the agents do (atomic batches, message ids), into
    the store the stack will start on; events/s."""
    server = NatsServer(store_dir=store, port=free_port())
    server.start()
    try:
        nc = await connect(server.url, "bench-fill")
        await ensure_streams(nc.jetstream())
        log = JetStreamLog(nc)
        tag = os.urandom(4).hex()
        records = replay.recorded(n)
        t = time.perf_counter()
        for i in range(0, len(records), BATCH):
            await log.append([Append(subject=s, data=d, msg_id=f"bench-{tag}-{i + j}")
                              for j, (s, d) in enumerate(records[i:i + BATCH])])
        took = time.perf_counter() - t
        await nc.close()
    finally:
        server.stop()
    return n / took


async def nats_py_read(url: str, token: str, end: int) -> float:
    """nats-py's ordered consumer over the whole log, counting: events/s."""
    import nats

    nc = await nats.connect(url, token=token)
    done = asyncio.Event()
    seen = 0

    async def count(msg: Any) -> None:
        nonlocal seen
        seen += 1
        if msg.metadata.sequence.stream >= end:
            done.set()

    t = time.perf_counter()
    sub = await nc.jetstream().subscribe(subjects.ALL_EVENTS, cb=count, ordered_consumer=True,
                                         pending_msgs_limit=-1, pending_bytes_limit=-1)
    await done.wait()
    took = time.perf_counter() - t
    await sub.unsubscribe()
    await nc.close()
    return seen / took


async def wire_read(log: JetStreamLog) -> tuple[float, list[Any]]:
    t = time.perf_counter()
    records = await log.read([subjects.ALL_EVENTS])
    return time.perf_counter() - t, records


def fold(records: list[Any]) -> float:
    board = Board()
    t = time.perf_counter()
    for rec in records:
        if rec.subject.startswith("dtf.evt.task.") or rec.subject.startswith("dtf.evt.worker."):
            board.apply(rec.seq, decode(rec.subject, rec.data))
    return time.perf_counter() - t


async def full_replay(url: str, token: str) -> tuple[float, int]:
    """What an agent does at a cold start without a snapshot."""
    t = time.perf_counter()
    nc = await connect(url, "bench-full-replay", credential=token)
    folder = Folder(JetStreamLog(nc), Board(), dead_letter=_no_dead_letters)
    runner = asyncio.create_task(folder.run())
    await folder.caught_up.wait()
    took = time.perf_counter() - t
    runner.cancel()
    await nc.close()
    return took, folder.folded


async def _no_dead_letters(rec: object, why: str) -> None:
    raise RuntimeError(f"an event did not decode: {why}")


def cli(stack: Stack, *argv: str) -> tuple[float, dict[str, Any]]:
    assert stack.creds is not None
    env = {**os.environ, "DTF_TOKEN_FILE": str(stack.creds.admin), "DTF_SERVER": stack.url}
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "cli.main", *argv], capture_output=True,
                         text=True, env=env, timeout=900, cwd=Path(__file__).parent.parent)
    took = time.perf_counter() - t
    if out.returncode not in (0, 1):
        raise RuntimeError(f"dtf {' '.join(argv)} failed: {out.stderr[-2000:]}")
    return took, json.loads(out.stdout)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dtf-bench-replay-") as tmp:
        data = Path(tmp) / "dtf"
        data.mkdir(mode=0o700)
        fill_rate = await fill(data / "nats", args.events)
        stack = Stack(data_dir=data, port=free_port(), workers=1, slots=4)
        await stack.start()
        supervisor = asyncio.create_task(stack.supervise())
        try:
            await stack.wait_ready(timeout=600)
            assert stack.creds is not None
            control = stack.creds.files["agent-control"].read_text().strip()
            nc = await connect(stack.url, "bench-replay", credential=control)
            log = JetStreamLog(nc)
            end = await log.last_seq()

            async def projected() -> bool:
                return ((await projector_status(nc, timeout=10)).last_seq or 0) >= end

            await until(projected, timeout=600)
            baseline = await nats_py_read(stack.url, control, end)
            reads = []
            for _ in range(3):
                took, records = await wire_read(log)
                reads.append(took)
            fold_s = fold(records)
            n = len(records)
            del records
            full_s, folded = await full_replay(stack.url, control)
            audit_s, audit = cli(stack, "audit", "verify", "--json")
            at_s, at = cli(stack, "replay", "--at", str(await JetStreamLog(nc).last_seq()),
                           "--json")
            await nc.close()
        finally:
            supervisor.cancel()
            await stack.stop()
    return {
        "events": n, "fill_events_per_s": round(fill_rate),
        "nats_py_events_per_s": round(baseline),
        "wire_replay_events_per_s": round(n / min(reads)),
        "fold_events_per_s": round(n / fold_s),
        "full_replay_s": round(full_s, 2), "full_replay_folded": folded,
        "audit_verify_1m_s": round(audit_s, 2), "audit_clean": audit.get("clean"),
        "audit_checks": {k: audit[k].get("equal") for k in ("projection", "live_state",
                                                             "snapshot")},
        "replay_at_1m_s": round(at_s, 2), "replay_at_seq": at.get("seq"),
        "replay_at_snapshot_seq": at.get("snapshot_seq"),
        "wire_over_nats_py": round(n / min(reads) / baseline, 2),
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    emit(asyncio.run(main(args)), args.json)
