"""Encoding of events (msgpack) and decoding routed by the subject's aggregate token.

One decoder per aggregate union, built once. Evolution is additive: new fields get defaults.
A breaking change gets a new tag and an upcaster here.
"""

from __future__ import annotations

import typing
from typing import Any

import msgspec

from dtf_core import subjects
from dtf_core.errors import InvalidInput
from dtf_core.events.auth import AuthEvent, AuthEventBase
from dtf_core.events.bench import BenchEvent, BenchImported
from dtf_core.events.lead import LeadershipClaimed, LeadEvent
from dtf_core.events.run import RunCreated, RunEvent
from dtf_core.events.scale import ScaleEvent, ScaleEventBase
from dtf_core.events.task import (
    ResultRefused,
    TaskCancelRequested,
    TaskEvent,
    TaskEventBase,
    TaskLeased,
    TaskSubmitted,
    submission_in,
)
from dtf_core.events.tests import TestsEvent, TestsReported
from dtf_core.events.worker import (
    WorkerCapabilitiesChanged,
    WorkerEvent,
    WorkerLost,
    WorkerRegistered,
    WorkerSchedulingChanged,
)
from dtf_core.ids import is_valid_token

Event = (TaskEvent | WorkerEvent | RunEvent | AuthEvent | TestsEvent | LeadEvent | BenchEvent
         | ScaleEvent)
SCHEMA_VERSION = "1"

_encoder = msgspec.msgpack.Encoder()
_decoders: dict[str, msgspec.msgpack.Decoder[Event]] = {
    "task": msgspec.msgpack.Decoder(TaskEvent),
    "worker": msgspec.msgpack.Decoder(WorkerEvent),
    "run": msgspec.msgpack.Decoder(RunEvent),
    "auth": msgspec.msgpack.Decoder(AuthEvent),
    "tests": msgspec.msgpack.Decoder(TestsEvent),
    "lead": msgspec.msgpack.Decoder(LeadEvent),
    "bench": msgspec.msgpack.Decoder(BenchEvent),
    "scale": msgspec.msgpack.Decoder(ScaleEvent),
}


class UndecodableEvent(ValueError):
    """A message on the event stream that is not a valid event: it goes to a dead letter."""


def unpacked(event: Event) -> tuple[Event, ...]:
    """What users read for one event: a lease that is also the submission (ADR 0018) is
    shown as the two events it stands for, ``submitted`` then ``leased`` at one sequence,
    so a task's history reads the same whichever way it was written. For display only: a
    fold takes the lease whole (it skips a second event at one sequence)."""
    if not isinstance(event, TaskLeased) or (submitted := submission_in(event)) is None:
        return (event,)
    return submitted, msgspec.structs.replace(event, submitted_by="", submitted_at=0.0,
                                              run_id=None)


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


def event_type(event: Event) -> str:
    return type(event).__struct_config__.tag  # type: ignore[return-value]


_WITH_WORKER = (TaskLeased, TaskCancelRequested)  # task events addressed to a worker


def subject_of(event: Event) -> str:
    """The subject an event is appended on; the aggregate id is always in it."""
    etype = event_type(event)
    if isinstance(event, _WITH_WORKER):
        return subjects.task_subject(event.task_id, etype, event.worker_id)
    if isinstance(event, RunCreated):
        return subjects.run_subject(event.run_id, etype)
    if isinstance(event, TestsReported):
        return subjects.tests_subject(event.run_id, event.task_id)
    if isinstance(event, LeadershipClaimed):
        return subjects.lead_subject(event.role)
    if isinstance(event, BenchImported):
        return subjects.bench_subject(event.import_id)
    if isinstance(event, AuthEventBase):
        return subjects.auth_subject(event.auth_id, etype)
    if isinstance(event, ScaleEventBase):
        return subjects.scale_subject(event.group, etype)
    if hasattr(event, "task_id"):
        return subjects.task_subject(event.task_id, etype)
    return subjects.worker_subject(event.worker_id, etype)


