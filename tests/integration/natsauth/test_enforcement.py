"""The nats-server, not DTF code, refuses what a role may not publish or subscribe to.

Each client gets its permissions from the auth callout; a forbidden publish comes back as
an asynchronous -ERR ("Permissions Violation for Publish to ...") and never reaches a
subscriber, which the tests check with an admin subscriber and an allowed marker message.
"""

from __future__ import annotations

import contextlib
import json

import anyio
import nats.errors
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from agents.auth.natsauth.callout import AUTH_SUBJECT
from agents.control import queries
from agents.log import jetstream as jetstream_log
from agents.log import tail as tail_module
from agents.nats.lease_consumer import open_lease_consumer
from dtf_core import commands as cmds
from dtf_core import subjects
from dtf_core.replies import TailOpened
from tests.integration.natsauth.harness import WAIT_S, AuthedServer, harness

pytestmark = pytest.mark.anyio

W1_MARKER = "dtf.hb.w1"
Q_MARKER = subjects.Q_STATUS


def violation(subject: str) -> str:
    return f'permissions violation for publish to "{subject}"'


@pytest.mark.parametrize("subject", [
    "dtf.hb.w2",  # another worker's heartbeat
    "dtf.evt.task.x.submitted",  # events are written by the api alone
    subjects.CMD_SUBMIT,
    "dtf.q.status",  # workers do not query
    "$JS.ACK.DTF_EVENTS.worker-w2.1.1.1.1.0",  # another worker's consumer
    "dtf.log.t-1.1.w2",  # output in another worker's name
    "dtf.log.t-1.1",
])
async def test_worker_publish_denied(authed_server: AuthedServer, subject: str) -> None:
    async with harness(authed_server) as h:
        w1, rec = await h.connect("worker-w1")
        assert not await h.delivered(w1, subject, W1_MARKER)
        await rec.wait_error(violation(subject))
        assert w1.is_connected  # a violation costs the message, not the connection


@pytest.mark.parametrize("subject", [
    "dtf.hb.w1", subjects.CMD_REPORT, subjects.CMD_REGISTER, subjects.CMD_WORKER_STOP,
    "dtf.log.t-1.1.w1",
])
async def test_worker_publish_allowed(authed_server: AuthedServer, subject: str) -> None:
    async with harness(authed_server) as h:
        w1, rec = await h.connect("worker-w1")
        assert await h.delivered(w1, subject, W1_MARKER)
        assert rec.errors == []


async def test_worker_cannot_delete_the_event_stream(authed_server: AuthedServer) -> None:
    async with harness(authed_server) as h:
        w1, rec = await h.connect("worker-w1")
        subject = f"$JS.API.STREAM.DELETE.{subjects.EVENTS_STREAM}"
        with pytest.raises(nats.errors.TimeoutError):
            await w1.request(subject, b"", timeout=0.5)
        await rec.wait_error(violation(subject))
        info = await h.admin.jetstream().stream_info(subjects.EVENTS_STREAM)
        assert info.config.name == subjects.EVENTS_STREAM


async def test_worker_uses_the_consumer_the_api_opened(authed_server: AuthedServer) -> None:
    """What agents/worker/agent.py does: bind to durable ``worker-<id>``, which the api opened at
    registration with the worker's lease filters, receive a lease and ack it."""
    async with harness(authed_server) as h:
        w1, rec = await h.connect("worker-w1")
        js, admin_js = w1.jetstream(), h.admin.jetstream()
        last = (await admin_js.stream_info(subjects.EVENTS_STREAM)).state.last_seq
        await open_lease_consumer(admin_js, "w1", "s1", last)
        info = await js.consumer_info(subjects.EVENTS_STREAM, "worker-w1")
        sub = await js.subscribe_bind(subjects.EVENTS_STREAM, info.config, "worker-w1",
                                      manual_ack=True)
        await admin_js.publish(subjects.task_subject("t-0", "leased", "w2"), b"{}")
        ack = await admin_js.publish(subjects.task_subject("t-1", "leased", "w1"), b"{}")
        msg = await sub.next_msg(timeout=WAIT_S)
        assert msg.metadata.sequence.stream == ack.seq  # not w2's lease
        await msg.ack_sync(timeout=WAIT_S)
        info = await admin_js.consumer_info(subjects.EVENTS_STREAM, "worker-w1")
        assert info.ack_floor.stream_seq == ack.seq
        assert rec.errors == []


