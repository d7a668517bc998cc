"""Insiders, part 6: another user's task environment (often credentials) is not shown to
readers; its submitter and admins see it. A secret environment value is in nobody's view
and never in the log in clear."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.auth.errors import Forbidden
from agents.control.queries import SEALED
from agents.log.jetstream import JetStreamLog
from agents.wire.client import ApiClient
from dtf_core import commands as cmds
from dtf_core.errors import Refused
from tests.gates import Gate
from tests.security.insider import Insider

pytestmark = pytest.mark.anyio


async def test_env_values_are_shown_to_the_submitter_and_admins_only(
        insider: Insider) -> None:
    alice = await insider.token("manager", sub="alice")
    rc, out = await insider.cli("submit", "--env", "AWS_SECRET_ACCESS_KEY=s3cr3t", "--",
                                "true", token=alice)
    assert rc == 0, out
    task_id = out.strip()
    seen = {}
    for who, token in (("alice", alice), ("admin", None),
                       ("reader", await insider.token("reader", sub="bob")),
                       ("other manager", await insider.token("manager", sub="carol"))):
        rc, shown = await insider.cli("task", task_id, "--json", token=token)
        assert rc == 0, shown
        seen[who] = json.loads(shown)["spec"]["config"]["env"]["AWS_SECRET_ACCESS_KEY"]
    assert seen["alice"] == seen["admin"] == "s3cr3t"
    assert "s3cr3t" not in seen["reader"] and "s3cr3t" not in seen["other manager"]


async def test_a_secret_env_value_never_enters_the_log_and_only_the_lease_holder_opens_it(
        insider: Insider, tmp_path: Path) -> None:
    """`dtf submit --secret-env NAME`: the value comes from the submitter's environment, the
    log holds it sealed, nobody's `dtf task` shows it, and the api opens it only for the
    worker holding the task's live lease."""
    secret = "hunter2-" + "x" * 20
    alice = await insider.token("manager", sub="alice")
    out_file = tmp_path / "seen"
    gate = Gate(tmp_path / "gate")
    script = f"import os; open({str(out_file)!r}, 'w').write(os.environ['DEPLOY_TOKEN'])"
    rc, out = await insider.cli("submit", "--secret-env", "DEPLOY_TOKEN", "--",
                                *gate.argv(script), token=alice,
                                extra_env={"DEPLOY_TOKEN": secret})
    assert rc == 0, out
    task_id = out.strip()
    worker = (await insider.admin.workers())[0].id
    # Another worker (for itself, or in the name of the real one): refused, whatever the
    # fencing token, as it holds no lease of the task.
    mallory = await insider.token("worker", sub="w-mallory", worker_id="w-mallory")
    nc = await insider.connect_as(mallory, worker_id="w-mallory")
    api = ApiClient(nc, credential=mallory)
    last = (await insider.admin.task(task_id)).last_seq
    for who in ("w-mallory", worker):
        for fencing in range(1, last + 1):
            with pytest.raises((Forbidden, Refused)):
                await api.call(cmds.GetSecrets(worker_id=who, task_id=task_id,
                                               fencing=fencing))
    await nc.close()
    gate.open()
    rc, out = await insider.cli("wait", task_id, "--timeout", "60")
    assert rc == 0, out
    assert out_file.read_text() == secret  # the task saw the value
    raw = b"".join(r.data for r in await JetStreamLog(insider.admin_nc).read(["dtf.evt.>"]))
    assert secret.encode() not in raw
    for token in (alice, None):
        rc, shown = await insider.cli("task", task_id, "--json", token=token)
        assert rc == 0 and secret not in shown, shown
        assert json.loads(shown)["spec"]["config"]["secret_env"] == {
            "DEPLOY_TOKEN": SEALED}
    rc, out = await insider.cli("submit", "--secret-env", "NOT_SET_ANYWHERE", "--", "true",
                                token=alice)
    assert rc == 2 and "NOT_SET_ANYWHERE is not set in your environment" in out, out
