"""The auth callout service: nats-server asks it on ``$SYS.REQ.USER.AUTH`` whether a
connecting client may in, and with which permissions.

The service only maps a presented token to :class:`Permissions` through a pluggable
``authorize``; the server then enforces them on every publish and subscribe. It also
remembers which (server, client id) each token was admitted as, so that a revocation can
kick those connections (``$SYS.REQ.SERVER.<id>.KICK``, needs a system-account connection);
a kicked client reconnects, and the callout, asked again, denies it.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from agents.auth.natsauth import jwt, nkeys
from agents.auth.natsauth.config import CLIENT_ACCOUNT
from agents.auth.natsauth.permissions import Permissions

log = logging.getLogger(__name__)

AUTH_SUBJECT = "$SYS.REQ.USER.AUTH"
class _Hold(str):
    """The verdict for a login not worth an answer (see ``AuthCallout.answer``)."""


HOLD = _Hold("held: no answer")
Verdict = Permissions | str  # a str is the reason to deny; HOLD: no answer at all
Authorize = Callable[[str, Mapping[str, Any]], Verdict | Awaitable[Verdict]]


class KickError(RuntimeError):
    """The server did not disconnect the client (unknown id, no permission, no server)."""


@dataclass(frozen=True)
class Session:
    """A connection the callout admitted."""

    server_id: str
    client_id: int
    token: str
    perms: Permissions


class AuthCallout:
    """Answers authorization requests; ``issuer`` is the account key named in the config."""

    def __init__(self, issuer: nkeys.KeyPair, authorize: Authorize,
                 account: str = CLIENT_ACCOUNT) -> None:
        if issuer.prefix != nkeys.PREFIX_ACCOUNT:
            raise ValueError("the callout issuer must be an account key")
        self.issuer = issuer
        self.authorize = authorize
        self.account = account
        self.sessions: dict[tuple[str, int], Session] = {}
        self.sessions_changed = asyncio.Event()  # set whenever ``sessions`` changes
        self._subs: list[Subscription] = []
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self, nc: Client) -> None:
        """Serve on ``nc``, a connection as one of the config's ``auth_users``. In the system
        account it also hears of disconnects, and forgets those sessions."""
        self._subs = [
            # a queue group: with several control planes, one of them answers each request
            await nc.subscribe(AUTH_SUBJECT, queue="dtf-auth", cb=self._on_request),
            await nc.subscribe(f"$SYS.ACCOUNT.{self.account}.DISCONNECT",
                               cb=self._on_disconnect),
        ]

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.unsubscribe()
        self._subs = []

    def _forget(self, server_id: str, client_id: int) -> None:
        if self.sessions.pop((server_id, client_id), None) is not None:
            self.sessions_changed.set()

    async def _on_disconnect(self, msg: Msg) -> None:
        try:
            event = json.loads(msg.data)
            self._forget(str(event["server"]["id"]), int(event["client"]["id"]))
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring an undecodable disconnect event")

    async def _on_request(self, msg: Msg) -> None:
        if msg.headers and "Nats-Server-Xkey" in msg.headers:
            log.error("encrypted authorization requests are not supported: remove `key` "
                      "from auth_callout")
            return
        try:
            request = jwt.decode_request(msg.data.decode("ascii", "replace"))
        except jwt.JwtError as exc:
            log.warning("dropping an undecodable authorization request: %s", exc)
            return  # the server times the client out: a denial
        # Each request is answered on its own: one slow check (a worker API key's scrypt)
        # does not hold up the logins behind it.
        task = asyncio.create_task(self._respond(msg, request))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _respond(self, msg: Msg, request: jwt.AuthorizationRequest) -> None:
        answer = await self.answer(request)
        if answer is None:
            return  # held: the server refuses the client when its wait for an answer ends
        try:
            await msg.respond(answer)
        except nats.errors.Error as exc:  # the client may be gone: nothing to answer
            log.debug("could not answer an auth request: %r", exc)

    async def answer(self, request: jwt.AuthorizationRequest) -> bytes | None:
        """The signed response to ``request``; None when it is not to be answered at all
        (``HOLD``: a source that keeps failing waits out the server's timeout each time)."""
        try:
            verdict = self.authorize(request.token, request.client_info)
            if inspect.isawaitable(verdict):
                verdict = await verdict
        except Exception:
            log.exception("authorize failed for client %s", request.client_id)
            verdict = "authorization service error"
        if verdict is HOLD:
            return None
        if isinstance(verdict, str):
            log.log(logging.DEBUG if verdict.startswith("api key") else logging.INFO,
                    "denied client %s on %s: %s", request.client_id, request.server_name,
                    verdict)
            token = jwt.authorization_response(request, self.issuer, error=verdict or "denied")
            return token.encode()
        user = jwt.encode(
            jwt.user_claims(request.user_nkey, self.account, verdict,
                            name=f"{verdict.role}:{verdict.principal}", expires=verdict.expires),
            self.issuer,
        )
        key = (request.server_id, request.client_id)
        self.sessions[key] = Session(request.server_id, request.client_id, request.token, verdict)
        self.sessions_changed.set()
        return jwt.authorization_response(request, self.issuer, user_jwt=user).encode()

    def sessions_where(self, predicate: Callable[[Session], bool]) -> list[Session]:
        return [s for s in self.sessions.values() if predicate(s)]

    async def kick_where(self, nc_sys: Client, predicate: Callable[[Session], bool],
                         timeout: float = 1.0) -> int:
        """Disconnect every admitted connection matching ``predicate`` (for example the
        sessions of a revoked token); returns how many the servers closed. Call it after
        ``authorize`` has started denying the token, so that reconnects are refused."""
        closed = 0
        for session in self.sessions_where(predicate):
            self._forget(session.server_id, session.client_id)
            try:
                await kick(nc_sys, session.server_id, session.client_id, timeout)
                closed += 1
            except KickError as exc:  # already gone, or its server restarted
                log.info("could not kick client %s: %s", session.client_id, exc)
        return closed


async def kick(nc_sys: Client, server_id: str, cid: int, timeout: float = 1.0) -> dict[str, Any]:
    """Close connection ``cid`` on server ``server_id``; ``nc_sys`` is a system-account
    connection. Raises KickError unless the server confirms."""
    try:
        reply = await nc_sys.request(f"$SYS.REQ.SERVER.{server_id}.KICK",
                                     json.dumps({"cid": cid}).encode(), timeout=timeout)
    except Exception as exc:  # timeout, no responders, permissions
        raise KickError(f"kick of client {cid} on {server_id} failed: {exc!r}") from exc
    body: dict[str, Any] = json.loads(reply.data or b"{}")
    if body.get("error"):
        raise KickError(f"kick of client {cid} on {server_id}: {body['error']}")
    return body
