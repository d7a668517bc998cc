"""The autoscaler's own role: given its token (scoped to one worker group by its ``wid``),
which commands pass and which are refused as forbidden, through the role table, the gate,
the plans that look at the board, a refreshed token, and what NATS lets it publish."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agents.auth.errors import Forbidden
from agents.auth.gate import Gate
from agents.auth.keyfiles import read_secret_file
from agents.auth.keyring import Keyring
from agents.auth.natsauth.permissions import for_role
from agents.auth.roles import (
    COMMAND_PERMISSIONS,
    ROLE_PERMISSIONS,
    Permission,
    Role,
    authorize,
    permission_for_command,
)
from agents.auth.server_auth import client_inbox_prefix
from agents.auth.tokens import Claims, issue, new_token_id, verify
from agents.control.auth_plans import plan_create_key, plan_issue, plan_refresh
from agents.control.bootstrap import mint
from agents.control.dispatch import Planner
from agents.control.scale_down import new_ids
from agents.host.autoscale_run import scope_of
from dtf_core import commands as cmds
from dtf_core.errors import InvalidInput
from dtf_core.events.auth import ApiKeyCreated, ApiKeyRevoked, TokenIssued
from dtf_core.events.worker import Capabilities, WorkerLost, WorkerRegistered, WorkerStopped
from dtf_core.replies import TokenGranted
from projections.board import Board

P = Permission
# Written out, not read from the table: a change that widens the role fails here.
ALLOWED = {"list_tasks", "get_task", "list_workers", "list_runs", "status", "explain_task",
           "open_tail", "manage_worker", "create_apikey", "refresh_token"}


def scaler(group: str | None = "local") -> Claims:
    return Claims(iss="dtf", aud="dtf-api", sub="agent-autoscaler", role=Role.AUTOSCALER,
                  iat=0, nbf=0, exp=1, jti="j", wid=group)


def registered(board: Board, seq: int, wid: str, group: str) -> None:
    board.apply(seq, WorkerRegistered(worker_id=wid, session="s", hostname="h", pid=1, slots=1,
                                      capabilities=Capabilities(group=group), at=1.0,
                                      actor=wid))


def test_the_autoscaler_holds_exactly_what_it_uses() -> None:
    assert ROLE_PERMISSIONS[Role.AUTOSCALER] == {P.QUERY_READ, P.WORKER_MANAGE,
                                                 P.WORKER_ENROLL, P.TOKEN_REFRESH}


@pytest.mark.parametrize("tag", sorted(COMMAND_PERMISSIONS))
def test_each_command_allowed_or_refused(tag: str) -> None:
    permission = permission_for_command(tag)
    worker_id = "local-auto-1" if tag == "create_apikey" else "w1"
    if tag in ALLOWED:
        authorize(scaler(), permission, worker_id=worker_id)
    else:
        with pytest.raises(Forbidden, match="role 'autoscaler' lacks permission"):
            authorize(scaler(), permission, worker_id=worker_id)


@pytest.mark.parametrize("tag", sorted(ALLOWED))
def test_a_token_that_names_no_group_may_do_nothing(tag: str) -> None:
    with pytest.raises(Forbidden, match="names no worker group"):
        authorize(scaler(None), permission_for_command(tag), worker_id="local-auto-1")


@pytest.mark.parametrize("worker_id", ["local-1", "gpu-auto-1", "local-auto-0", "local-auto-01",
                                       "local-auto-x", "local-auto-1x", "local-auto-",
                                       "xlocal-auto-1"])
def test_keys_only_for_the_ids_it_gives_its_own_workers(worker_id: str) -> None:
    gate = Gate(Board())
    with pytest.raises(Forbidden, match="creates keys only for its own workers"):
        gate.authorize(scaler(), cmds.CreateApiKey(worker_id=worker_id))
    gate.authorize(scaler("gpu" if worker_id.startswith("gpu") else "local"),
                   cmds.CreateApiKey(worker_id="gpu-auto-1" if worker_id.startswith("gpu")
                                     else "local-auto-12"))


def test_no_key_for_a_worker_that_may_still_run_and_a_new_key_revokes_the_old() -> None:
    board = Board()
    registered(board, 1, "local-auto-1", "local")  # alive
    registered(board, 2, "local-auto-2", "local")
    board.apply(3, WorkerLost(worker_id="local-auto-2", session="s", reason="silent",
                              last_seen=1.0, at=2.0, actor="recovery"))
    registered(board, 4, "local-auto-3", "local")
    board.apply(5, WorkerStopped(worker_id="local-auto-3", session="s", at=2.0,
                                 actor="local-auto-3"))
    old = plan_create_key(board, cmds.CreateApiKey(worker_id="local-auto-3"), now=3.0)
    board.apply(6, old.changes[0].events[0])
    for wid, status in (("local-auto-1", "alive"), ("local-auto-2", "lost")):
        with pytest.raises(Forbidden, match=f"is {status}"):
            plan_create_key(board, cmds.CreateApiKey(worker_id=wid), now=4.0, group="local")
    with pytest.raises(Forbidden, match="its own workers"):  # the plan checks the id too
        plan_create_key(board, cmds.CreateApiKey(worker_id="local-9"), now=4.0, group="local")
    plan = plan_create_key(board, cmds.CreateApiKey(worker_id="local-auto-3"), now=4.0,
                           group="local")
    events = [e for c in plan.changes for e in c.events]
    [revoked] = [e for e in events if isinstance(e, ApiKeyRevoked)]
    [created] = [e for e in events if isinstance(e, ApiKeyCreated)]
    assert revoked.auth_id == old.changes[0].events[0].auth_id
    assert created.worker_id == "local-auto-3" and revoked.auth_id in plan.keys
    fresh = plan_create_key(board, cmds.CreateApiKey(worker_id="local-auto-4"), now=4.0,
                            group="local")
    assert [type(e) for c in fresh.changes for e in c.events] == [ApiKeyCreated]


def test_it_drains_and_reopens_only_workers_of_its_group() -> None:
    board = Board()
    registered(board, 1, "local-auto-1", "local")
    registered(board, 2, "local-1", "")  # `dtf up`'s own worker: no group
    registered(board, 3, "gpu-auto-1", "gpu")
    planner = Planner(board, clock=lambda: 5.0, new_id=lambda: "x")
    for wid in ("local-1", "gpu-auto-1"):
        for action in ("drain", "uncordon"):
            with pytest.raises(Forbidden, match="not in group 'local'"):
                planner.plan(cmds.ManageWorker(worker_id=wid, action=action), scaler())  # type: ignore[arg-type]
    assert planner.plan(cmds.ManageWorker(worker_id="local-auto-1", action="drain"),
                        scaler()).changes
    # an admin (no group scope) may manage any
    assert planner.plan(cmds.ManageWorker(worker_id="local-1", action="drain"), None).changes


def test_its_refreshed_token_keeps_the_role_and_the_group(tmp_path: Path) -> None:
    keyring = Keyring.create(tmp_path / "keys")
    now = time.time()
    plan = plan_refresh(Board(), cmds.RefreshToken(ttl_s=600), scaler(), keyring=keyring,
                        now=now)
    granted = plan.reply()
    assert isinstance(granted, TokenGranted)
    claims = verify(granted.token, keyring, now=now)
    assert (claims.role, claims.wid, claims.sub) == (Role.AUTOSCALER, "local", "agent-autoscaler")
    with pytest.raises(Forbidden):
        authorize(claims, P.TASK_SUBMIT)
    with pytest.raises(Forbidden, match="its own workers"):
        authorize(claims, P.WORKER_ENROLL, worker_id="local-1")


def test_an_autoscaler_token_is_issued_only_with_its_group(tmp_path: Path) -> None:
    keyring = Keyring.create(tmp_path / "keys")
    with pytest.raises(InvalidInput, match="names the worker group"):
        plan_issue(Board(), cmds.IssueToken(sub="a", role="autoscaler"), keyring=keyring,
                   now=time.time())
    with pytest.raises(InvalidInput):
        plan_issue(Board(), cmds.IssueToken(sub="a", role="autoscaler", worker_id="a.b"),
                   keyring=keyring, now=time.time())
    plan = plan_issue(Board(), cmds.IssueToken(sub="a", role="autoscaler", worker_id="gpu"),
                      keyring=keyring, now=time.time())
    [event] = plan.changes[0].events
    assert isinstance(event, TokenIssued) and (event.role, event.wid) == ("autoscaler", "gpu")


def test_dtf_up_mints_the_autoscaler_its_own_role(tmp_path: Path) -> None:
    creds, events = mint(tmp_path, services=["control", "autoscaler"], workers=[],
                         autoscale_group="local")
    by_sub = {e.sub: e for e in events}
    assert (by_sub["agent-autoscaler"].role, by_sub["agent-autoscaler"].wid) == \
        ("autoscaler", "local")
    assert by_sub["agent-control"].role == "admin"
    token = read_secret_file(creds.files["agent-autoscaler"]).decode()
    keyring = Keyring.load(tmp_path / "keys")
    claims = verify(token, keyring, now=time.time())
    assert (claims.role, claims.wid) == (Role.AUTOSCALER, "local")
    assert client_inbox_prefix(token) == "_INBOX.autoscaler.local"


def test_nats_lets_it_publish_only_what_it_does() -> None:
    perms = for_role("autoscaler", "local")
    for subject in ("dtf.q.tail", "dtf.cmd.worker.manage", "dtf.cmd.auth.apikey_create",
                    "dtf.cmd.auth.refresh", "dtf.evt.scale.local.scale_requested",
                    "dtf.evt.scale.local.scale_done", "dtf.evt.lead.autoscaler-local.claimed",
                    "dtf.dlq.autoscaler-local", "$JS.FC.DTF_EVENTS.x.y",
                    "$JS.API.STREAM.INFO.DTF_EVENTS"):
        assert perms.may_publish(subject), subject
    for subject in ("dtf.cmd.submit", "dtf.cmd.cancel", "dtf.cmd.auth.issue",
                    "dtf.cmd.auth.key_rotate", "dtf.cmd.auth.revoke", "dtf.q.secrets",
                    "dtf.q.tasks", "dtf.evt.scale.gpu.scale_requested",
                    "dtf.evt.task.t1.submitted", "dtf.evt.worker.w1.registered",
                    "dtf.evt.auth.k1.apikey_created", "dtf.evt.lead.scheduler.claimed",
                    "dtf.evt.lead.autoscaler-gpu.claimed", "dtf.hb.w1", "dtf.dlq.api",
                    "$JS.API.CONSUMER.CREATE.DTF_EVENTS", "$JS.API.STREAM.MSG.GET.DTF_EVENTS",
                    "$JS.API.STREAM.CREATE.DTF_EVENTS", "_INBOX.x"):
        assert not perms.may_publish(subject), subject
    assert perms.subscribe == ("_INBOX.autoscaler.local.>",)
    assert perms.inbox_prefix == "_INBOX.autoscaler.local"


def test_the_ids_it_asks_keys_for_are_those_the_api_allows() -> None:
    board = Board()
    registered(board, 1, "local-auto-1", "local")
    registered(board, 2, "local-auto-2", "local")
    board.apply(3, WorkerLost(worker_id="local-auto-2", session="s", reason="silent",
                              last_seen=1.0, at=2.0, actor="recovery"))
    registered(board, 4, "local-auto-3", "local")
    board.apply(5, WorkerStopped(worker_id="local-auto-3", session="s", at=2.0,
                                 actor="local-auto-3"))
    ids = new_ids(board, "local", 2, taken=set())
    assert ids == ["local-auto-3", "local-auto-4"]  # neither the alive nor the lost one
    for wid in ids:
        plan_create_key(board, cmds.CreateApiKey(worker_id=wid), now=3.0, group="local")



def test_the_agent_refuses_a_credential_for_another_group(tmp_path: Path) -> None:
    keyring = Keyring.create(tmp_path / "keys")

    def token(role: str, wid: str | None) -> str:
        return issue(keyring, sub="a", role=role, ttl=60, now=time.time(), jti=new_token_id(),
                     wid=wid)

    assert scope_of(token("autoscaler", "gpu"), "gpu") is True  # narrow: no streams made
    assert scope_of(token("admin", None), "gpu") is False
    assert scope_of(None, "gpu") is False  # --insecure-dev
    with pytest.raises(InvalidInput, match="for worker group 'local', not 'gpu'"):
        scope_of(token("autoscaler", "local"), "gpu")
