"""Rendering results for people (tables, lines) or machines (--json). The CLI writes
results to stdout only through here."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import msgspec

from dtf_core import replies


def emit_json(obj: object) -> None:
    """Any result as JSON: reply structs as the api sent them (``UNSET`` fields left out)."""
    sys.stdout.write(json.dumps(msgspec.to_builtins(obj), default=str) + "\n")


def out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def ago(ts: float | None) -> str:
    if not ts:
        return "-"
    d = max(0.0, time.time() - ts)
    if d < 60:
        return f"{d:.0f}s ago"
    if d < 3600:
        return f"{d / 60:.0f}m ago"
    return f"{d / 3600:.1f}h ago"


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        sys.stdout.write("\n")


def tasks_table(tasks: Sequence[replies.TaskSummary]) -> None:
    table(
        [(t.id, t.type, t.status, t.priority, t.attempt, t.worker_id, t.exit_code,
          ago(t.submitted_at), t.name or "") for t in tasks],
        ["ID", "TYPE", "STATUS", "PRIO", "ATTEMPT", "WORKER", "EXIT", "SUBMITTED", "NAME"],
    )


def _worker_state(w: replies.WorkerRow) -> str:
    """alive, stopped or lost; and cordoned or draining where placement skips it."""
    return w.state if w.scheduling == "open" else f"{w.state} ({w.scheduling})"


def workers_table(workers: Sequence[replies.WorkerRow], everything: bool = False) -> None:
    """Workers that are alive or lost; stopped ones (every autoscaled worker that went) only
    with ``everything``, else counted below."""
    shown = [w for w in workers if everything or w.state != "stopped"]
    table(
        [(w.id, w.hostname, w.pid, _worker_state(w), f"{w.running}/{w.slots}",
          ",".join(w.capabilities.hardware), ago(w.last_seen)) for w in shown],
        ["ID", "HOST", "PID", "STATE", "RUNNING", "HARDWARE", "LAST SEEN"],
    )
    if len(shown) < len(workers):
        out(f"({len(workers) - len(shown)} stopped worker(s) not shown: --all lists them)\n")


def task_detail(t: replies.TaskDetail) -> None:
    for key in ("id", "type", "name", "status", "priority", "attempt", "worker_id", "run_id",
                "exit_code", "error"):
        value = getattr(t, key)
        if value not in (None, ""):
            sys.stdout.write(f"{key + ':':<11}{value}\n")
    sys.stdout.write("history:\n")
    for h in t.history:
        stamp = time.strftime("%H:%M:%S", time.localtime(h.time))
        actor = h.actor if isinstance(h.actor, str) else "?"
        sys.stdout.write(f"  {h.seq:>8}  {stamp}  {h.type:<17} by {actor}\n")


def explanation(e: replies.Explanation) -> str:
    return "\n".join(e.lines) + "\n"


def cancelled(res: replies.CancelResult) -> str:
    if res.status == "cancelled":
        return f"{res.id} cancelled\n"
    return (f"{res.id} cancel requested (it was {res.status}; its process is being "
            "stopped)\n")


def run_cancelled(run_id: str, done: Sequence[str]) -> str:
    return f"run {run_id}: {len(done)} unfinished tasks cancelled\n"


def fields(res: object) -> str:
    """A result for people: ``key=value`` pairs (``--json`` gives the JSON)."""
    plain = msgspec.to_builtins(res)
    if isinstance(plain, dict):
        return " ".join(f"{k}={v}" for k, v in plain.items())
    return str(plain)


Secret = (replies.TokenGranted | replies.CreatedApiKey | replies.RevokedToken
          | replies.RevokedApiKey)


def secret(res: Secret) -> None:
    """A new token or key alone on stdout, for scripts; what it is about on stderr."""
    value = res.token if isinstance(res, replies.TokenGranted) else \
        res.key if isinstance(res, replies.CreatedApiKey) else None
    if value is None:
        out(fields(res))
        return
    out(value)
    about = {k: v for k, v in msgspec.to_builtins(res).items() if k not in ("token", "key")}
    sys.stderr.write(fields(about) + "\n")


def status(st: replies.Status, projector: replies.ProjectorStatus) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in sorted(st.tasks.items())) or "none"
    projected = (f"{projector.last_seq}" if isinstance(projector.last_seq, int)
                 else f"unavailable ({projector.error or '?'})")
    lines = [f"tasks: {counts}", f"workers alive: {st.workers_alive}",
             f"log position: {st.last_seq}", f"projected to: {projected}"]
    lines += [f"{role} leader: {claim.holder} (term {claim.term})"
              for role, claim in st.leaders.items()]
    return "\n".join(lines) + "\n"


def status_json(st: replies.Status, projector: replies.ProjectorStatus) -> None:
    emit_json({**msgspec.to_builtins(st), "projector": msgspec.to_builtins(projector)})


def waited(final: Mapping[str, replies.TaskSummary], ids: Sequence[str]) -> str:
    lines = []
    for i in ids:
        t = final[i]
        extra = f" ({t.error})" if t.error and t.status != "succeeded" else ""
        lines.append(f"{i} {t.status}{extra}")
    return "\n".join(lines) + "\n"


def submitted(ids: Sequence[str]) -> str:
    return "\n".join(ids) + "\n"
def simulation(res: dict[str, Any]) -> str:
    rows = [("tasks", "tasks"), ("makespan", "makespan_s"), ("mean wait", "mean_wait_s"),
            ("p95 wait", "p95_wait_s"), ("fairness (Jain, 1 = even)", "fairness")]
    extra = f" +{res['extra_workers']} workers" if res.get("extra_workers") else ""
    head = f"{'':28}{'actual':>12}{'policy ' + res['policy'] + extra:>20}"
    lines = [f"from seq {res['from_seq']}", head]
    for label, key in rows:
        a, s = res["actual"][key], res["simulated"][key]
        unit = "s" if key.endswith("_s") else ""
        lines.append(f"{label:28}{a:>11}{unit:1}{s:>19}{unit:1}")
    return "\n".join(lines) + "\n"


def audit(res: dict[str, Any]) -> str:
    lines = [f"{res['events']} events, {res['tasks']} tasks ({res['open_tasks']} not ended yet)"]
    proj = res["projection"]
    if proj.get("checked"):
        lines.append(f"invariant 4: projection at seq {proj['last_seq']} "
                     + ("equals a rebuild from the log" if proj["equal"] else "DIFFERS"))
    else:
        lines.append(f"invariant 4: not checked: {proj.get('why')}")
    live, snap = res.get("live_state", {}), res.get("snapshot", {})
    if live.get("checked"):
        lines.append(f"invariant 7: the api's state at seq {live['last_seq']} "
                     + ("equals a replay of the log" if live["equal"] else "DIFFERS"))
    else:
        lines.append(f"invariant 7 (live state): not checked: {live.get('why')}")
    if snap.get("checked"):
        lines.append(f"invariant 7: the snapshot at seq {snap['snapshot_seq']} plus the tail "
                     + ("equals a replay of the log" if snap["equal"] else "DIFFERS"))
    else:
        lines.append(f"invariant 7 (snapshot): not checked: {snap.get('why')}")
    for v in res["violations"]:
        lines.append(f"VIOLATION of invariant {v['invariant']} at seq {v['seq']} "
                     f"({v['subject_id']}): {v['detail']}")
    lines.append("clean: invariants 1, 2, 3, 5 and 6 hold over the whole log, and every "
                 "comparison above is equal"
                 if res["clean"] else f"{len(res['violations'])} violation(s)")
    return "\n".join(lines) + "\n"


def history(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["at"]))
        extra = " ".join(f"{k}={v}" for k, v in r["fields"].items()
                         if v not in (None, "", 0, [], {}) and k not in ("task_id",))
        out.append(f"{r['seq']:>8}  {when}Z  {r['type']:<16} by {r['actor']:<14} {extra}")
    return "\n".join(out) + "\n"


def replayed(state: dict[str, Any]) -> str:
    lines = [f"as of seq {state['seq']} (--at {state['at']}); state hash {state['state_hash']}",
             "tasks: " + (", ".join(f"{n} {k}" for k, n in sorted(state["tasks"].items()))
                          or "none"),
             f"runs: {state['runs']}"]
    for wid, w in sorted(state["workers"].items()):
        lines.append(f"worker {wid}: {w['status']}, {w['scheduling']}, "
                     f"{len(w['leases'])}/{w['slots']} slots leased")
    return "\n".join(lines) + "\n"


def worker_scheduling(res: replies.SchedulingChanged) -> str:
    moved = res.migrated
    return (f"{res.worker_id}: {res.scheduling}"
            + (f"; {len(moved)} queued leases moved off it" if moved else "") + "\n")


@contextlib.contextmanager
def progress(what: str, *, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A live progress bar on stderr while stdout is a terminal (`dtf wait`); elsewhere
    (a pipe, a CI log, ``--json``) nothing is drawn. Yields ``update(done, total)``."""
    if not (enabled and sys.stdout.isatty() and sys.stderr.isatty()):
        yield lambda done, total: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bar = Progress("[progress.description]{task.description}", BarColumn(),
                   MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), transient=True)
    task = bar.add_task(what, total=None)
    with bar:
        yield lambda done, total: bar.update(task, completed=done, total=total)
