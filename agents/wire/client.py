"""The api's client: one typed method per command and query. Each answer is decoded once,
here, into the type its method returns (``dtf_core/replies.py``)."""

from __future__ import annotations

import asyncio
import uuid
from typing import TypeVar

import msgspec

from agents.wire.requests import Requester
from dtf_core import commands as cmds
from dtf_core import replies as r
from dtf_core.commands import ManageAction, SubmitResult
from dtf_core.errors import Refused, Unavailable
from dtf_core.ids import child_id, validate_id
from dtf_core.spec import TaskSpec
from dtf_core.task import TERMINAL

T = TypeVar("T")
SUBMIT_CHUNK = 1000


class ApiClient(Requester):
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

    async def cancel_run(self, run_id: str, reason: str) -> list[str]:
        """Cancel every task of the run that has not ended (running ones are killed);
        the ids it asked to cancel. A task that ends meanwhile is left as it ended."""
        rows = await self.tasks(run_id=validate_id(run_id, "run id"), limit=10_000)
        todo = [row.id for row in rows if row.status not in TERMINAL]

        async def one(task_id: str) -> str | None:
            try:
                return (await self.cancel(task_id, reason)).id
            except Refused:  # it ended since the list was read
                return None

        return [t for t in await asyncio.gather(*(one(t) for t in todo)) if t is not None]

    async def tasks(self, status: str | None = None, run_id: str | None = None,
                    limit: int = 100, ids: list[str] | None = None,
                    min_seq: int = 0, before_seq: int | None = None,
                    after_compacted: str | None = None) -> list[r.TaskSummary]:
        """``min_seq``: answer only once the api has folded the log up to that sequence
        (read-your-writes after following the log); ``before_seq``/``after_compacted``:
        the page after one that ended there."""
        return await self.ask(cmds.ListTasks(ids=ids, status=status, run_id=run_id,
                                             limit=limit, min_seq=min_seq,
                                             before_seq=before_seq,
                                             after_compacted=after_compacted),
                              list[r.TaskSummary])

    async def import_results(self, cmd: cmds.ImportResults) -> cmds.Imported:
        return await self.ask(cmd, cmds.Imported)

    async def task(self, task_id: str) -> r.TaskDetail:
        return await self.ask(cmds.GetTask(task_id=task_id), r.TaskDetail)

    async def workers(self, heartbeats: bool = True) -> list[r.WorkerRow]:
        return await self.ask(cmds.ListWorkers(heartbeats=heartbeats), list[r.WorkerRow])

    async def runs(self, limit: int = 100, before: str | None = None) -> list[r.RunSummary]:
        return await self.ask(cmds.ListRuns(limit=limit, before=before), list[r.RunSummary])

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
