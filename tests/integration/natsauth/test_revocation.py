"""Revocation closes live connections: the callout kicks them through the system account
(``$SYS.REQ.SERVER.<id>.KICK``) and refuses the reconnect; an expiring grant is closed by
the server itself."""

from __future__ import annotations

import asyncio
import time

import nats.errors
import pytest

from agents.auth.natsauth.callout import KickError, kick
from dtf_core import subjects
from tests.integration.natsauth.harness import WAIT_S, AuthedServer, harness

pytestmark = pytest.mark.anyio


async def test_revoked_client_is_kicked_within_a_second(authed_server: AuthedServer) -> None:
    async with harness(authed_server) as h:
        reader, rec = await h.connect("reader", max_reconnect_attempts=3,
                                      reconnect_time_wait=0.05)
        worker, wrec = await h.connect("worker-w1")
        assert await h.delivered(reader, subjects.Q_STATUS, subjects.Q_STATUS)

        h.auth.revoked.add("reader")  # first refuse the token, then close its connections
        started = time.monotonic()
        assert await h.callout.kick_where(h.service, lambda s: s.token == "reader") == 1
        await asyncio.wait_for(rec.disconnected.wait(), 1.0)
        assert time.monotonic() - started < 1.0

        # nats-py reconnects; the server asks the callout again, which says no.
        await rec.wait_error("authorization violation")
        await asyncio.wait_for(rec.closed.wait(), WAIT_S)
        assert h.auth.asked.count("reader") >= 2
        assert not reader.is_connected
        with pytest.raises(nats.errors.Error, match=r"(?i)authorization violation"):
            await h.connect("reader", allow_reconnect=False)

        # Nobody else was touched.
        assert worker.is_connected and not wrec.disconnected.is_set()
        assert await h.delivered(worker, "dtf.hb.w1", "dtf.hb.w1")


async def test_kick_needs_the_system_account(authed_server: AuthedServer) -> None:
    async with harness(authed_server) as h:
        reader, rec = await h.connect("reader")
        (session,) = h.callout.sessions_where(lambda s: s.token == "reader")
        # An admin client lives in $G, where no server answers $SYS requests.
        with pytest.raises(KickError):
            await kick(h.admin, session.server_id, session.client_id, timeout=0.5)
        # An unknown client id is an error, not a silent success.
        with pytest.raises(KickError, match="no such client"):
            await kick(h.service, session.server_id, 10**9)
        assert reader.is_connected and not rec.disconnected.is_set()


async def test_expiring_grant_is_closed_by_the_server(authed_server: AuthedServer) -> None:
    """The user JWT's ``exp`` (the DTF token's expiry): the server closes the connection
    then, with no callout or kick involved. nats-py 2.16 treats that -ERR as final: it
    closes for good instead of reconnecting (closed_cb fires, ``last_error`` says why)."""
    async with harness(authed_server) as h:
        h.auth.expires["reader"] = int(time.time()) + 2  # whole seconds: 1-2 s from now
        reader, rec = await h.connect("reader")
        assert reader.is_connected
        await asyncio.wait_for(rec.closed.wait(), 4.0)
        assert "authentication expired" in str(reader.last_error).lower()


async def test_sessions_are_forgotten_on_disconnect(authed_server: AuthedServer) -> None:
    """The callout hears the server's disconnect events (system account), so its table of
    connections to kick stays the live ones."""
    async with harness(authed_server) as h:
        reader, _ = await h.connect("reader")
        (session,) = h.callout.sessions_where(lambda s: s.token == "reader")
        await reader.close()
        async with asyncio.timeout(WAIT_S):
            while (session.server_id, session.client_id) in h.callout.sessions:
                h.callout.sessions_changed.clear()
                await h.callout.sessions_changed.wait()
