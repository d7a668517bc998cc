"""Turning commands into appends: decide against the board, then describe what to write.

A Plan is a list of Changes (the events of one aggregate, appended with one optimistic
concurrency check) and a function that builds the reply once they are written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from agents.auth.errors import Forbidden
from agents.control.report_auth import ReportKey, check_report_auth
from agents.log.commit import Change, task_change
from dtf_core import subjects
from dtf_core import task as task_agg
from dtf_core import worker as worker_agg
from dtf_core.commands import (
    CancelTask,
    ManageWorker,
    RegisterWorker,
    ReportOutcome,
    ReportResults,
    StopWorker,
    SubmitResult,
    SubmitTasks,
    TestBatch,
    UpdateCapabilities,
)
from dtf_core.dag import find_cycle
from dtf_core.errors import InvalidInput, NotFound, Refused
from dtf_core.events.codec import Event
from dtf_core.events.run import RunCreated
from dtf_core.events.task import ResultRefused
from dtf_core.events.tests import TestsReported
from dtf_core.ids import child_id, task_id_for_key, validate_id
from dtf_core.replies import CancelResult, Registered, SchedulingChanged, WorkerAck
from dtf_core.spec import TaskSpec, all_dependencies, validate_spec
from dtf_core.task import TaskState
from projections.board import Board

MAX_TASKS_PER_SUBMIT = 10_000


@dataclass
class Plan:
    changes: list[Change]
    reply: Callable[[], object]
    keys: set[str] = field(default_factory=set)


def _task_ids(cmd: SubmitTasks, new_id: Callable[[], str]) -> list[str]:
    ids: list[str] = []
    base = None
    for i, spec in enumerate(cmd.tasks):
        if spec.id is not None:
            ids.append(validate_id(spec.id, "task id"))
        elif spec.idempotency_key is not None:
            ids.append(task_id_for_key(spec.idempotency_key))
        else:
            base = base or new_id()
            ids.append(child_id(base, i))
    if len(set(ids)) != len(ids):
        raise InvalidInput("the submission names the same task id twice")
    return ids


def _as_sent(task_id: str, spec: TaskSpec) -> TaskSpec:
    return spec


def plan_submit(
    board: Board, cmd: SubmitTasks, *, now: float, new_id: Callable[[], str],
    seal: Callable[[str, TaskSpec], TaskSpec] = _as_sent,
) -> Plan:
    """``seal``: the spec as the log keeps it (secret values sealed by the api)."""
    if not cmd.tasks:
        raise InvalidInput("nothing to submit")
    if len(cmd.tasks) > MAX_TASKS_PER_SUBMIT:
        raise InvalidInput(f"at most {MAX_TASKS_PER_SUBMIT} tasks per submit request")
    specs = [validate_spec(s) for s in cmd.tasks]
    ids = _task_ids(cmd, new_id)
    specs = [seal(task_id, spec) for task_id, spec in zip(ids, specs, strict=True)]
    _check_dependencies(board, ids, specs)
    changes: list[Change] = []
    for task_id, spec in zip(ids, specs, strict=True):
        if task_id in board.finished:
            continue  # it ended long ago (compacted): submitting it again is a no-op
        existing = board.tasks.get(task_id)
        if existing is not None and existing.spec != spec:
            raise Refused(f"task {task_id} already exists with a different spec")
        events = task_agg.decide_submit(
            existing, task_id, spec, run_id=cmd.run_id, now=now, actor=cmd.actor
        )
        if events:
            changes.append(task_change(board, task_id, list(events)))
    if cmd.run_id is not None and cmd.run_id not in board.runs:
        validate_id(cmd.run_id, "run id")
        run = RunCreated(
            run_id=cmd.run_id, task_ids=tuple(ids), name=cmd.run_name, at=now, actor=cmd.actor
        )
        changes.append(Change([run], board.expect("run", cmd.run_id, 0),
                              subjects.run_filter(cmd.run_id)))
    created = sum(1 for c in changes if not isinstance(c.events[0], RunCreated))
    return Plan(
        changes,
        lambda: SubmitResult(ids=ids, run_id=cmd.run_id, created=created),
        keys=set(ids),
    )


def _check_dependencies(board: Board, ids: list[str], specs: list[TaskSpec]) -> None:
    in_batch = set(ids)
    edges: dict[str, Iterable[str]] = {}
    for task_id, spec in zip(ids, specs, strict=True):
        for dep in all_dependencies(spec):
            if dep not in in_batch and not board.known(dep):
                raise InvalidInput(f"task {task_id} depends on unknown task {dep}")
        edges[task_id] = [d for d in all_dependencies(spec) if d in in_batch]
    cycle = find_cycle(edges)
    if cycle:
        raise InvalidInput("dependency cycle: " + " -> ".join(cycle))


def plan_cancel(board: Board, cmd: CancelTask, *, now: float) -> Plan:
    validate_id(cmd.task_id, "task id")
    state = board.tasks.get(cmd.task_id)
    if state is None and cmd.task_id in board.finished:
        status = board.finished[cmd.task_id]
        return Plan([], lambda: CancelResult(id=cmd.task_id, status=status),
                    keys={cmd.task_id})
    if state is None:
        raise NotFound(f"unknown task {cmd.task_id}")
    events = task_agg.decide_cancel(state, now=now, actor=cmd.actor, reason=cmd.reason)
    changes = [task_change(board, cmd.task_id, list(events))] if events else []

    def reply() -> CancelResult:
        return CancelResult(id=cmd.task_id, status=board.tasks[cmd.task_id].status)

    return Plan(changes, reply, keys={cmd.task_id})


def plan_report(board: Board, cmd: ReportResults, *, now: float,
                report_key: ReportKey | None = None) -> Plan:
    """Decide each report in order; several reports on one task (``started`` then
    ``succeeded``, sent together) are decided one after the other, and appended together."""
    check_report_auth(board, cmd, report_key)
    outcomes: list[ReportOutcome] = []
    tests = [tests_change(board, batch, now=now, actor=cmd.actor, outcomes=outcomes)
             for batch in cmd.tests]
    pending: dict[str, tuple[TaskState, list[Event]]] = {}
    for report in cmd.reports:
        state, events = pending.get(report.task_id) or (board.tasks.get(report.task_id), [])
        if state is None:
            done = board.finished.get(report.task_id)
            outcomes.append(ReportOutcome(
                task_id=report.task_id, applied=False,
                reason=f"task is already {done}" if done else "unknown task"))
            continue
        decided = task_agg.decide_report(state, report, now=now, actor=cmd.actor)
        for ev in decided:  # a scratch fold, so the next report sees this one's effect
            state = task_agg.evolve(state, ev, state.last_seq + 1)
        pending[report.task_id] = (state, [*events, *decided])
        refused = next((e for e in decided if isinstance(e, ResultRefused)), None)
        outcomes.append(ReportOutcome(task_id=report.task_id, applied=refused is None,
                                      reason=refused.reason if refused else ""))
    changes = [c for c in tests if c is not None]
    changes += [task_change(board, task_id, events)
                for task_id, (_, events) in pending.items() if events]
    return Plan(changes, lambda: [o for o in outcomes if not o.applied], keys=set(pending))


def tests_change(board: Board, batch: TestBatch, *, now: float, actor: str,
                 outcomes: list[ReportOutcome]) -> Change | None:
    """Per-test results are written only under the task's live lease (fencing), like any
    report; they need no concurrency check of their own (each batch has its own id)."""
    state = board.tasks.get(batch.task_id)
    reason = ""
    if state is None:
        reason = (f"task is already {board.finished[batch.task_id]}"
                  if batch.task_id in board.finished else "unknown task")
    elif state.spec.type != "test":
        reason = "not a test task"
    elif (state.lease_seq != batch.fencing or state.worker_id != batch.worker_id
          or state.terminal):
        reason = "stale lease: the results of another attempt are not recorded"
    elif state.run_id is None:
        reason = "a test task needs a run"
    if reason or state is None or state.run_id is None:
        outcomes.append(ReportOutcome(task_id=batch.task_id, applied=False, reason=reason))
        return None
    event = TestsReported(run_id=state.run_id, task_id=batch.task_id, at=now, actor=actor,
                          worker_id=batch.worker_id, attempt=batch.attempt,
                          fencing=batch.fencing, batch=batch.batch, cases=tuple(batch.cases))
    return Change([event], None, None)


def plan_register(board: Board, cmd: RegisterWorker, *, now: float,
                  report_key: ReportKey | None = None) -> Plan:
    wid = validate_id(cmd.worker_id, "worker id")
    validate_id(cmd.session, "session")
    if not 1 <= cmd.slots <= 4096:
        raise InvalidInput("slots must be between 1 and 4096")
    if cmd.heartbeat_interval is not None and not 0.05 <= cmd.heartbeat_interval <= 3600:
        raise InvalidInput("heartbeat_interval takes 0.05 to 3600 seconds")
    events = worker_agg.decide_register(
        worker_id=wid,
        session=cmd.session,
        hostname=cmd.hostname[:255],
        pid=cmd.pid,
        slots=cmd.slots,
        capabilities=cmd.capabilities,
        now=now,
        actor=cmd.actor,
        signing_key=cmd.signing_key,
        heartbeat_interval=cmd.heartbeat_interval,
    )
    current = board.workers.get(wid)
    change = Change(list(events), board.expect("worker", wid, current.last_seq if current else 0),
                    subjects.worker_filter(wid))
    def reply() -> Registered:
        return Registered(worker_id=wid, session=cmd.session, seq=board.workers[wid].last_seq,
                          report_key=report_key(wid, cmd.session) if report_key else None)

    return Plan([change], reply, keys={wid})


def plan_capabilities(board: Board, cmd: UpdateCapabilities, *, now: float) -> Plan:
    wid = validate_id(cmd.worker_id, "worker id")
    current = board.workers.get(wid)
    if current is None:
        raise NotFound(f"unknown worker {wid}")
    events = worker_agg.decide_capabilities(current, session=cmd.session,
                                            capabilities=cmd.capabilities, now=now,
                                            actor=cmd.actor)
    changes = [Change(list(events), board.expect("worker", wid, current.last_seq),
                      subjects.worker_filter(wid))]
    return Plan(changes if events else [], lambda: WorkerAck(worker_id=wid), keys={wid})


def plan_stop_worker(board: Board, cmd: StopWorker, *, now: float) -> Plan:
    wid = validate_id(cmd.worker_id, "worker id")
    current = board.workers.get(wid)
    if current is None:
        raise NotFound(f"unknown worker {wid}")
    events = worker_agg.decide_stop(current, session=cmd.session, now=now, actor=cmd.actor)
    changes = [Change(list(events), board.expect("worker", wid, current.last_seq),
                      subjects.worker_filter(wid))]
    return Plan(changes if events else [], lambda: WorkerAck(worker_id=wid), keys={wid})


def plan_manage_worker(board: Board, cmd: ManageWorker, *, now: float,
                       group: str | None = None) -> Plan:
    """Cordon, drain or uncordon. Draining also requeues the worker's leases that have not
    started (migration); running ones finish where they are. ``group`` (an autoscaler of
    that group asks): only a worker of that group."""
    wid = validate_id(cmd.worker_id, "worker id")
    current = board.workers.get(wid)
    if current is None:
        raise NotFound(f"unknown worker {wid}")
    if group is not None and current.capabilities.group != group:
        raise Forbidden(f"forbidden: worker {wid!r} is not in group {group!r}, the only "
                        "group its autoscaler may manage")
    mode = {"cordon": "cordoned", "drain": "draining", "uncordon": "open"}[cmd.action]
    reason = cmd.reason or f"{cmd.action} by {cmd.actor}"
    events = worker_agg.decide_scheduling(current, mode, reason=reason, now=now,  # type: ignore[arg-type]
                                          actor=cmd.actor)
    changes = [Change(list(events), board.expect("worker", wid, current.last_seq),
                      subjects.worker_filter(wid))] if events \
        else []
    moved: list[str] = []
    if cmd.action == "drain":
        for task_id in sorted(board.leases_by_worker.get(wid, ())):
            t = board.tasks[task_id]
            if t.status != "leased":
                continue
            requeue = task_agg.decide_lease_lost(t, reason=f"migrated off draining worker {wid}",
                                                 now=now, actor=cmd.actor, clean_stop=True)
            if requeue:
                changes.append(task_change(board, task_id, list(requeue)))
                moved.append(task_id)
    return Plan(changes, lambda: SchedulingChanged(worker_id=wid, scheduling=mode,  # type: ignore[arg-type]
                                                   migrated=moved),
                keys={wid, *moved})
