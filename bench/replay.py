"""Replay fold speed: decode and fold recorded events into a Board, as every agent does
at a cold start and as `dtf replay` does.

    python bench/replay.py [--events 300000] [--json]

It encodes N events (submitted, leased, succeeded per task, on 10 workers) the way they
are stored, then times decode + fold of all of them, twice, and checks that both folds give
the same state hash. The last line is JSON with `replay_events_per_s`.
(Issue 7's target is 200k events/s.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from dtf_core.events.codec import decode, encode, subject_of
from dtf_core.events.task import TaskLeased, TaskSubmitted, TaskSucceeded
from dtf_core.events.worker import Capabilities, WorkerRegistered
from dtf_core.spec import TaskSpec
from projections.board import Board


def recorded(n_events: int) -> list[tuple[str, bytes]]:
    spec = TaskSpec(type="noop")
    out = []
    for w in range(10):
        reg = WorkerRegistered(worker_id=f"w{w}", session="s", hostname="h", pid=w, slots=8,
                               capabilities=Capabilities(), at=0.0, actor="bench")
        out.append((subject_of(reg), encode(reg)))
    i = 0
    while len(out) < n_events:
        tid, wid = f"t{i}", f"w{i % 10}"
        lease_seq = len(out) + 2
        for ev in (TaskSubmitted(task_id=tid, spec=spec, at=1.0, actor="bench"),
                   TaskLeased(task_id=tid, worker_id=wid, session="s", attempt=1, at=1.0,
                              actor="scheduler", spec=spec),
                   TaskSucceeded(task_id=tid, attempt=1, fencing=lease_seq, worker_id=wid,
                                 at=2.0, actor=wid)):
            out.append((subject_of(ev), encode(ev)))
        i += 1
    return out[:n_events]


def fold(records: list[tuple[str, bytes]]) -> tuple[float, str]:
    board = Board()
    start = time.perf_counter()
    for seq, (subject, data) in enumerate(records, 1):
        board.apply(seq, decode(subject, data))
    return time.perf_counter() - start, board.state_hash()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=300_000)
    p.add_argument("--repeat", type=int, default=5, help="folds; the fastest counts "
                   "(a shared 2-core machine varies by half from run to run)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    records = recorded(args.events)
    runs = [fold(records) for _ in range(args.repeat)]
    best = min(t for t, _ in runs)
    h1 = runs[0][1]
    result = {"events": len(records), "replay_events_per_s": round(len(records) / best),
              "seconds": round(best, 3), "deterministic": all(h == h1 for _, h in runs)}
    if not args.json:
        print(f"{len(records)} events decoded and folded in {best:.2f}s: "
              f"{result['replay_events_per_s']} events/s (best of {args.repeat}); "
              f"same state hash every time: {result['deterministic']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
