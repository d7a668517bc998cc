"""Events of the task aggregate. Subjects: ``dtf.evt.task.<task_id>.<type>[.<worker_id>]``."""

from __future__ import annotations

import msgspec
from msgspec import Struct

from dtf_core.benchmarks import BenchResult
from dtf_core.spec import TaskSpec


class Placement(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Why a lease went where it went: the candidates, what filtered the others, the scores."""

    candidates: int = 0
    filtered: dict[str, str] = {}
    others_filtered: int = 0  # ruled out too, not named (a lease names at most 16)
    scores: dict[str, float] = {}
    policy: str = "priority"


class TaskEventBase(Struct, frozen=True, kw_only=True, tag_field="type", omit_defaults=True,
                    gc=False):
    task_id: str
    at: float
    actor: str


class TaskSubmitted(TaskEventBase, frozen=True, kw_only=True, tag="submitted"):
    spec: TaskSpec
    run_id: str | None = None


class TaskLeased(TaskEventBase, frozen=True, kw_only=True, tag="leased"):
    """The lease is the dispatch; its stream sequence is the fencing token.

    A lease whose ``submitted_by`` is set is also its task's submission (ADR 0018): the
    task's first event, written as one message when the task could be placed at once.
    It carries the spec, and ``submission_in`` gives the submission it stands for."""

    worker_id: str
    session: str
    attempt: int
    why: Placement | None = None
    spec: TaskSpec | None = None
    submitted_by: str = ""  # the submitter (the task's owner): this lease submits the task
    submitted_at: float = 0.0
    run_id: str | None = None


class TaskStarted(TaskEventBase, frozen=True, kw_only=True, tag="started"):
    attempt: int
    fencing: int
    worker_id: str
    pid: int | None = None


class AttemptOutcome(TaskEventBase, frozen=True, kw_only=True):
    """Fields every end of an attempt shares; ``fencing`` 0 means no lease was involved."""

    attempt: int = 0
    fencing: int = 0
    worker_id: str = ""
    exit_code: int | None = None
    duration_s: float = 0.0
    error: str = ""
    started_at: float | None = None
    max_rss_mb: float | None = None
    benchmark: BenchResult | None = None  # a benchmark attempt's measurements


class TaskSucceeded(AttemptOutcome, frozen=True, kw_only=True, tag="succeeded"):
    pass


class TaskFailed(AttemptOutcome, frozen=True, kw_only=True, tag="failed"):
    pass


class TaskTimedOut(AttemptOutcome, frozen=True, kw_only=True, tag="timed_out"):
    pass


class TaskCancelled(AttemptOutcome, frozen=True, kw_only=True, tag="cancelled"):
    pass


class TaskRequeued(AttemptOutcome, frozen=True, kw_only=True, tag="requeued"):
    """The attempt ended without a final verdict; another attempt may start at ``not_before``."""

    reason: str
    not_before: float = 0.0
    counted: bool = True  # spends the retry policy's budget
    lost: bool = False  # the attempt's worker was lost


class TaskCancelRequested(TaskEventBase, frozen=True, kw_only=True, tag="cancel_requested"):
    worker_id: str
    reason: str = ""


class ResultRefused(TaskEventBase, frozen=True, kw_only=True, tag="result_refused"):
    """A report under a stale or unknown lease: recorded, never applied."""

    fencing: int
    worker_id: str
    outcome: str
    reason: str


class TaskDeadlineMissed(TaskEventBase, frozen=True, kw_only=True, tag="deadline_missed"):
    """A flag, once per task: its deadline passed while it was still queued."""

    deadline: float
    waited_s: float


class TaskWaiting(TaskEventBase, frozen=True, kw_only=True, tag="waiting"):
    """Why a task has waited past the threshold; written again only when the reason
    changes (deduplicated), so a long wait costs a few events, not one per round."""

    reason: str  # a short code: no_worker, no_match, full, dependencies, backoff, quota, ...
    detail: str = ""
    waited_s: float = 0.0


def submission_in(event: TaskLeased) -> TaskSubmitted | None:
    """The submission a lease also is (ADR 0018), or None for a plain lease."""
    if not event.submitted_by or event.spec is None:
        return None
    return TaskSubmitted(task_id=event.task_id, at=event.submitted_at,
                         actor=event.submitted_by, spec=event.spec, run_id=event.run_id)


def with_submission(lease: TaskLeased, submitted: TaskSubmitted) -> TaskLeased:
    """``lease`` written as the task's first event: submission and lease in one."""
    if lease.task_id != submitted.task_id:
        raise ValueError("a lease can carry only its own task's submission")
    return msgspec.structs.replace(lease, spec=submitted.spec, submitted_by=submitted.actor,
                                   submitted_at=submitted.at, run_id=submitted.run_id)


TaskEvent = (
    TaskSubmitted
    | TaskLeased
    | TaskStarted
    | TaskSucceeded
    | TaskFailed
    | TaskTimedOut
    | TaskCancelled
    | TaskRequeued
    | TaskCancelRequested
    | ResultRefused
    | TaskDeadlineMissed
    | TaskWaiting
)

TERMINAL_TYPES: tuple[str, ...] = ("succeeded", "failed", "timed_out", "cancelled")
TERMINAL_EVENTS = (TaskSucceeded, TaskFailed, TaskTimedOut, TaskCancelled)
OUTCOME_EVENTS: dict[str, type[AttemptOutcome]] = {
    "succeeded": TaskSucceeded,
    "failed": TaskFailed,
    "timed_out": TaskTimedOut,
    "cancelled": TaskCancelled,
}
