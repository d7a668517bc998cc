"""Autoscaling benchmark: a queued run on 1 fixed worker, then on 0-4 autoscaled local workers.

    python bench/autoscale.py [--tasks 16] [--task-s 1.0] [--json]

Two real `dtf up` stacks (the real nats.conf, durable), one after the other, in one run:
1. baseline: one local worker with one slot; a run of N `sleep S` commands is submitted at
   once; its makespan is submission -> the last task's terminal event.
2. autoscaled: no fixed worker, `--autoscale local:0-4` (one slot per worker); the same run.
   `scale_up_s`: submission (the queue spike) -> the first lease on a worker the autoscaler
   started; `all_up_s`: -> the first lease of the last of them.
`makespan_ratio` = autoscaled / baseline (issue 18's target: <= 0.7; `scale_up_s` <= 10 s).
`simulated_ratio`: what `dtf simulate --extra-workers 3` predicted from the baseline's own
history for 4 workers, beside what the autoscaler got. The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from agents.host.supervisor import Stack
from agents.log.jetstream import JetStreamLog
from agents.nats.connect import connect
from agents.nats.server import free_port
from agents.wire.client import ApiClient
from bench import emit
from dtf_core.events.codec import Event, decode
from dtf_core.events.scale import ScaleRequested
from dtf_core.events.task import TERMINAL_TYPES, TaskLeased
from dtf_core.policy import DefaultPolicy
from dtf_core.simulate import History, simulate
from dtf_core.spec import command_spec

AUTO = "local:0-4"


async def one_run(data_dir: Path, *, tasks: int, task_s: float, autoscale: str | None
                  ) -> dict[str, Any]:
    stack = Stack(data_dir=data_dir, port=free_port(), workers=0 if autoscale else 1, slots=1,
                  autoscale=autoscale)
    await stack.start()
    supervisor = asyncio.create_task(stack.supervise())
    try:
        await stack.wait_ready()
        cred = stack.creds.admin.read_text().strip() if stack.creds else None
        nc = await connect(stack.url, "dtf-bench", credential=cred)
        try:
            eventlog = JetStreamLog(nc)
            start_seq = await eventlog.last_seq() + 1
            specs = [command_spec(["sleep", f"{task_s:g}"]) for _ in range(tasks)]
            t0 = time.time()
            res = await ApiClient(nc, credential=cred, timeout=60).submit(specs)
            ids = set(res.ids)
            events: list[tuple[int, Event]] = []
            ended: set[str] = set()
            deadline = time.monotonic() + 60 + tasks * task_s * 2
            async with eventlog.tail(["dtf.evt.>"], start_seq) as tail:
                async for batch in tail:
                    for rec in batch:
                        ev = decode(rec.subject, rec.data)
                        events.append((rec.seq, ev))
                        if rec.subject.rsplit(".", 1)[-1] in TERMINAL_TYPES:
                            ended.add(rec.subject.split(".")[3])
                    if ids <= ended or time.monotonic() > deadline:
                        break
            if not ids <= ended:
                raise RuntimeError(f"only {len(ended & ids)} of {tasks} tasks ended")
        finally:
            await nc.close()
    finally:
        supervisor.cancel()
        await stack.stop()
    return measure(t0, events, ids)


def measure(t0: float, events: list[tuple[int, Event]], ids: set[str]) -> dict[str, Any]:
    ends = [e.at for _, e in events
            if getattr(e, "task_id", None) in ids and type(e).__struct_config__.tag
            in TERMINAL_TYPES]
    first_lease: dict[str, float] = {}
    for _, e in events:
        if isinstance(e, TaskLeased) and e.task_id in ids:
            first_lease.setdefault(e.worker_id, e.at - t0)
    ups = [e for _, e in events if isinstance(e, ScaleRequested) and e.direction == "up"]
    attempts = [e.attempt for _, e in events if isinstance(e, TaskLeased)]
    return {"makespan_s": max(ends) - t0, "first_lease": first_lease, "ups": ups,
            "max_attempt": max(attempts, default=0), "events": events}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dtf-bench-autoscale-") as tmp:
        os.chdir(tmp)  # the tasks run here; nothing is written into the checkout
        base = await one_run(Path(tmp) / "base", tasks=args.tasks, task_s=args.task_s,
                             autoscale=None)
        auto = await one_run(Path(tmp) / "auto", tasks=args.tasks, task_s=args.task_s,
                             autoscale=AUTO)
    history = History.from_events(base["events"])
    predicted = simulate(history, DefaultPolicy(), extra_workers=3).makespan_s
    actual = history.actual().makespan_s
    new = sorted(auto["first_lease"].values())
    return {
        "tasks": args.tasks,
        "task_s": args.task_s,
        "baseline_makespan_s": round(base["makespan_s"], 3),
        "autoscaled_makespan_s": round(auto["makespan_s"], 3),
        "makespan_ratio": round(auto["makespan_s"] / base["makespan_s"], 3),
        "scale_up_s": round(new[0], 3) if new else None,
        "all_up_s": round(new[-1], 3) if new else None,
        "autoscaled_workers": len(new),
        "scale_ups": [f"{e.current}->{e.target}: {e.reason}" for e in auto["ups"]],
        "max_attempt": max(base["max_attempt"], auto["max_attempt"]),
        "simulated_ratio": round(predicted / actual, 3) if actual else None,
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=16)
    p.add_argument("--task-s", type=float, default=1.0, help="seconds each task sleeps")
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    a = p.parse_args()
    if a.tasks < 1 or not 0 < a.task_s <= 60:
        p.error("--tasks must be >= 1 and --task-s in (0, 60]")
    emit(asyncio.run(main(a)), a.json)
