"""The client side of the api: typed calls over NATS request/reply."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, TypeVar

import msgspec
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from agents.auth.errors import Forbidden, Unauthenticated
from dtf_core import commands as cmds
from dtf_core import replies as r
from dtf_core import subjects
from dtf_core.commands import ManageAction, SubmitResult
from dtf_core.errors import Conflict, DTFError, InvalidInput, NotFound, Refused, Unavailable
from dtf_core.ids import child_id
from dtf_core.spec import TaskSpec

log = logging.getLogger(__name__)
T = TypeVar("T")

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
RESENDABLE = (cmds.SubmitTasks, cmds.CancelTask, cmds.ListTasks, cmds.GetTask,
              cmds.ListWorkers, cmds.GetStatus, cmds.ExplainTask, cmds.GetSecrets)
_SUBJECTS: dict[type, str] = {
    cmds.SubmitTasks: subjects.CMD_SUBMIT,
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
    """Nothing serves the api at all: said at once, not after the resend window."""


class ApiClient:
    """``credential``: a token or worker API key, sent as ``Authorization: Bearer``."""

    def __init__(self, nc: Client, timeout: float = 10.0, credential: str | None = None) -> None:
        self.nc = nc
        self.timeout = timeout
        self.headers = {AUTH_HEADER: f"Bearer {credential}"} if credential else None

    async def call(self, cmd: cmds.Command, timeout: float | None = None) -> msgspec.Raw:
        """Send ``cmd``; its answer, still encoded (``ask`` decodes it)."""
        if not isinstance(cmd, RESENDABLE):
            return await self._call_once(cmd, timeout)
        deadline = time.monotonic() + RESEND_WINDOW_S
        pause = 0.1
        while True:
            try:
                return await self._call_once(cmd, timeout)
            except Unavailable as exc:
                if isinstance(exc, NoApi) or time.monotonic() + pause > deadline:
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

    async def _request(self, subject: str, data: bytes, timeout: float) -> Any:
        """A request that fails at once, not at the timeout, when the server refuses the
        publish (a role without permission for ``subject``)."""
        denied = getattr(self.nc, "denied", None)
        request = asyncio.ensure_future(
            self.nc.request(subject, data, timeout=timeout, headers=self.headers))
        if denied is None:
            return await request
        try:
            while True:
                done, _ = await asyncio.wait({request}, timeout=DENIAL_CHECK_S)
                if done:
                    return request.result()
                if denied(subject):
                    raise Forbidden(f"forbidden: your credential may not send {subject} "
                                    "(the server refused it)")
        finally:
            if not request.done():
                request.cancel()

    async def ask(self, cmd: cmds.Command, into: type[T], timeout: float | None = None) -> T:
        """Send ``cmd`` and decode its answer into ``into``: the one place answers are
        decoded (a malformed answer is an error here, not a KeyError later)."""
        raw = await self.call(cmd, timeout)
        try:
            return msgspec.msgpack.decode(raw, type=into)
        except msgspec.DecodeError as exc:
            raise Unavailable(f"the api's answer to {type(cmd).__name__} was not a "
                              f"{into.__name__}: {exc}") from None

    async def submit(
        self, specs: list[TaskSpec], *, run_id: str | None = None, run_name: str = ""
    ) -> SubmitResult:
        ids: list[str] = []
        created = 0
        # Fix each task's id before the first send, so that sending again is harmless.
        base = f"c-{uuid.uuid4().hex}"
        specs = [s if s.id is not None or s.idempotency_key is not None
                 else msgspec.structs.replace(s, id=child_id(base, i))
                 for i, s in enumerate(specs)]
        for start in range(0, len(specs), SUBMIT_CHUNK):
            chunk = specs[start : start + SUBMIT_CHUNK]
            res = await self.ask(cmds.SubmitTasks(tasks=chunk, run_id=run_id,
                                                  run_name=run_name), SubmitResult)
            ids.extend(res.ids)
            created += res.created
        return SubmitResult(ids=ids, run_id=run_id, created=created)

    async def cancel(self, task_id: str, reason: str = "cancelled by user") -> r.CancelResult:
        return await self.ask(cmds.CancelTask(task_id=task_id, reason=reason), r.CancelResult)

    async def tasks(self, status: str | None = None, run_id: str | None = None,
                    limit: int = 100, ids: list[str] | None = None,
                    min_seq: int = 0) -> list[r.TaskSummary]:
        """``min_seq``: answer only once the api has folded the log up to that sequence
        (read-your-writes after following the log)."""
        return await self.ask(cmds.ListTasks(ids=ids, status=status, run_id=run_id,
                                             limit=limit, min_seq=min_seq),
                              list[r.TaskSummary])

    async def task(self, task_id: str) -> r.TaskDetail:
        return await self.ask(cmds.GetTask(task_id=task_id), r.TaskDetail)

    async def workers(self) -> list[r.WorkerRow]:
        return await self.ask(cmds.ListWorkers(), list[r.WorkerRow])

    async def explain(self, task_id: str) -> r.Explanation:
        return await self.ask(cmds.ExplainTask(task_id=task_id), r.Explanation)

    async def manage_worker(self, worker_id: str, action: ManageAction,
                            reason: str = "") -> r.SchedulingChanged:
        return await self.ask(cmds.ManageWorker(worker_id=worker_id, action=action,
                                                reason=reason), r.SchedulingChanged)

    async def open_tail(self, cmd: cmds.OpenTail) -> r.TailOpened:
        return await self.ask(cmd, r.TailOpened)

    async def status(self, state_hash: bool = False) -> r.Status:
        return await self.ask(cmds.GetStatus(state_hash=state_hash), r.Status)

    async def register(self, cmd: cmds.RegisterWorker, timeout: float | None = None
                       ) -> r.Registered:
        return await self.ask(cmd, r.Registered, timeout)

    async def update_capabilities(self, cmd: cmds.UpdateCapabilities) -> r.WorkerAck:
        return await self.ask(cmd, r.WorkerAck)

    async def stop_worker(self, worker_id: str, session: str) -> r.WorkerAck:
        return await self.ask(cmds.StopWorker(worker_id=worker_id, session=session),
                              r.WorkerAck)

    async def report(self, cmd: cmds.ReportResults,
                     timeout: float | None = None) -> list[cmds.ReportOutcome]:
        """The reports the api did not apply (refused: a stale lease), with why."""
        return await self.ask(cmd, list[cmds.ReportOutcome], timeout)

    async def secrets(self, cmd: cmds.GetSecrets) -> dict[str, str]:
        return await self.ask(cmd, dict[str, str])

    async def issue_token(self, sub: str, role: str, ttl_s: float,
                          worker_id: str | None = None) -> r.TokenGranted:
        return await self.ask(cmds.IssueToken(sub=sub, role=role, ttl_s=ttl_s,
                                              worker_id=worker_id), r.TokenGranted)

    async def refresh_token(self, ttl_s: float) -> r.TokenGranted:
        return await self.ask(cmds.RefreshToken(ttl_s=ttl_s), r.TokenGranted)

    async def revoke_token(self, jti: str, reason: str = "") -> r.RevokedToken:
        return await self.ask(cmds.RevokeToken(jti=jti, reason=reason), r.RevokedToken)

    async def create_api_key(self, worker_id: str) -> r.CreatedApiKey:
        return await self.ask(cmds.CreateApiKey(worker_id=worker_id), r.CreatedApiKey)

    async def revoke_api_key(self, key_id: str, reason: str = "") -> r.RevokedApiKey:
        return await self.ask(cmds.RevokeApiKey(key_id=key_id, reason=reason),
                              r.RevokedApiKey)

    async def rotate_key(self) -> r.KeyRotated:
        return await self.ask(cmds.RotateKey(), r.KeyRotated)

    async def retire_key(self, kid: str) -> r.KeyRetired:
        return await self.ask(cmds.RetireKey(kid=kid), r.KeyRetired)
