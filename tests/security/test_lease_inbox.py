"""Insiders, part 2: a reader cannot aim a consumer at a worker's lease inbox, and a
consumer so aimed would not make the worker run anything again."""

from __future__ import annotations

from pathlib import Path

import nats.errors
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from agents.auth.errors import Forbidden
from agents.log.jetstream import ack_source
from agents.wire.client import ApiClient
from dtf_core import commands as cmds
from dtf_core import subjects
from dtf_core.spec import command_spec
from tests.security.insider import Insider

pytestmark = pytest.mark.anyio


def test_the_consumer_that_delivered_is_read_from_the_ack_subject() -> None:
    assert ack_source("$JS.ACK.DTF_EVENTS.worker-w1.1.10.3.1700000000.0") == (
        "DTF_EVENTS", "worker-w1")
    assert ack_source("$JS.ACK.dom.acc.DTF_EVENTS.rogue.1.10.3.1700000000.0.tok") == (
        "DTF_EVENTS", "rogue")
    assert ack_source("_INBOX.reader.x.y") is None and ack_source(None) is None


async def test_a_readers_consumer_aimed_at_a_workers_inbox_runs_nothing_again(
        insider: Insider, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = await insider.admin.submit([command_spec(
        ["/bin/sh", "-c", f"echo ran >> {runs}"])])
    rc, out = await insider.cli("wait", first.ids[0], "--timeout", "60")
    assert rc == 0, out
    credential = await insider.token("reader")
    reader = await insider.connect_as(credential)
    worker = (await insider.admin.workers())[0].id
    rogue = ConsumerConfig(deliver_subject=subjects.worker_inbox(worker) + ".lease.x",
                           deliver_policy=DeliverPolicy.ALL,
                           filter_subject=f"dtf.evt.task.*.leased.{worker}")
    # A reader may neither look at the worker's consumer (its deliver subject) nor create
    # one; the server refuses both. Nor will the api open one into another's inbox.
    with pytest.raises(nats.errors.TimeoutError):
        await reader.jetstream().consumer_info(
            subjects.EVENTS_STREAM, subjects.lease_consumer(worker), timeout=0.5)
    with pytest.raises(nats.errors.TimeoutError):
        await reader.jetstream().add_consumer(subjects.EVENTS_STREAM, rogue, timeout=0.5)
    with pytest.raises(Forbidden, match="own inbox"):
        await ApiClient(reader, credential=credential).open_tail(cmds.OpenTail(
            stream=subjects.EVENTS_STREAM, filters=[f"dtf.evt.task.*.leased.{worker}"],
            deliver=rogue.deliver_subject or ""))
    # Were there such consumers anyway (made here by the admin, who may), the worker would
    # still run each lease once.
    js = insider.admin_nc.jetstream()
    lease = await js.consumer_info(subjects.EVENTS_STREAM, subjects.lease_consumer(worker))
    inbox = lease.config.deliver_subject
    assert inbox and inbox.startswith(subjects.worker_inbox(worker))
    for _ in range(3):  # three rogue consumers, each delivering every lease again
        await js.add_consumer(subjects.EVENTS_STREAM, ConsumerConfig(
            deliver_subject=inbox, deliver_policy=DeliverPolicy.ALL,
            filter_subject=f"dtf.evt.task.*.leased.{worker}"))
    second = await insider.admin.submit([command_spec(["true"])])
    rc, out = await insider.cli("wait", second.ids[0], "--timeout", "60")
    assert rc == 0, out
    assert runs.read_text() == "ran\n"  # once, whatever the rogue consumers delivered
    await reader.close()
