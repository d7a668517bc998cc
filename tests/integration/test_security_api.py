"""The api agent authenticates every request and enforces the role table; the actor of
every event is the verified subject. (Server-side enforcement: tests/integration/natsauth.)"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agents.client import ApiClient
from agents.security.errors import Forbidden, Unauthenticated
from agents.security.keyring import Keyring
from agents.security.tokens import issue, new_token_id
from dtf_core import commands as cmds
from dtf_core.errors import NotFound, Refused
from dtf_core.events.auth import ApiKeyCreated, TokenIssued, TokenRevoked
from dtf_core.events.task import TaskSubmitted
from dtf_core.events.worker import Capabilities
from dtf_core.spec import TaskSpec
from dtf_core.task import TERMINAL, Report
from tests.integration.harness import Harness, stack

pytestmark = pytest.mark.anyio
NOOP = TaskSpec(type="noop")


def token(keyring: Keyring, role: str, sub: str = "alice", wid: str | None = None,
          ttl: float = 600, now: float | None = None) -> str:
    return issue(keyring, sub=sub, role=role, ttl=ttl, now=now or time.time(),
                 jti=new_token_id(), wid=wid)


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[tuple[Harness, Keyring]]:
    keyring = Keyring.create(tmp_path / "keys")
    async with stack(tmp_path, workers=0, keyring=keyring,
                     credential=token(keyring, "admin")) as h:
        yield h, keyring


def as_(h: Harness, credential: str | None) -> ApiClient:
    return ApiClient(h.nc, credential=credential)


async def test_no_or_bad_credential_is_refused(secured: tuple[Harness, Keyring],
                                               tmp_path: Path) -> None:
    h, keyring = secured
    other = Keyring.create(tmp_path / "other-keys")
    for cred in (None, "garbage", token(other, "admin"),
                 token(keyring, "admin", ttl=10, now=time.time() - 3600)):
        with pytest.raises(Unauthenticated):
            await as_(h, cred).status()
        with pytest.raises(Unauthenticated):
            await as_(h, cred).submit([NOOP])
    assert [e for _, e in await h.events()] == []


async def test_roles_are_enforced(secured: tuple[Harness, Keyring]) -> None:
    h, keyring = secured
    reader = as_(h, token(keyring, "reader"))
    manager = as_(h, token(keyring, "manager", sub="bob"))
    worker = as_(h, token(keyring, "worker", sub="w1", wid="w1"))
    await reader.status()
    for forbidden in (reader.submit([NOOP]), reader.cancel("t1"),
                      reader.issue_token("x", "admin", 60), worker.submit([NOOP]),
                      worker.status(), manager.issue_token("x", "admin", 60),
                      manager.call(cmds.ReportResults(reports=[]))):
        with pytest.raises(Forbidden):
            await forbidden
    res = await manager.submit([NOOP])
    with pytest.raises(Forbidden, match="scoped"):
        await worker.call(cmds.RegisterWorker(worker_id="w2", session="s", hostname="h",
                                              pid=1, slots=1, capabilities=Capabilities()))
    with pytest.raises(Forbidden, match="scoped"):
        await worker.call(cmds.ReportResults(reports=[
            Report(task_id=res.ids[0], kind="succeeded", fencing=1, worker_id="w2")]))
    await worker.call(cmds.RegisterWorker(worker_id="w1", session="s", hostname="h", pid=1,
                                          slots=1, capabilities=Capabilities()))


async def test_the_actor_is_the_verified_subject(secured: tuple[Harness, Keyring]) -> None:
    h, keyring = secured
    carol = as_(h, token(keyring, "manager", sub="carol"))
    await carol.call(cmds.SubmitTasks(tasks=[NOOP], actor="mallory"))
    submitted = [e for _, e in await h.events() if isinstance(e, TaskSubmitted)]
    assert [e.actor for e in submitted] == ["carol"]


async def test_issue_use_refresh_and_revoke_tokens(secured: tuple[Harness, Keyring]) -> None:
    h, _ = secured
    issued = await h.api.issue_token("dave", "reader", 600)
    dave = as_(h, issued["token"])
    await dave.status()
    fresh = await dave.refresh_token(600)
    assert fresh["jti"] != issued["jti"]
    await h.api.revoke_token(issued["jti"], "left the team")
    with pytest.raises(Unauthenticated, match="revoked"):
        await dave.status()
    await as_(h, fresh["token"]).status()  # revoking one token leaves the refreshed one
    with pytest.raises(NotFound):
        await h.api.revoke_token("no-such-token")
    events = [e for _, e in await h.events()]
    issued_ev = [e for e in events if isinstance(e, TokenIssued)]
    assert [(e.sub, e.role, e.actor) for e in issued_ev] == [
        ("dave", "reader", "alice"), ("dave", "reader", "dave")]
    assert [(e.auth_id, e.actor) for e in events if isinstance(e, TokenRevoked)] == [
        (issued["jti"], "alice")]


async def test_worker_api_key_is_hashed_and_works(secured: tuple[Harness, Keyring]) -> None:
    h, _ = secured
    created = await h.api.create_api_key("w9")
    key = created["key"]
    raw = b"".join(r.data for r in await h.log.read(["dtf.evt.>"]))
    assert key.encode() not in raw and key.split("_")[-1].encode() not in raw
    assert any(isinstance(e, ApiKeyCreated) for _, e in await h.events())
    await h.add_worker("w9", credential=key)
    res = await h.api.submit([NOOP])
    row = await h.wait_status(res.ids[0], TERMINAL)
    assert row["status"] == "succeeded" and row["worker_id"] == "w9"
    with pytest.raises(Forbidden, match="scoped"):
        await as_(h, key).call(cmds.StopWorker(worker_id="w1", session="s"))
    await h.api.revoke_api_key(created["key_id"])
    with pytest.raises(Unauthenticated, match="revoked"):
        await as_(h, key).call(cmds.StopWorker(worker_id="w9", session="s"))


async def test_signed_reports(secured: tuple[Harness, Keyring], tmp_path: Path) -> None:
    h, _ = secured
    created = await h.api.create_api_key("w5")
    worker = await h.add_worker("w5", credential=created["key"],
                                signing_key_dir=tmp_path / "worker-keys")
    assert (tmp_path / "worker-keys" / "w5.key").stat().st_mode & 0o777 == 0o600
    res = await h.api.submit([NOOP, NOOP])
    for task_id in res.ids:
        assert (await h.wait_status(task_id, TERMINAL))["status"] == "succeeded"
    other = await h.api.submit([TaskSpec(type="command", config={"argv": ["sleep", "30"]})])
    row = await h.wait_status(other.ids[0], {"running"})
    lease = next(seq for seq, e in await h.events(other.ids[0])
                 if type(e).__name__ == "TaskLeased")
    forged = [Report(task_id=row["id"], kind="succeeded", fencing=lease, worker_id="w5")]
    with pytest.raises(Refused, match="must be signed"):
        await h.api.call(cmds.ReportResults(reports=forged))
    with pytest.raises(Refused, match="bad signature"):
        await h.api.call(cmds.ReportResults(reports=forged, signature=b"x" * 64))
    assert (await h.api.tasks(ids=[row["id"]]))[0]["status"] == "running"
    assert worker.signing_key is not None


async def test_key_rotation_without_downtime(secured: tuple[Harness, Keyring]) -> None:
    h, keyring = secured
    old_kid = keyring.current_kid
    before = await h.api.issue_token("erin", "reader", 600)
    new_kid = (await h.api.rotate_key())["kid"]
    assert new_kid != old_kid
    after = await h.api.issue_token("erin", "reader", 600)
    await as_(h, before["token"]).status()  # signed by the old key: still valid
    await as_(h, after["token"]).status()
    with pytest.raises(Refused, match="rotate first"):
        await h.api.retire_key(new_kid)
    await h.api.retire_key(old_kid)
    with pytest.raises(Unauthenticated, match="retired"):
        await as_(h, before["token"]).status()
    await as_(h, after["token"]).status()
    with pytest.raises(Forbidden):
        await as_(h, after["token"]).rotate_key()
