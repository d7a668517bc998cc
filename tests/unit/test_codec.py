"""Event encoding round trips, and decoding that refuses anything but a matching event."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.history import result
from dtf_core.events import codec
from dtf_core.events.auth import (
    ApiKeyCreated,
    ApiKeyRevoked,
    SigningKeyAdded,
    SigningKeyRetired,
    TokenIssued,
    TokenRevoked,
)
from dtf_core.events.bench import BenchImported, ImportedResult
from dtf_core.events.codec import Event, UndecodableEvent, decode, encode, subject_of
from dtf_core.events.lead import LeadershipClaimed
from dtf_core.events.run import RunCreated
from dtf_core.events.scale import ScaleDone, ScaleRequested
from dtf_core.events.task import (
    Placement,
    ResultRefused,
    TaskCancelled,
    TaskCancelRequested,
    TaskDeadlineMissed,
    TaskFailed,
    TaskLeased,
    TaskRequeued,
    TaskStarted,
    TaskSucceeded,
    TaskTimedOut,
    TaskWaiting,
)
from dtf_core.events.tests import TestCase, TestsReported
from dtf_core.events.worker import (
    Capabilities,
    WorkerCapabilitiesChanged,
    WorkerLost,
    WorkerRegistered,
    WorkerSchedulingChanged,
    WorkerStopped,
)
from dtf_core.spec import parse_specs
from tests.unit.builders import submitted

A = {"at": 1.5, "actor": "alice"}
OUT = {"task_id": "t1", "attempt": 2, "fencing": 7, "worker_id": "w1", "exit_code": 1,
       "duration_s": 0.25, "error": "boom", "started_at": 1.0, "max_rss_mb": 3.5, **A}
SPEC = parse_specs(b'{"type": "command", "config": {"argv": ["ls"]}, "priority": 3}')[0]

EVENTS: list[tuple[Event, str]] = [
    (submitted(task_spec=SPEC), "dtf.evt.task.t1.submitted"),
    (TaskLeased(task_id="t1", worker_id="w1", session="s1", attempt=2,
                why=Placement(candidates=2, filtered={"w2": "no"}, scores={"w1": 0.5}), **A),
     "dtf.evt.task.t1.leased.w1"),
    (TaskStarted(task_id="t1", attempt=2, fencing=7, worker_id="w1", pid=9, **A),
     "dtf.evt.task.t1.started"),
    (TaskSucceeded(**OUT), "dtf.evt.task.t1.succeeded"),
    (TaskFailed(**OUT), "dtf.evt.task.t1.failed"),
    (TaskTimedOut(**OUT), "dtf.evt.task.t1.timed_out"),
    (TaskCancelled(**OUT), "dtf.evt.task.t1.cancelled"),
    (TaskRequeued(reason="failed", not_before=9.0, counted=False, **OUT),
     "dtf.evt.task.t1.requeued"),
    (TaskCancelRequested(task_id="t1", worker_id="w1", reason="user", **A),
     "dtf.evt.task.t1.cancel_requested.w1"),
    (ResultRefused(task_id="t1", fencing=3, worker_id="w2", outcome="succeeded", reason="stale",
                   **A), "dtf.evt.task.t1.result_refused"),
    (TaskDeadlineMissed(task_id="t1", deadline=5.0, waited_s=2.0, **A),
     "dtf.evt.task.t1.deadline_missed"),
    (TaskWaiting(task_id="t1", reason="no_match", detail="needs cuda", waited_s=31.0, **A),
     "dtf.evt.task.t1.waiting"),
    (WorkerRegistered(worker_id="w1", session="s1", hostname="h", pid=4, slots=2,
                      capabilities=Capabilities(cpu_count=4, tags=("x",), cuda_compute=8.0),
                      **A), "dtf.evt.worker.w1.registered"),
    (WorkerStopped(worker_id="w1", session="s1", reason="ctrl-c", **A),
     "dtf.evt.worker.w1.stopped"),
    (WorkerLost(worker_id="w1", session="s1", reason="silent", last_seen=1.0, **A),
     "dtf.evt.worker.w1.lost"),
    (WorkerSchedulingChanged(worker_id="w1", mode="draining", reason="maintenance", **A),
     "dtf.evt.worker.w1.scheduling"),
    (WorkerCapabilitiesChanged(worker_id="w1", session="s1",
                               capabilities=Capabilities(hardware=("cpu", "webgpu")), **A),
     "dtf.evt.worker.w1.capabilities"),
    (TokenIssued(auth_id="j1", sub="alice", role="reader", exp=9.0, **A),
     "dtf.evt.auth.j1.token_issued"),
    (TokenRevoked(auth_id="j1", reason="leaked", **A), "dtf.evt.auth.j1.token_revoked"),
    (ApiKeyCreated(auth_id="k1", worker_id="w1", scheme="scrypt", n=16384, r=8, p=1,
                   salt=b"s" * 16, hash=b"h" * 32, **A), "dtf.evt.auth.k1.apikey_created"),
    (ApiKeyRevoked(auth_id="k1", **A), "dtf.evt.auth.k1.apikey_revoked"),
    (SigningKeyAdded(auth_id="kid1", public_key=b"p" * 32, **A), "dtf.evt.auth.kid1.key_added"),
    (SigningKeyRetired(auth_id="kid1", **A), "dtf.evt.auth.kid1.key_retired"),
    (RunCreated(run_id="r1", task_ids=("t1", "t2"), name="nightly", **A),
     "dtf.evt.run.r1.created"),
    (LeadershipClaimed(role="scheduler", holder="s1-ab", term=3, expires_at=9.0, **A),
     "dtf.evt.lead.scheduler.claimed"),
    (TestsReported(run_id="r1", task_id="t1", worker_id="w1", attempt=1, fencing=7, batch=0,
                   cases=(TestCase(nodeid="tests/test_a.py::test_x[1]", outcome="passed",
                                   duration_s=0.01, reports="[]"),), **A),
     "dtf.evt.tests.r1.reported.t1"),
    (BenchImported(import_id="f00d", source="pytest-benchmark", run_id="r1", **A,
                   results=(ImportedResult(name="test_sort",
                                           result=result("m", np.array([0.1, 0.2]))),)),
     "dtf.evt.bench.f00d.imported"),
    (ScaleRequested(group="local", decision="d1", direction="up", current=0, target=2,
                    reason="3 queued", workers=("auto-1", "auto-2"), **A),
     "dtf.evt.scale.local.scale_requested"),
    (ScaleDone(group="local", decision="d1", ok=True, workers=("auto-1",), **A),
     "dtf.evt.scale.local.scale_done"),
]
IDS = [codec.event_type(e) for e, _ in EVENTS]


def test_every_event_type_is_covered() -> None:
    covered = {type(e) for e, _ in EVENTS}
    unions = (codec.Event,)
    members = {t for u in unions for t in u.__args__}  # type: ignore[attr-defined]
    assert members <= covered, members - covered


@pytest.mark.parametrize(("event", "subject"), EVENTS, ids=IDS)
def test_round_trip(event: Event, subject: str) -> None:
    assert subject_of(event) == subject
    assert decode(subject, encode(event)) == event


@pytest.mark.parametrize(("event", "subject"), EVENTS, ids=IDS)
def test_msg_id_is_deterministic(event: Event, subject: str) -> None:
    del subject
    again = msgspec.msgpack.decode(encode(event), type=type(event))
    assert codec.msg_id_of(event) == codec.msg_id_of(again)


def test_msg_ids_of_one_attempt_differ() -> None:
    events = [e for e, _ in EVENTS if not isinstance(e, WorkerRegistered | WorkerStopped
                                                     | WorkerLost | RunCreated)]
    ids = [codec.msg_id_of(e) for e in events]
    assert len(set(ids)) == len(ids), ids


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"\xc1", b"garbage", b"\x91\x01", msgspec.msgpack.encode({"type": "nope"}),
     msgspec.msgpack.encode({"type": "submitted", "task_id": "t1"}),
     msgspec.json.encode(submitted())],
)
def test_garbage_bytes_are_undecodable(data: bytes) -> None:
    with pytest.raises(UndecodableEvent):
        decode("dtf.evt.task.t1.submitted", data)


def test_a_body_whose_id_differs_from_the_subject_is_refused() -> None:
    with pytest.raises(UndecodableEvent, match="does not match"):
        decode("dtf.evt.task.t2.submitted", encode(submitted("t1")))


def test_a_body_whose_type_differs_from_the_subject_is_refused() -> None:
    with pytest.raises(UndecodableEvent, match="does not match"):
        decode("dtf.evt.task.t1.succeeded", encode(submitted("t1")))


@pytest.mark.parametrize(
    "subject",
    ["dtf.evt.job.t1.submitted", "dtf.evt.worker.t1.submitted", "dtf.evt.task.t1",
     "dtf.cmd.task.t1.submitted", "x.evt.task.t1.submitted", ""],
)
def test_a_subject_that_names_no_matching_aggregate_is_refused(subject: str) -> None:
    with pytest.raises(UndecodableEvent):
        decode(subject, encode(submitted("t1")))


def test_deep_nesting_is_undecodable_not_a_crash() -> None:
    deep = b"\x91" * 200_000 + b"\xc0"
    body = msgspec.msgpack.encode(
        {"type": "submitted", "task_id": "t1", "at": 1.0, "actor": "a",
         "spec": {"type": "noop", "config": {"k": None}}}
    )
    poisoned = body[: -1] + deep  # the config value None (0xc0) becomes a 200k-deep list
    with pytest.raises(UndecodableEvent):
        decode("dtf.evt.task.t1.submitted", poisoned)


# --- fuzzing: decode may only ever raise UndecodableEvent -------------------------------------

TOKENS = st.sampled_from(["dtf", "evt", "task", "worker", "run", "t1", "w1", "r1", "submitted",
                          "leased", "created", "registered", "lost", "", "*", ">"])
SUBJECTS = st.one_of(
    st.sampled_from([s for _, s in EVENTS]),
    st.lists(TOKENS, min_size=0, max_size=7).map(".".join),
    st.text(max_size=40),
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True), st.text(max_size=20), st.binary(max_size=20),
    st.sampled_from(["t1", "w1", "r1", "submitted", "leased", "noop", "command"]),
)
KEYS = st.sampled_from(["type", "task_id", "worker_id", "run_id", "at", "actor", "spec",
                        "session", "attempt", "fencing", "config", "argv", "task_ids",
                        "capabilities", "why", "x"])
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(KEYS, st.text(max_size=5)), inner,
                                            max_size=6)),
    max_leaves=12,
)
BODIES = st.dictionaries(KEYS, VALUES, max_size=8)


def check_decode(subject: str, data: bytes) -> None:
    try:
        event = decode(subject, data)
    except UndecodableEvent:
        return
    aggregate, agg_id, etype = subject.split(".")[2:5]
    # dtf.evt.lead.<role>.claimed, dtf.evt.tests.<run>.reported.<task>
    key = {"lead": "role", "tests": "run_id", "scale": "group",
           "bench": "import_id"}.get(aggregate, f"{aggregate}_id")
    assert getattr(event, key) == agg_id
    assert codec.event_type(event) == etype


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(subject=SUBJECTS, data=st.binary(max_size=200))
def test_fuzz_random_bytes(subject: str, data: bytes) -> None:
    check_decode(subject, data)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(subject=SUBJECTS, body=st.one_of(BODIES, VALUES))
def test_fuzz_random_structures(subject: str, body: Any) -> None:
    check_decode(subject, msgspec.msgpack.encode(body))
    check_decode(subject, msgspec.json.encode(body) if _json_safe(body) else b"{}")


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(min_value=0, max_value=len(EVENTS) - 1), data=st.data())
def test_fuzz_mutated_valid_events(index: int, data: st.DataObject) -> None:
    event, subject = EVENTS[index]
    raw = msgspec.msgpack.decode(encode(event))
    key = data.draw(st.sampled_from(sorted(raw)))
    raw[key] = data.draw(VALUES)
    check_decode(subject, msgspec.msgpack.encode(raw))
    blob = bytearray(encode(event))
    pos = data.draw(st.integers(min_value=0, max_value=len(blob) - 1))
    blob[pos] = data.draw(st.integers(min_value=0, max_value=255))
    check_decode(subject, bytes(blob[: data.draw(st.integers(min_value=0, max_value=len(blob)))]))


def _json_safe(body: Any) -> bool:
    try:
        msgspec.json.encode(body)
    except (TypeError, ValueError):
        return False
    return True


def test_what_users_read_keeps_every_field_though_the_log_omits_defaults() -> None:
    from dtf_core.events.codec import to_plain
    from dtf_core.events.task import TaskFailed, TaskSubmitted
    from dtf_core.spec import TaskSpec

    failed = TaskFailed(task_id="t1", at=1.0, actor="w1", fencing=3, worker_id="w1")
    assert b"exit_code" not in encode(failed)  # defaults stay out of the log
    plain = to_plain(failed)
    assert plain["type"] == "failed" and plain["exit_code"] is None and plain["error"] == ""
    sub = to_plain(TaskSubmitted(task_id="t1", at=1.0, actor="a", spec=TaskSpec(type="noop")))
    assert sub["spec"]["timeout_seconds"] is None
    assert sub["spec"]["requirements"]["hardware"] == []
    assert sub["spec"]["retry_policy"]["max_retries"] == 0


def test_a_session_that_registers_again_is_a_new_event() -> None:
    """A worker declared lost and heard again registers again in its session: that
    registration, and a later loss, are not dropped as duplicates of the first ones."""
    for kind in (WorkerRegistered, WorkerLost):
        first = next(e for e, _ in EVENTS if isinstance(e, kind))
        again = msgspec.structs.replace(first, at=first.at + 60)
        assert codec.msg_id_of(first) != codec.msg_id_of(again)