@pytest.mark.parametrize("name", ["worker-w1", "worker-w2", "spy"])
async def test_worker_cannot_create_or_delete_consumers(authed_server: AuthedServer,
                                                        name: str) -> None:
    """A consumer a worker could create would have a filter of its choosing: dtf.evt.> would
    read every event. The create request never reaches JetStream, even for its own name."""
    async with harness(authed_server) as h:
        w1, rec = await h.connect("worker-w1")
        js, admin_js = w1.jetstream(), h.admin.jetstream()
        with contextlib.suppress(NotFoundError):  # the server is shared by the tests
            await admin_js.delete_consumer(subjects.EVENTS_STREAM, name)
        cfg = ConsumerConfig(durable_name=name, filter_subject="dtf.evt.>",
                             deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT)
        with pytest.raises(nats.errors.TimeoutError):
            await js.add_consumer(subjects.EVENTS_STREAM, cfg, timeout=0.5)
        await rec.wait_error('permissions violation for publish to "$JS.API.CONSUMER.')
        body = json.dumps({"stream_name": subjects.EVENTS_STREAM,
                           "config": cfg.as_dict()}).encode()
        for form in (f"CREATE.{subjects.EVENTS_STREAM}.{name}",
                     f"CREATE.{subjects.EVENTS_STREAM}.{name}.dtf.evt.>",
                     f"DURABLE.CREATE.{subjects.EVENTS_STREAM}.{name}"):
            subject = f"$JS.API.CONSUMER.{form}"
            with pytest.raises(nats.errors.TimeoutError):
                await w1.request(subject, body, timeout=0.5)
            await rec.wait_error(violation(subject))
        with pytest.raises(NotFoundError):
            await admin_js.consumer_info(subjects.EVENTS_STREAM, name)
        await open_lease_consumer(admin_js, "w1", "s1", 0)
        delete = f"$JS.API.CONSUMER.DELETE.{subjects.EVENTS_STREAM}.worker-w1"
        with pytest.raises(nats.errors.TimeoutError):
            await w1.request(delete, b"", timeout=0.5)
        await rec.wait_error(violation(delete))
        assert (await admin_js.consumer_info(subjects.EVENTS_STREAM, "worker-w1")).name


async def test_subscriptions_are_confined_to_the_own_inbox(authed_server: AuthedServer) -> None:
    async with harness(authed_server) as h:
        w1, rec = await h.connect("worker-w1")
        for subject in ["_INBOX.reader.r1.>", "dtf.evt.>", AUTH_SUBJECT, "_INBOX.>"]:
            await w1.subscribe(subject)
            await rec.wait_error(f'permissions violation for subscription to "{subject}"')
        mine = await w1.subscribe("_INBOX.worker.w1.mine")
        assert await h.delivered(w1, W1_MARKER, W1_MARKER)  # w1's SUB is in force now
        await h.admin.publish("_INBOX.worker.w1.mine", b"reply")
        assert (await mine.next_msg(timeout=WAIT_S)).data == b"reply"
        assert not any("_INBOX.worker.w1.mine" in e for e in rec.errors)


