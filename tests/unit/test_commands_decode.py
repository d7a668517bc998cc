"""Commands arrive as untrusted bytes: decoding either yields a Command or a msgspec error."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtf_core import commands as cmds
from dtf_core.events.worker import Capabilities
from dtf_core.spec import TaskSpec
from dtf_core.task import Report

COMMANDS: list[cmds.Command] = [
    cmds.SubmitTasks(tasks=[TaskSpec(type="noop")], run_id="r1", run_name="n", actor="alice"),
    cmds.CancelTask(task_id="t1"),
    cmds.ReportResults(reports=[Report(task_id="t1", kind="succeeded", fencing=2,
                                       worker_id="w1", exit_code=0)]),
    cmds.RegisterWorker(worker_id="w1", session="s1", hostname="h", pid=1, slots=2,
                        capabilities=Capabilities(cpu_count=2)),
    cmds.StopWorker(worker_id="w1", session="s1"),
    cmds.ListTasks(status="queued", limit=5),
    cmds.GetTask(task_id="t1"),
    cmds.ListWorkers(),
    cmds.GetStatus(),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_round_trip(command: cmds.Command) -> None:
    assert cmds.decode_command(cmds.encode(command)) == command


def test_reply_round_trip() -> None:
    reply = cmds.Reply(ok=False, error="no such task", code="not_found")
    assert cmds.decode_reply(cmds.encode(reply)) == reply


def test_deep_nesting_is_a_decode_error() -> None:
    body = msgspec.msgpack.encode(
        {"cmd": "submit", "tasks": [{"type": "noop", "config": {"k": None}}]}
    )
    with pytest.raises(msgspec.DecodeError):
        cmds.decode_command(body[:-1] + b"\x91" * 200_000 + b"\xc0")


def check(data: bytes) -> None:
    try:
        command = cmds.decode_command(data)
    except msgspec.DecodeError:  # ValidationError is a DecodeError
        return
    assert isinstance(command, cmds.CommandBase)


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(), st.text(max_size=10), st.binary(max_size=10),
    st.sampled_from(["submit", "cancel", "report", "register", "stop_worker", "status", "noop",
                     "command", "succeeded", "t1"]),
)
KEYS = st.sampled_from(["cmd", "actor", "tasks", "task_id", "reports", "kind", "fencing",
                        "worker_id", "type", "config", "argv", "capabilities", "limit", "x"])
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.one_of(KEYS, st.text(max_size=4)), inner,
                                            max_size=5)),
    max_leaves=12,
)


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data: bytes) -> None:
    check(data)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.dictionaries(KEYS, VALUES, max_size=6), VALUES))
def test_fuzz_random_structures(body: Any) -> None:
    check(msgspec.msgpack.encode(body))


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(min_value=0, max_value=len(COMMANDS) - 1), data=st.data())
def test_fuzz_mutated_commands(index: int, data: st.DataObject) -> None:
    raw = msgspec.msgpack.decode(cmds.encode(COMMANDS[index]))
    raw[data.draw(st.sampled_from(sorted(raw)))] = data.draw(VALUES)
    check(msgspec.msgpack.encode(raw))
