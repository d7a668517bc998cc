"""Read-only answers from the folded board (and the log, for a task's history)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from typing import Any

import msgspec
from nats.aio.client import Client

from agents.control.runs import list_runs
from agents.log.consumer import open_consumer
from agents.log.port import EventLog
from agents.wire.messages import Heartbeat, decode_heartbeat
from dtf_core import commands as cmds
from dtf_core import subjects
from dtf_core import task as task_agg
from dtf_core.errors import DTFError, InvalidInput, NotFound
from dtf_core.events.codec import UndecodableEvent, decode, event_type, to_plain, unpacked
from dtf_core.events.task import TaskEventBase, TaskLeased
from dtf_core.explain import explain, scaling_lines
from dtf_core.ids import validate_id
from dtf_core.replies import (
    Explanation,
    HistoryEntry,
    LeaderClaim,
    Status,
    TailOpened,
    TaskDetail,
    TaskSummary,
    WorkerLoad,
    WorkerRow,
)
from dtf_core.task import TERMINAL, TaskState
from dtf_core.worker import WorkerState
from projections.board import Board

MAX_LIST = 10_000


def _summary_fields(t: TaskState) -> dict[str, Any]:
    return {
        "id": t.task_id, "type": t.spec.type, "name": t.spec.name, "status": t.status,
        "priority": t.spec.priority, "attempt": t.attempt, "worker_id": t.worker_id or None,
        "run_id": t.run_id, "submitted_at": t.submitted_at, "started_at": t.started_at,
        "finished_at": t.finished_at, "exit_code": t.exit_code, "error": t.error,
        "last_seq": t.last_seq, "group": t.spec.requirements.worker_group,
    }


def task_summary(t: TaskState) -> TaskSummary:
    return TaskSummary(**_summary_fields(t))


async def answer(board: Board, log: EventLog, nc: Client, cmd: cmds.Command,
                 viewer: tuple[str, str] | None = None) -> object:
    """``viewer``: the verified (subject, role) asking (None: a stack without auth)."""
    match cmd:
        case cmds.ListTasks():
            return list_tasks(board, cmd)
        case cmds.GetTask():
            return await get_task(board, log, cmd.task_id, viewer)
        case cmds.ListWorkers():
            return await list_workers(board, nc, cmd.heartbeats)
        case cmds.ListRuns():
            return list_runs(board, cmd)
        case cmds.GetStatus():
            out = status(board)
            if cmd.state_hash:  # computed on the loop that folds: the hash is at last_seq
                out.state_hash = board.state_hash()
            return out
        case cmds.ExplainTask():
            return await explain_task(board, log, cmd.task_id)
        case cmds.OpenTail():
            return await open_tail(nc, cmd)
    raise InvalidInput(f"{type(cmd).__name__} is a command: send it to dtf.cmd.*")


def compacted_summary(task_id: str, status: str) -> TaskSummary:
    """A task that ended long ago keeps only its status on the board (`dtf task ID` folds
    its whole history from the log; DuckDB has its rows)."""
    return TaskSummary(id=task_id, type=None, name="", status=status, priority=None,
                       attempt=None, worker_id=None, run_id=None, submitted_at=None,
                       started_at=None, finished_at=None, exit_code=None, error="",
                       last_seq=None, compacted=True)


async def explain_task(board: Board, log: EventLog, task_id: str) -> Explanation:
    task = board.tasks.get(validate_id(task_id, "task id"))
    if task is None and task_id in board.finished:
        return Explanation(task_id=task_id, status=board.finished[task_id],
                           lines=[f"Task {task_id} ended {board.finished[task_id]} long ago; "
                                  f"`dtf audit task {task_id}` shows its history."])
    if task is None:
        raise NotFound(f"unknown task {task_id}")
    lease = None
    for rec in reversed(await log.read([subjects.task_filter(task_id)])):
        event = decode(rec.subject, rec.data)
        if isinstance(event, TaskLeased):
            lease = event
            break
    key = (-task.spec.priority, task.last_seq)
    ahead = sum(1 for t in board.tasks.values()
                if t.status == "queued" and (-t.spec.priority, t.last_seq) < key)
    leases = {w: len(ids) for w, ids in board.leases_by_worker.items()}
    deps = {d: board.task_or_tombstone(d) for d in (*task.spec.dependencies,
                                                     *task.spec.soft_dependencies)}
    now = time.time()
    lines = explain(task, lease, board.workers, leases, deps, ahead, now)
    lines += scaling_lines(board.scaling, since=task.submitted_at,
                           until=lease.at if lease is not None else now, now=now,
                           queued=task.status == "queued")
    return Explanation(task_id=task_id, status=task.status, lines=lines)


def list_tasks(board: Board, cmd: cmds.ListTasks) -> list[TaskSummary]:
    if cmd.ids is not None:
        missing = [i for i in cmd.ids if not board.known(validate_id(i, "task id"))]
        if missing:
            raise NotFound(f"unknown task {', '.join(missing[:5])}")
        return [task_summary(board.tasks[i]) if i in board.tasks
                else compacted_summary(i, board.finished[i]) for i in cmd.ids]
    if not 1 <= cmd.limit <= MAX_LIST:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIST}")
    if cmd.run_id is not None:
        validate_id(cmd.run_id, "run id")
    before = cmd.before_seq if cmd.before_seq is not None else board.last_seq + 1
    out: list[TaskSummary] = []
    if cmd.after_compacted is None:  # newest change first: the board keeps that order
        for t in reversed(board.tasks.values()):
            if t.last_seq < before and (cmd.status is None or t.status == cmd.status) \
                    and (cmd.run_id is None or t.run_id == cmd.run_id):
                out.append(task_summary(t))
                if len(out) >= cmd.limit:
                    break
    if len(out) < cmd.limit and (cmd.status is None or cmd.status in TERMINAL):
        out += _compacted_rows(board, cmd, cmd.limit - len(out))  # older than every row
    return out


def _compacted_rows(board: Board, cmd: cmds.ListTasks, room: int) -> list[TaskSummary]:
    if cmd.run_id is not None:
        run = board.runs.get(cmd.run_id)
        ids: Iterable[str] = run.task_ids if run is not None else ()
    else:
        ids = reversed(board.finished)  # the most recently compacted first
    found = []
    after = cmd.after_compacted
    for task_id in ids:
        if after is not None:  # the previous page ended there
            after = None if task_id == after else after
            continue
        status = board.finished.get(task_id)
        if status is not None and (cmd.status is None or status == cmd.status):
            found.append(compacted_summary(task_id, status))
            if len(found) >= room:
                break
    return found


HIDDEN = "(hidden: only its submitter and admins see values)"
SEALED = "(sealed: only the worker running it can open it)"


def shown_spec(spec: dict[str, Any], owner: str, viewer: tuple[str, str] | None) -> dict[str, Any]:
    """A task's spec as ``viewer`` may read it: environment values (often secrets) are
    shown to the task's submitter and to admins only; others see the names. Secret
    environment values are shown to nobody (the log holds them sealed)."""
    config = spec.get("config") or {}
    if config.get("secret_env"):
        config = {**config, "secret_env": dict.fromkeys(config["secret_env"], SEALED)}
    env = config.get("env")
    if env and viewer is not None and viewer[1] != "admin" and viewer[0] != owner:
        config = {**config, "env": dict.fromkeys(env, HIDDEN)}
    return {**spec, "config": config} if config else spec


async def get_task(board: Board, log: EventLog, task_id: str,
                   viewer: tuple[str, str] | None = None) -> TaskDetail:
    validate_id(task_id, "task id")
    state = board.tasks.get(task_id)
    if state is None and task_id not in board.finished:
        raise NotFound(f"unknown task {task_id}")
    history: list[HistoryEntry] = []
    folded: TaskState | None = None  # a compacted task: its state folded from its events
    for rec in await log.read([subjects.task_filter(task_id)]):
        try:
            ev = decode(rec.subject, rec.data)
        except UndecodableEvent:
            history.append(HistoryEntry(type="undecodable", seq=rec.seq, time=rec.time))
            continue
        if state is None and isinstance(ev, TaskEventBase):
            with contextlib.suppress(DTFError):  # an event before its submission: skipped
                folded = task_agg.evolve(folded, ev, rec.seq)
        for shown in unpacked(ev):  # a lease that is the submission too: both (ADR 0018)
            body = to_plain(shown)
            body.pop("spec", None)
            history.append(HistoryEntry(type=event_type(shown), seq=rec.seq, time=rec.time,
                                        actor=shown.actor, data=body))
    state = state or folded
    if state is None:
        raise NotFound(f"task {task_id} has no events left in the log")
    return TaskDetail(**_summary_fields(state),
                      spec=shown_spec(to_plain(state.spec), state.owner, viewer),
                      lease_seq=state.lease_seq, history=history)


async def list_workers(board: Board, nc: Client, heartbeats: bool = True) -> list[WorkerRow]:
    js = nc.jetstream() if heartbeats else None
    out = []
    for w in sorted(board.workers.values(), key=lambda w: w.worker_id):
        out.append(await _worker_row(board, js, w))
    return out


async def _worker_row(board: Board, js: Any, w: WorkerState) -> WorkerRow:
    """``js`` None: without the newest heartbeat (last seen: its last event)."""
    last_seen = w.last_event_at
    load = None
    beat = await _newest_beat(js, w) if js is not None else None
    if beat is not None:
        last_seen = max(last_seen, beat.at)
        load = WorkerLoad(cpu_percent=beat.cpu_percent, memory_percent=beat.memory_percent,
                          rss_mb=beat.rss_mb, report_resends=beat.report_resends)
    return WorkerRow(
        id=w.worker_id, hostname=w.hostname, pid=w.pid, session=w.session, state=w.status,
        scheduling=w.scheduling, slots=w.slots,
        running=len(board.leases_by_worker.get(w.worker_id, ())),
        capabilities=w.capabilities, last_seen=last_seen, load=load)


async def _newest_beat(js: Any, w: WorkerState) -> Heartbeat | None:
    """The worker's newest heartbeat from its current session, if any."""
    try:
        msg = await js.get_last_msg(
            subjects.HEARTBEATS_STREAM, subjects.heartbeat_subject(w.worker_id))
        beat = decode_heartbeat(msg.data)
    except Exception:  # no heartbeat yet: registration time is the last sign of life
        return None
    return beat if beat.session == w.session else None