async def test_the_agents_publish_only_what_they_write(authed_server: AuthedServer) -> None:
    """`dtf up`'s agents hold admin tokens, but their publish rights are what they write:
    events, JetStream calls, answers into inboxes; never a worker's heartbeats or a task's
    output (a bug or a confused answer could otherwise forge them)."""
    async with harness(authed_server) as h:
        agent, rec = await h.connect("agent")
        for allowed in ["dtf.evt.task.x.submitted", subjects.Q_PROJECTOR, "_INBOX.reader.r1.x"]:
            assert await h.delivered(agent, allowed, Q_MARKER), allowed
        assert rec.errors == []
        for denied in ["dtf.hb.w1", "dtf.log.t1.1.w1", "anything.else"]:
            assert not await h.delivered(agent, denied, Q_MARKER), denied
            await rec.wait_error(violation(denied))


async def test_reader(authed_server: AuthedServer) -> None:
    async with harness(authed_server) as h:
        reader, rec = await h.connect("reader")
        assert not await h.delivered(reader, subjects.CMD_SUBMIT, Q_MARKER)
        await rec.wait_error(violation(subjects.CMD_SUBMIT))
        assert await h.delivered(reader, subjects.Q_TASKS, Q_MARKER)


async def test_manager(authed_server: AuthedServer) -> None:
    async with harness(authed_server) as h:
        manager, rec = await h.connect("manager")
        for allowed in [subjects.CMD_SUBMIT, subjects.CMD_CANCEL, subjects.CMD_WORKER_STOP]:
            assert await h.delivered(manager, allowed, Q_MARKER)
        assert rec.errors == []
        for denied in ["dtf.evt.task.x.submitted", subjects.CMD_REPORT, "dtf.hb.w1"]:
            assert not await h.delivered(manager, denied, Q_MARKER)
            await rec.wait_error(violation(denied))


async def test_the_server_holds_the_callouts_verdict(authed_server: AuthedServer) -> None:
    """$SYS.REQ.USER.INFO: the account the client landed in and the permissions it has."""
    async with harness(authed_server) as h:
        w1, _ = await h.connect("worker-w1")
        reply = await w1.request("$SYS.REQ.USER.INFO", b"", timeout=WAIT_S)
        data = json.loads(reply.data)["data"]
        assert data["user"] == "worker:w1"
        assert data["account"] == "$G"
        assert "dtf.hb.w1" in data["permissions"]["publish"]["allow"]
        assert data["permissions"]["subscribe"]["allow"] == ["_INBOX.worker.w1.>"]


@pytest.mark.parametrize("token", ["no-such-token", None])
async def test_unknown_or_missing_token_is_refused(authed_server: AuthedServer,
                                                   token: str | None) -> None:
    async with harness(authed_server) as h:
        with pytest.raises(nats.errors.Error, match=r"(?i)authorization violation"):
            await h.connect(token, allow_reconnect=False, max_reconnect_attempts=0)
        assert h.auth.asked[-1] == (token or "")  # the callout was asked, and said no


COMMANDS = {
    "submit": subjects.CMD_SUBMIT, "cancel": subjects.CMD_CANCEL,
    "report": subjects.CMD_REPORT, "register": subjects.CMD_REGISTER,
    "stop_worker": subjects.CMD_WORKER_STOP, "issue": "dtf.cmd.auth.issue",
    "revoke": "dtf.cmd.auth.revoke", "refresh": "dtf.cmd.auth.refresh",
    "apikey_create": "dtf.cmd.auth.apikey_create", "apikey_revoke": "dtf.cmd.auth.apikey_revoke",
    "key_rotate": "dtf.cmd.auth.key_rotate", "key_retire": "dtf.cmd.auth.key_retire",
    "q_tasks": subjects.Q_TASKS, "q_task": subjects.Q_TASK, "q_workers": subjects.Q_WORKERS,
    "q_status": subjects.Q_STATUS, "q_projector": subjects.Q_PROJECTOR,
    "q_explain": subjects.Q_EXPLAIN, "manage": subjects.CMD_WORKER_MANAGE,
    "event": "dtf.evt.task.x.submitted", "stream_delete": "$JS.API.STREAM.DELETE.DTF_EVENTS",
    "stream_purge": "$JS.API.STREAM.PURGE.DTF_EVENTS",
}
QUERIES = {"q_tasks", "q_task", "q_workers", "q_status", "q_projector", "q_explain"}
# The server's side of the role table, written out: a role's subjects may be wider than its
# api permissions (a manager reaches dtf.cmd.worker.* for drain and cordon), never narrower.
SERVER_ALLOWS = {
    "worker-w1": {"report", "register", "stop_worker", "refresh"},
    "reader": {"refresh"} | QUERIES,
    "manager": {"submit", "cancel", "register", "stop_worker", "manage", "refresh"} | QUERIES,
    "admin": set(COMMANDS),
}
MARKERS = {"worker-w1": W1_MARKER, "reader": Q_MARKER, "manager": Q_MARKER, "admin": Q_MARKER}


