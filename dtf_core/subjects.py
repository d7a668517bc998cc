"""Subject names in one place. Every id is validated before it reaches a subject."""

from __future__ import annotations

from dtf_core.ids import validate_id

EVENTS_STREAM = "DTF_EVENTS"
HEARTBEATS_STREAM = "DTF_HEARTBEATS"
LOGS_STREAM = "DTF_LOGS"
DLQ_STREAM = "DTF_DLQ"
PACKS_BUCKET = "dtf-packs"  # object store: content-addressed code packs
ARTIFACTS_BUCKET = "dtf-artifacts"  # object store: reports and logs of runs
SNAPSHOTS_BUCKET = "dtf-snapshots"  # object store: the newest board snapshot

EVT = "dtf.evt"
ALL_EVENTS = "dtf.evt.>"
TASK_EVENTS = "dtf.evt.task.>"
WORKER_EVENTS = "dtf.evt.worker.>"
HEARTBEATS = "dtf.hb.>"
LOGS = "dtf.log.>"
DLQ = "dtf.dlq.>"

CMD_SUBMIT = "dtf.cmd.task.submit"
CMD_CANCEL = "dtf.cmd.task.cancel"
CMD_REPORT = "dtf.cmd.task.report"
CMD_REGISTER = "dtf.cmd.worker.register"
CMD_WORKER_STOP = "dtf.cmd.worker.stop"
CMD_WORKER_MANAGE = "dtf.cmd.worker.manage"
CMD_CAPABILITIES = "dtf.cmd.worker.capabilities"
CMD_IMPORT = "dtf.cmd.bench.import"  # results measured elsewhere (pytest-benchmark's JSON)
Q_TASKS = "dtf.q.tasks"
Q_TASK = "dtf.q.task"
Q_WORKERS = "dtf.q.workers"
Q_RUNS = "dtf.q.runs"
Q_STATUS = "dtf.q.status"
Q_PROJECTOR = "dtf.q.projector"
Q_EXPLAIN = "dtf.q.explain"
Q_SECRETS = "dtf.q.secrets"  # a leased task's secret environment, for its worker
Q_TAIL = "dtf.q.tail"  # open a consumer for a client (agents/log/tail.py)
Q_TEST_DURATIONS = "dtf.q.test_durations"
Q_FLAKY_TESTS = "dtf.q.flaky_tests"  # the projector: tests that both passed and failed
Q_RESULTS = "dtf.q.results"  # the projector: benchmark results, or a read-only SELECT
Q_TRENDS = "dtf.q.trends"  # the projector: change points, forecasts, comparisons, flaky


def task_subject(task_id: str, event_type: str, worker_id: str | None = None) -> str:
    validate_id(task_id, "task id")
    if worker_id is None:
        return f"{EVT}.task.{task_id}.{event_type}"
    return f"{EVT}.task.{task_id}.{event_type}.{validate_id(worker_id, 'worker id')}"


def task_filter(task_id: str) -> str:
    return f"{EVT}.task.{validate_id(task_id, 'task id')}.>"


def worker_subject(worker_id: str, event_type: str) -> str:
    return f"{EVT}.worker.{validate_id(worker_id, 'worker id')}.{event_type}"


def worker_filter(worker_id: str) -> str:
    return f"{EVT}.worker.{validate_id(worker_id, 'worker id')}.>"


def run_subject(run_id: str, event_type: str) -> str:
    return f"{EVT}.run.{validate_id(run_id, 'run id')}.{event_type}"


def auth_subject(auth_id: str, event_type: str) -> str:
    return f"{EVT}.auth.{validate_id(auth_id, 'auth id')}.{event_type}"


AUTH_EVENTS = "dtf.evt.auth.>"
# What the board folds: every aggregate but the per-test results, which only the projector
# and the run's client read.
STATE_EVENTS = ("dtf.evt.task.>", "dtf.evt.worker.>", "dtf.evt.run.>", "dtf.evt.auth.>",
                "dtf.evt.lead.>", "dtf.evt.scale.>")
SCALE_EVENTS = "dtf.evt.scale.>"