def status(board: Board) -> Status:
    counts = {k: v for k, v in board.counts.items() if v}
    alive = sum(1 for w in board.workers.values() if w.status == "alive")
    return Status(
        last_seq=board.last_seq, tasks=counts, workers_alive=alive, workers=len(board.workers),
        leaders={role: LeaderClaim(holder=c.holder, term=c.term, expires_at=c.expires_at)
                 for role, c in sorted(board.leaders.items())})


TAIL_STREAMS = {subjects.EVENTS_STREAM: "dtf.evt.", subjects.LOGS_STREAM: "dtf.log."}
MAX_TAIL_FILTERS = 1024


def _tail_filter(stream: str, subject: str) -> str:
    tokens = subject.split(".")
    if (not subject.startswith(TAIL_STREAMS[stream]) or len(subject) > 512
            or any(not t or any(c in t for c in " \t\r\n") for t in tokens)
            or ">" in tokens[:-1] or any(">" in t and t != ">" for t in tokens)
            or any("*" in t and t != "*" for t in tokens)):
        raise InvalidInput(f"invalid filter {subject[:100]!r} for {stream}: a subject "
                           f"under {TAIL_STREAMS[stream]}")
    return subject


async def open_tail(nc: Client, cmd: cmds.OpenTail) -> TailOpened:
    """An ephemeral push consumer for a client (agents/log/tail.py), delivering into
    ``cmd.deliver``: the api has checked that it is the requester's own inbox."""
    if cmd.stream not in TAIL_STREAMS:
        raise InvalidInput(f"no tail of {cmd.stream!r}: one of {', '.join(TAIL_STREAMS)}")
    if not 1 <= len(cmd.filters) <= MAX_TAIL_FILTERS:
        raise InvalidInput(f"a tail has 1 to {MAX_TAIL_FILTERS} filters")
    filters = [_tail_filter(cmd.stream, f) for f in cmd.filters]
    if cmd.start_seq < 1:
        raise InvalidInput("a tail starts at seq 1 or later")
    return await open_consumer(nc, msgspec.structs.replace(cmd, filters=filters))