@pytest.mark.parametrize("who", list(SERVER_ALLOWS))
async def test_every_role_against_every_subject(authed_server: AuthedServer, who: str) -> None:
    async with harness(authed_server) as h:
        client, rec = await h.connect(who)
        for name, subject in COMMANDS.items():
            if name.startswith("stream_"):
                continue  # a stream API call answers; delivered() would see a reply, not ours
            got = await h.delivered(client, subject, MARKERS[who])
            assert got == (name in SERVER_ALLOWS[who]), (who, name)
            if not got:
                await rec.wait_error(violation(subject))
        if who == "admin":
            return  # the agents' role may manage streams; not tried on the shared server
        for name in ("stream_delete", "stream_purge"):
            with pytest.raises(nats.errors.TimeoutError):
                await client.request(COMMANDS[name], b"", timeout=0.5)
            await rec.wait_error(violation(COMMANDS[name]))


@pytest.mark.parametrize("role", ["reader", "manager"])
@pytest.mark.parametrize("covering", [False, True])
async def test_readers_follow_the_event_log_with_several_filters(
        authed_server: AuthedServer, monkeypatch: pytest.MonkeyPatch, role: str,
        covering: bool) -> None:
    """`dtf wait` and `dtf run pytest` tail the log with several filters, through consumers
    the api opens into their inbox (here the admin connection plays the api); in a large
    stream a short tail asks the stream's size first (one covering filter), which these
    roles may. They may not create a consumer themselves, nor look at one."""
    if covering:
        monkeypatch.setattr(tail_module, "COSTLY_STREAM", 1)
        monkeypatch.setattr(tail_module, "SHORT_TAIL", 1)
    async with harness(authed_server) as h:
        js = h.admin.jetstream()
        first = (await js.publish("dtf.evt.task.rf1.submitted", b"1")).seq
        await js.publish("dtf.evt.worker.w9.registered", b"2")
        await js.publish("dtf.evt.task.rf1.succeeded", b"3")
        client, rec = await h.connect(role)

        async def api_opens(cmd: cmds.OpenTail) -> TailOpened:
            return await queries.open_tail(h.admin, cmd)

        log = jetstream_log.JetStreamLog(client, opener=api_opens)
        with anyio.move_on_after(WAIT_S) as scope:
            got = await log.read(["dtf.evt.task.*.succeeded", "dtf.evt.task.*.submitted"],
                                 first)
        assert not scope.cancelled_caught, rec.errors
        assert [r.data for r in got] == [b"1", b"3"]
        assert rec.errors == []
        own = client.new_inbox()
        for subject in (f"$JS.API.CONSUMER.CREATE.{subjects.EVENTS_STREAM}",
                        f"$JS.API.CONSUMER.CREATE.{subjects.LOGS_STREAM}",
                        f"$JS.API.CONSUMER.CREATE.OBJ_{subjects.ARTIFACTS_BUCKET}",
                        f"$JS.API.CONSUMER.INFO.{subjects.EVENTS_STREAM}.worker-w1"):
            body = json.dumps({"stream_name": subjects.EVENTS_STREAM,
                               "config": {"deliver_subject": own}}).encode()
            with pytest.raises(nats.errors.TimeoutError):
                await client.request(subject, body, timeout=0.5)
            await rec.wait_error(violation(subject))