def scale_subject(group: str, event_type: str) -> str:
    return f"{EVT}.scale.{validate_id(group, 'worker group')}.{event_type}"


def scale_filter(group: str) -> str:
    return f"{EVT}.scale.{validate_id(group, 'worker group')}.>"


def lead_subject(role: str) -> str:
    return f"{EVT}.lead.{validate_id(role, 'role')}.claimed"


def lead_filter(role: str) -> str:
    return f"{EVT}.lead.{validate_id(role, 'role')}.>"


def tests_subject(run_id: str, task_id: str) -> str:
    return (f"{EVT}.tests.{validate_id(run_id, 'run id')}.reported."
            f"{validate_id(task_id, 'task id')}")


def bench_subject(import_id: str) -> str:
    return f"{EVT}.bench.{validate_id(import_id, 'import id')}.imported"


def bench_filter(import_id: str) -> str:
    return f"{EVT}.bench.{validate_id(import_id, 'import id')}.>"


def tests_filter(run_id: str) -> str:
    return f"{EVT}.tests.{validate_id(run_id, 'run id')}.>"


def run_filter(run_id: str) -> str:
    return f"{EVT}.run.{validate_id(run_id, 'run id')}.>"


def task_filters_after_submit(event_types: list[str], addressed: set[str]) -> list[str]:
    """Filters for every task event but ``submitted`` (always a task's first event)."""
    return [
        f"{EVT}.task.*.{t}.*" if t in addressed else f"{EVT}.task.*.{t}"
        for t in event_types
        if t != "submitted"
    ]


def lease_filters(worker_id: str) -> list[str]:
    """What a worker's durable consumer reads: its leases and cancel requests."""
    wid = validate_id(worker_id, "worker id")
    return [f"{EVT}.task.*.leased.{wid}", f"{EVT}.task.*.cancel_requested.{wid}"]


def worker_inbox(worker_id: str) -> str:
    """The only subjects a worker may subscribe to (its replies and its lease deliveries)."""
    return f"_INBOX.worker.{validate_id(worker_id, 'worker id')}"


def lease_delivery(worker_id: str, session: str) -> str:
    """Where the api's push consumer delivers one worker session's leases."""
    return f"{worker_inbox(worker_id)}.lease.{validate_id(session, 'session')}"


def lease_consumer(worker_id: str) -> str:
    return f"worker-{validate_id(worker_id, 'worker id')}"


def heartbeat_subject(worker_id: str) -> str:
    return f"dtf.hb.{validate_id(worker_id, 'worker id')}"


def log_subject(task_id: str, attempt: int, worker_id: str) -> str:
    """A task attempt's output, named by the worker that wrote it: the server lets a worker
    write only subjects ending in its own id, so output cannot be forged for another."""
    return (f"dtf.log.{validate_id(task_id, 'task id')}.{int(attempt)}."
            f"{validate_id(worker_id, 'worker id')}")


def log_filter(task_id: str) -> str:
    return f"dtf.log.{validate_id(task_id, 'task id')}.>"


def attempt_log_filter(task_id: str, attempt: int) -> str:
    return f"dtf.log.{validate_id(task_id, 'task id')}.{int(attempt)}.*"


def dlq_subject(agent: str) -> str:
    return f"dtf.dlq.{validate_id(agent, 'agent name')}"


def aggregate_of(subject: str) -> tuple[str, str, str]:
    """Split ``dtf.evt.<aggregate>.<id>.<type>[...]`` into (aggregate, id, type)."""
    parts = subject.split(".")
    if len(parts) < 5 or parts[0] != "dtf" or parts[1] != "evt":
        raise ValueError(f"not an event subject: {subject!r}")
    return parts[2], parts[3], parts[4]


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: ``*`` is one token, ``>`` the rest (one token or more)."""
    pat = pattern.split(".")
    sub = subject.split(".")
    for i, token in enumerate(pat):
        if token == ">":
            return len(sub) > i
        if i >= len(sub) or (token != "*" and token != sub[i]):
            return False
    return len(pat) == len(sub)