def decode(subject: str, data: bytes) -> Event:
    """Decode an event, checking that its body agrees with its subject."""
    if subject.startswith(_TASK_PREFIX):  # nearly all of the log: no split, one compare
        try:
            event = _task_decoder.decode(data)
        except (ValueError, RecursionError, msgspec.DecodeError) as exc:
            raise UndecodableEvent(f"undecodable event on {subject!r}: {exc}") from None
        if not _task_agrees(event, subject):
            raise UndecodableEvent(f"event body does not match its subject {subject!r}")
        return event
    try:
        parts = subject.split(".")
        if len(parts) < 5 or parts[0] != "dtf" or parts[1] != "evt":
            raise ValueError("not an event subject")
        event = _decoders[parts[2]].decode(data)
    except (KeyError, ValueError, RecursionError, msgspec.DecodeError) as exc:
        raise UndecodableEvent(f"undecodable event on {subject!r}: {exc}") from None
    try:
        agrees = subject_of(event) == subject
    except InvalidInput:
        agrees = False
    if not agrees:
        raise UndecodableEvent(f"event body does not match its subject {subject!r}")
    return event


_TASK_PREFIX = f"{subjects.EVT}.task."
_task_decoder = _decoders["task"]
# task event class -> its type token, and whether its subject ends in the worker id
_TASK_SHAPES: dict[type, tuple[str, bool]] = {
    cls: (cls.__struct_config__.tag, cls in _WITH_WORKER)
    for cls in typing.get_args(TaskEvent)
}


def _task_agrees(event: Event, subject: str) -> bool:
    """Does a task event belong on ``subject``? The subject it would be built on, compared
    whole; ids checked against a memo of valid ones (a subject token has no dots, but may
    hold what an id may not)."""
    tag, with_worker = _TASK_SHAPES[type(event)]
    task_id: str = event.task_id  # type: ignore[union-attr]
    if with_worker:
        worker_id: str = event.worker_id  # type: ignore[union-attr]
        if (subject != f"{_TASK_PREFIX}{task_id}.{tag}.{worker_id}"
                or not is_valid_token(worker_id)):
            return False
    elif subject != f"{_TASK_PREFIX}{task_id}.{tag}":
        return False
    return is_valid_token(task_id)


def to_plain(value: Any) -> Any:
    """``msgspec.to_builtins`` with every field, defaults included: events and specs omit
    their defaults in the log (a third of the bytes to decode), but what users read (the
    api, `dtf task`, audits) keeps the same keys whatever the values."""
    if isinstance(value, msgspec.Struct):
        config = value.__struct_config__
        out = {} if config.tag_field is None else {config.tag_field: config.tag}
        for name in value.__struct_fields__:
            out[name] = to_plain(getattr(value, name))
        return out
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return msgspec.to_builtins(value)


def msg_id_of(event: Event) -> str:
    """A deterministic idempotency key per event: a resend is dropped by the server's
    duplicate window instead of being applied twice."""
    etype = event_type(event)
    match event:
        case TaskLeased(submitted_by=by) if by:  # also the submission (ADR 0018):
            return f"{event.task_id}.submitted"  # a resent submission is known either way
        case TaskLeased():
            return f"{event.task_id}.leased.{event.attempt}.{event.worker_id}.{event.session}"
        case TaskCancelRequested():
            return f"{event.task_id}.cancel_requested.{event.worker_id}.{event.at}"
        case RunCreated():
            return f"run.{event.run_id}.created"
        case TestsReported():
            return f"tests.{event.task_id}.{event.fencing}.{event.batch}"
        case BenchImported():
            return f"bench.{event.import_id}.imported"
        case LeadershipClaimed():
            return f"lead.{event.role}.{event.term}.{event.holder}.{event.at}"
        case AuthEventBase():
            return f"auth.{event.auth_id}.{etype}"
        case ScaleEventBase():
            return f"scale.{event.group}.{event.decision}.{etype}"
    if isinstance(event, TaskEventBase):
        fencing = getattr(event, "fencing", None)
        if isinstance(event, ResultRefused):
            return f"{event.task_id}.refused.{event.fencing}.{event.outcome}.{event.at}"
        if fencing:
            return f"{event.task_id}.{etype}.{fencing}"
        if isinstance(event, TaskSubmitted):
            return f"{event.task_id}.submitted"
        return f"{event.task_id}.{etype}.{event.at}"
    if isinstance(event, WorkerSchedulingChanged):
        return f"worker.{event.worker_id}.scheduling.{event.mode}.{event.at}"
    if isinstance(event, WorkerCapabilitiesChanged):
        return f"worker.{event.worker_id}.capabilities.{event.session}.{event.at}"
    session = getattr(event, "session", "")
    if isinstance(event, WorkerRegistered | WorkerLost):  # again in a session: it rejoined
        return f"worker.{event.worker_id}.{etype}.{session}.{event.at}"
    return f"worker.{event.worker_id}.{etype}.{session}"
