"""The enroller (`dtf init --enroll`, a Kubernetes worker pod's first container): it may
create worker keys and nothing else, and only for a worker id that has neither registered
nor a key, so it cannot take over a worker that exists. What NATS lets it publish is as
narrow."""

from __future__ import annotations

import pytest

from agents.auth.errors import Forbidden
from agents.auth.natsauth.permissions import for_role
from agents.auth.roles import ROLE_PERMISSIONS, Permission, Role, permission_for_command
from agents.control.auth_plans import plan_create_key
from dtf_core import commands as cmds
from dtf_core.events.auth import ApiKeyCreated
from dtf_core.events.worker import Capabilities, WorkerRegistered
from projections.board import Board


def board_with_worker_and_key() -> Board:
    board = Board()
    board.apply(1, WorkerRegistered(worker_id="w1", session="s1", hostname="h", pid=1,
                                    slots=2, capabilities=Capabilities(cpu_count=2), at=1.0,
                                    actor="w1"))
    made = plan_create_key(board, cmds.CreateApiKey(worker_id="w2"), now=2.0)
    board.apply(2, made.changes[0].events[0])
    return board


def test_an_enroller_holds_one_permission_and_creating_a_key_needs_it() -> None:
    assert ROLE_PERMISSIONS[Role.ENROLLER] == {Permission.WORKER_ENROLL}
    assert permission_for_command("create_apikey") is Permission.WORKER_ENROLL
    assert Permission.WORKER_ENROLL in ROLE_PERMISSIONS[Role.ADMIN]
    assert all(Permission.WORKER_ENROLL not in ROLE_PERMISSIONS[r]
               for r in (Role.MANAGER, Role.WORKER, Role.READER))


@pytest.mark.parametrize("worker_id", ["w1", "w2"], ids=["registered", "has-a-key"])
def test_an_enroller_cannot_make_a_key_for_a_worker_that_exists(worker_id: str) -> None:
    board = board_with_worker_and_key()
    with pytest.raises(Forbidden, match="new worker ids only"):
        plan_create_key(board, cmds.CreateApiKey(worker_id=worker_id), now=3.0,
                        new_worker_only=True)
    plan_create_key(board, cmds.CreateApiKey(worker_id=worker_id), now=3.0)  # an admin may


def test_an_enroller_makes_a_key_for_a_new_worker() -> None:
    plan = plan_create_key(board_with_worker_and_key(), cmds.CreateApiKey(worker_id="pod-1"),
                           now=3.0, new_worker_only=True)
    [event] = plan.changes[0].events
    assert isinstance(event, ApiKeyCreated) and event.worker_id == "pod-1"


def test_nats_lets_an_enroller_ask_for_a_key_and_nothing_else() -> None:
    perms = for_role("enroller", "agent-enroll")
    assert perms.may_publish("dtf.cmd.auth.apikey_create")
    for subject in ("dtf.evt.task.t1.submitted", "dtf.cmd.submit", "dtf.q.tasks",
                    "dtf.cmd.auth.issue", "$JS.API.STREAM.INFO.DTF_EVENTS", "dtf.hb.w1"):
        assert not perms.may_publish(subject), subject
    assert perms.subscribe == (f"{perms.inbox_prefix}.>",)
