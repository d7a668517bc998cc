"""Pure placement throughput and the scheduler's memory.

    python bench/scheduler.py --workers 1000 --queued 100000 [--json]

It folds N worker registrations and M submissions into a scheduler's board (no server:
placement is a pure function over folded state), then places every queued task in
scheduling rounds — each round sees all workers free, as after a wave of completions — and
reports microseconds per placement and the process's RSS with the whole queue folded.
A tenth of the tasks need a GPU that a tenth of the workers have. The last line is JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import psutil

from agents.control.scheduler import SchedulerAgent
from agents.log.memory import MemoryLog
from dtf_core import scheduling
from dtf_core.events.task import TaskSubmitted
from dtf_core.events.worker import Capabilities, WorkerRegistered
from dtf_core.placement import place
from dtf_core.spec import Requirements, TaskSpec

GPU = Requirements(hardware=("cuda",))


def build(workers: int, queued: int) -> SchedulerAgent:
    agent = SchedulerAgent(None, MemoryLog())
    board = agent.board
    seq = 0
    for i in range(workers):
        seq += 1
        caps = Capabilities(cpu_count=8, memory_gb=32,
                            hardware=("cpu", "cuda") if i % 10 == 0 else ("cpu",))
        board.apply(seq, WorkerRegistered(worker_id=f"w{i}", session="s", hostname="h",
                                          pid=i, slots=4, capabilities=caps, at=0.0,
                                          actor="bench"))
    plain, gpu = TaskSpec(type="noop"), TaskSpec(type="noop", requirements=GPU)
    for i in range(queued):
        seq += 1
        board.apply(seq, TaskSubmitted(task_id=f"t{i}", spec=gpu if i % 10 == 0 else plain,
                                       run_id=f"r{i % 7}", at=float(i), actor="bench"))
    for t in board.tasks.values():
        agent.ready_q.push(t)
    return agent


def run(workers: int, queued: int) -> dict[str, float]:
    proc = psutil.Process()
    gc.collect()
    base_mb = proc.memory_info().rss / 1024**2
    agent = build(workers, queued)
    gc.collect()
    rss_mb = proc.memory_info().rss / 1024**2
    placed = 0
    rounds = 0
    start = time.perf_counter()
    while len(agent.ready_q):
        slots = scheduling.slots(agent.board)
        candidates = scheduling.pick(agent.ready_q, agent.board, sum(s.free for s in slots),
                                     now=1e12, actor=agent.actor, quotas=agent.quotas,
                                     policy=agent.policy).tasks
        if not candidates:
            break
        decisions = place(((t.task_id, t.spec.requirements) for t in candidates), slots,
                          score=agent.policy.score, policy=agent.policy.name)
        for t in candidates[len(decisions):]:
            agent.ready_q.push(t)
        placed += len(decisions)
        rounds += 1
    elapsed = time.perf_counter() - start
    return {"workers": workers, "queued": queued, "placed": placed, "rounds": rounds,
            "us_per_placement": round(elapsed / max(placed, 1) * 1e6, 2),
            "placements_per_s": round(placed / elapsed),
            "rss_mb": round(rss_mb, 1), "python_baseline_mb": round(base_mb, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=1000)
    p.add_argument("--queued", type=int, default=100_000)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    result = run(args.workers, args.queued)
    if not args.json:
        print(f"{result['placed']} placements on {args.workers} workers: "
              f"{result['us_per_placement']} us each; scheduler RSS {result['rss_mb']} MB "
              f"with {args.queued} queued")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
