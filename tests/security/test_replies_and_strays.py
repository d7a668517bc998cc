"""Insiders, part 1: an agent answers only into the requester's own inbox, and a message
that is not an event, on a task's subjects, never jams that task.

The attack: a logged-in reader names a reply subject that is not its inbox. The api's
answer used to be published there: onto ``$JS.API.STREAM.PURGE.DTF_LOGS`` it purged the
task output, onto ``dtf.evt.task.<id>.started`` it put junk on the task's own subject, and
every later report and cancel of that task failed its concurrency check for good."""

from __future__ import annotations

import json

import pytest

from dtf_core import commands as cmds
from dtf_core import subjects
from dtf_core.spec import command_spec
from tests.gates import Gate
from tests.security.insider import Insider

pytestmark = pytest.mark.anyio


async def test_a_reader_cannot_aim_the_apis_answer_anywhere(insider: Insider, tmp_path) -> None:  # type: ignore[no-untyped-def]
    gate = Gate(tmp_path / "gate")
    res = await insider.admin.submit([command_spec(gate.argv("print('output')"))])
    (task_id,) = res.ids
    credential = await insider.token("reader")
    reader = await insider.connect_as(credential)
    auth = {"Authorization": f"Bearer {credential}"}
    logs_before = (await insider.stream_state(subjects.LOGS_STREAM)).messages
    started_subject = f"dtf.evt.task.{task_id}.started"
    for target in ("$JS.API.STREAM.PURGE.DTF_LOGS", started_subject,
                   "$SYS.REQ.SERVER.PING", "$O.dtf-packs.M.x", "dtf.cmd.task.submit"):
        for subject, cmd in ((subjects.Q_STATUS, cmds.GetStatus()),
                             (subjects.Q_TASK, cmds.GetTask(task_id=task_id))):
            await reader.publish(subject, cmds.encode(cmd), reply=target, headers=auth)
    await reader.flush()
    # The same requests into its own inbox are answered (after the ones before them).
    for subject, cmd in ((subjects.Q_STATUS, cmds.GetStatus()),
                         (subjects.Q_TASK, cmds.GetTask(task_id=task_id))):
        answer = await reader.request(subject, cmds.encode(cmd), timeout=10, headers=auth)
        assert cmds.decode_reply(answer.data).ok
    assert await insider.junk_on("dtf.evt.>") == []  # no answer landed on the log
    assert (await insider.stream_state(subjects.LOGS_STREAM)).messages >= logs_before
    gate.open()
    rc, out = await insider.cli("wait", task_id, "--timeout", "60")
    assert rc == 0, out
    await reader.close()


async def test_a_stray_message_on_a_tasks_subject_never_jams_it(insider: Insider,
                                                                 tmp_path) -> None:  # type: ignore[no-untyped-def]
    """However junk gets onto a task's subjects (any redirected reply: a JetStream or
    system service's answer goes where the requester said), the task still ends, can be
    cancelled, and the audit stays clean."""
    gates = [Gate(tmp_path / "g1"), Gate(tmp_path / "g2")]
    res = await insider.admin.submit([command_spec(g.argv()) for g in gates])
    to_finish, to_cancel = res.ids
    js = insider.admin_nc.jetstream()
    for task_id in res.ids:
        for event in ("started", "leased.x", "succeeded"):
            await js.publish(f"dtf.evt.task.{task_id}.{event}", b'{"junk": true}')
    await js.publish("dtf.evt.lead.scheduler.claimed", b"\x00junk")  # leadership too
    rc, out = await insider.cli("cancel", to_cancel)
    assert rc == 0, out
    gates[0].open()
    gates[1].open()
    rc, out = await insider.cli("wait", to_finish, "--timeout", "60")
    assert rc == 0, out
    rc, shown = await insider.cli("task", to_cancel, "--json")
    assert json.loads(shown)["status"] == "cancelled", shown
    # New work is still placed: the scheduler's leadership was not jammed either.
    res = await insider.admin.submit([command_spec(["true"])])
    rc, out = await insider.cli("wait", res.ids[0], "--timeout", "60")
    assert rc == 0, out
    rc, audit = await insider.cli("audit", "verify", "--json")
    assert rc == 0, audit
    assert json.loads(audit)["clean"], audit
