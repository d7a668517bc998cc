"""Requests to the api over NATS: subjects by command, resends when sending twice
changes nothing, refusals said at once, and answers turned into errors or results."""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from agents.auth.errors import Forbidden, Unauthenticated
from dtf_core import commands as cmds
from dtf_core import subjects
from dtf_core.errors import Conflict, DTFError, InvalidInput, NotFound, Refused, Unavailable

log = logging.getLogger(__name__)

SUBMIT_CHUNK = 1000
DENIAL_CHECK_S = 0.05
AUTH_HEADER = "Authorization"
# A request that got no answer (the connection dropped, or the api that had it died) is
# sent again after these pauses, when sending it twice changes nothing: queries, cancels,
# and submissions whose task ids the client fixed before the first send.
# A failover (a new stream leader elected, a standby api) takes a few seconds; the client
# keeps resending for RESEND_WINDOW_S, pausing a little longer each time.
RESEND_WINDOW_S = 20.0
RESEND_MAX_PAUSE_S = 1.0
# No api subscribed at all: said after this long, not after the whole window. In a cluster,
# a node's death takes the subscriptions of the api replicas connected to it along until
# they reconnect to another node (a second or two): such a request is sent again.
NO_API_GRACE_S = 4.0
RESENDABLE = (cmds.SubmitTasks, cmds.ImportResults, cmds.CancelTask, cmds.ListTasks, cmds.GetTask,
              cmds.ListWorkers, cmds.ListRuns, cmds.GetStatus, cmds.ExplainTask, cmds.GetSecrets)
_SUBJECTS: dict[type, str] = {
    cmds.SubmitTasks: subjects.CMD_SUBMIT,
    cmds.ImportResults: subjects.CMD_IMPORT,
    cmds.CancelTask: subjects.CMD_CANCEL,
    cmds.ReportResults: subjects.CMD_REPORT,
    cmds.RegisterWorker: subjects.CMD_REGISTER,
    cmds.StopWorker: subjects.CMD_WORKER_STOP,
    cmds.UpdateCapabilities: subjects.CMD_CAPABILITIES,
    cmds.IssueToken: "dtf.cmd.auth.issue",
    cmds.RevokeToken: "dtf.cmd.auth.revoke",
    cmds.RefreshToken: "dtf.cmd.auth.refresh",
    cmds.CreateApiKey: "dtf.cmd.auth.apikey_create",
    cmds.RevokeApiKey: "dtf.cmd.auth.apikey_revoke",
    cmds.RotateKey: "dtf.cmd.auth.key_rotate",
    cmds.RetireKey: "dtf.cmd.auth.key_retire",
    cmds.ListTasks: subjects.Q_TASKS,
    cmds.GetTask: subjects.Q_TASK,
    cmds.ListWorkers: subjects.Q_WORKERS,
    cmds.ListRuns: subjects.Q_RUNS,
    cmds.GetStatus: subjects.Q_STATUS,
    cmds.ExplainTask: subjects.Q_EXPLAIN,
    cmds.OpenTail: subjects.Q_TAIL,
    cmds.GetSecrets: subjects.Q_SECRETS,
    cmds.ManageWorker: subjects.CMD_WORKER_MANAGE,
}
_ERRORS: dict[str, type[DTFError]] = {
    "invalid": InvalidInput,
    "not_found": NotFound,
    "refused": Refused,
    "conflict": Conflict,
    "unavailable": Unavailable,
    "unauthenticated": Unauthenticated,
    "forbidden": Forbidden,
}


class NoApi(Unavailable):
    """Nothing serves the api at all: said within seconds, not after the resend window."""


class Requester:
    """``credential``: a token or worker API key, sent as ``Authorization: Bearer``."""

    def __init__(self, nc: Client, timeout: float = 10.0, credential: str | None = None) -> None:
        self.nc = nc
        self.timeout = timeout
        self.headers = {AUTH_HEADER: f"Bearer {credential}"} if credential else None

    async def call(self, cmd: cmds.Command, timeout: float | None = None) -> msgspec.Raw:
        """Send ``cmd``; its answer, still encoded (``ask`` decodes it)."""
        if not isinstance(cmd, RESENDABLE):
            return await self._call_once(cmd, timeout)
        start = time.monotonic()
        pause = 0.1
        while True:
            try:
                return await self._call_once(cmd, timeout)
            except Unavailable as exc:
                window = NO_API_GRACE_S if isinstance(exc, NoApi) else RESEND_WINDOW_S
                if time.monotonic() + pause > start + window:
                    raise
                log.info("no answer to %s (%s); sending it again", type(cmd).__name__, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, RESEND_MAX_PAUSE_S)

    async def _call_once(self, cmd: cmds.Command,
                         timeout: float | None = None) -> msgspec.Raw:
        subject = _SUBJECTS[type(cmd)]
        try:
            msg = await self._request(subject, cmds.encode(cmd), timeout or self.timeout)
        except NoRespondersError:
            raise NoApi("no api agent is running (is `dtf up` running?)") from None
        except NatsTimeout:
            denied = getattr(self.nc, "denied", None)
            if denied is not None and denied(subject):
                raise Forbidden(f"forbidden: the server refused your publish to {subject}"
                                ) from None
            raise Unavailable(f"the api agent did not answer {subject} in time") from None
        reply = cmds.decode_reply(msg.data)
        if not reply.ok:
            raise _ERRORS.get(reply.code, DTFError)(reply.error)
        return reply.result

    async def _request(self, subject: str, data: bytes, timeout: float) -> Msg:
        """A request that fails at once, not at the timeout, when the server refuses the
        publish (a role without permission for ``subject``). The request runs in the
        caller's task (no task of its own: its message leaves in the same write as what
        the caller queued before it); a timer looks for a refusal every DENIAL_CHECK_S."""
        denied = getattr(self.nc, "denied", None)
        if denied is None:
            return await self.nc.request(subject, data, timeout=timeout, headers=self.headers)
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        refused = False
        handle: asyncio.TimerHandle

        def look() -> None:
            nonlocal refused, handle
            if denied(subject):
                refused = True
                task.cancel()
            else:
                handle = loop.call_later(DENIAL_CHECK_S, look)

        handle = loop.call_later(DENIAL_CHECK_S, look)
        try:
            return await self.nc.request(subject, data, timeout=timeout, headers=self.headers)
        except asyncio.CancelledError:
            if refused and task.uncancel() == 0:  # our cancel, and nobody else's
                raise Forbidden(f"forbidden: your credential may not send {subject} "
                                "(the server refused it)") from None
            raise
        finally:
            handle.cancel()
