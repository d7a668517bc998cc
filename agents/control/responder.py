"""Answering requests: who sent one (verified), what it may do, and where its answer may
go (only into the requester's own inbox; an unauthenticated request gets no answer)."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from agents.auth.errors import Forbidden, Unauthenticated
from agents.auth.gate import Gate
from agents.auth.natsauth.permissions import reply_target
from agents.auth.tokens import Claims
from dtf_core import commands as cmds
from dtf_core.errors import DTFError, InvalidInput, NotFound, Refused

log = logging.getLogger(__name__)


def requester(claims: Claims | None) -> tuple[str | None, str | None]:
    """(role, principal) of a verified requester, whose inbox its answers go to."""
    if claims is None:
        return None, None
    return str(claims.role), claims.wid or claims.sub


class Responder:
    """``gate``: None for a stack without auth (``dtf up --insecure-dev``)."""

    def __init__(self, nc: Client, gate: Gate | None) -> None:
        self.nc = nc
        self.gate = gate
        self._targets: dict[int, str | None] = {}  # id(request) -> where to answer

    async def authenticate(self, msg: Msg) -> Claims | None:
        """Who sent ``msg`` (raises Unauthenticated), and so where its answer may go: only
        into that requester's own inbox (``reply_target``). A request that is not
        authenticated gets no answer at all. Without a gate (``dtf up --insecure-dev``),
        None: any inbox."""
        self._targets.pop(id(msg), None)
        claims = await self.gate.principal_async(msg.headers) if self.gate is not None else None
        role, principal = requester(claims)
        target = reply_target(msg.reply, role, principal)
        if target is None and msg.reply:
            log.warning("not answering a request of %s into %r: not its own inbox",
                        principal or "an unauthenticated client", msg.reply[:200])
        self._targets[id(msg)] = target
        return claims

    def admit(self, claims: Claims | None, cmd: cmds.Command) -> cmds.Command:
        """Authorise; the actor is the verified subject from now on. Without a gate
        (``dtf up --insecure-dev``) every request is admitted as sent."""
        if self.gate is None or claims is None:
            return cmd
        self.gate.authorize(claims, cmd)
        return msgspec.structs.replace(cmd, actor=claims.sub)

    async def reply(self, msg: Msg, reply: cmds.Reply) -> None:
        """Answer into the requester's inbox, as ``authenticate`` found it; a request that
        was not authenticated (or named another subject) is not answered."""
        target = self._targets.pop(id(msg), None)
        if target is not None:
            await self.nc.publish(target, cmds.encode(reply))



def error_reply(exc: BaseException) -> cmds.Reply:
    if isinstance(exc, msgspec.ValidationError | msgspec.DecodeError):
        return cmds.Reply(ok=False, code="invalid", error=f"invalid request: {exc}")
    code: Any = "internal"
    if isinstance(exc, Unauthenticated):
        code = "unauthenticated"
    elif isinstance(exc, Forbidden):
        code = "forbidden"
    elif isinstance(exc, InvalidInput):
        code = "invalid"
    elif isinstance(exc, NotFound):
        code = "not_found"
    elif isinstance(exc, Refused):
        code = "refused"
    elif isinstance(exc, DTFError):
        code = "unavailable" if exc.retryable else "refused"
    else:
        log.exception("internal error while serving a request", exc_info=exc)
        return cmds.Reply(ok=False, code="internal", error=f"internal error: {exc!r}")
    return cmds.Reply(ok=False, code=code, error=str(exc))
