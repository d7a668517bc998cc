"""The api agent: serves commands and queries over request/reply in a queue group.

Commands are decided against the folded board and appended with optimistic concurrency.
Requests that arrive together are decided together and appended in one atomic batch
(group commit); a conflict re-folds and re-decides, a bounded number of times.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg

from agents.auth.errors import Unauthenticated
from agents.auth.gate import Gate
from agents.auth.keyring import Keyring
from agents.auth.secrets import Sealer
from agents.auth.tokens import Claims
from agents.control import plans
from agents.control.api_queries import QueryServer
from agents.control.base import FoldingAgent
from agents.control.chain import commit_with_lease
from agents.control.dispatch import Planner
from agents.control.responder import Responder, error_reply
from agents.control.scheduler import SchedulerAgent
from agents.log.fold import Folder
from agents.log.port import EventLog
from agents.nats.fast_client import inline
from agents.nats.lease_consumer import open_lease_consumer
from dtf_core import commands as cmds
from dtf_core import subjects
from dtf_core.errors import InvalidInput, NotFound
from dtf_core.events.task import TaskSubmitted
from dtf_core.replies import Registered

log = logging.getLogger(__name__)

MAX_CONFLICT_RETRIES = 3
QUEUE_GROUP = "dtf-api"
QUERY_SUBJECTS = (subjects.Q_TASKS, subjects.Q_TASK, subjects.Q_WORKERS, subjects.Q_STATUS,
                  subjects.Q_EXPLAIN, subjects.Q_TAIL, subjects.Q_SECRETS, subjects.Q_RUNS)
MUTATING = (cmds.SubmitTasks, cmds.ImportResults, cmds.CancelTask, cmds.ReportResults,
            cmds.RegisterWorker, cmds.UpdateCapabilities,
            cmds.StopWorker, cmds.IssueToken, cmds.RevokeToken, cmds.RefreshToken,
            cmds.CreateApiKey, cmds.RevokeApiKey, cmds.RotateKey, cmds.RetireKey,
            cmds.ManageWorker)


Planned = tuple[Msg, cmds.Command, Claims | None, plans.Plan]


def _new_id() -> str:
    return uuid.uuid4().hex[:20]


class ApiAgent(FoldingAgent):
    role = "api"

    def __init__(
        self,
        nc: Client,
        eventlog: EventLog,
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = _new_id,
        folder: Folder | None = None,
        secure: bool = False,
        keyring: Keyring | None = None,
    ) -> None:
        super().__init__(nc, eventlog, name="api", clock=clock, folder=folder)
        self.nc: Client = nc
        self.keyring = keyring
        gate = Gate(self.board, keyring=keyring, clock=clock) if secure else None
        sealer = Sealer.load_or_create(keyring.path.parent) if keyring else None
        self.responder = Responder(nc, gate)
        self.planner = Planner(self.board, clock, new_id, keyring=keyring, sealer=sealer)
        self.queries = QueryServer(nc, eventlog, self.folder, self.responder, sealer)
        self.inbox: asyncio.Queue[Msg] = asyncio.Queue()
        self.ready = asyncio.Event()
        self.scheduler: SchedulerAgent | None = None  # one in this process (a control plane)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            await self.start(tg)
            # queued by the reading task itself: one switch less per command
            inline(self.nc, await self.nc.subscribe("dtf.cmd.>", queue=QUEUE_GROUP,
                                                    cb=self.inbox.put))
            for subject in QUERY_SUBJECTS:
                await self.nc.subscribe(subject, queue=QUEUE_GROUP, cb=self.queries.on_query)
            self.ready.set()
            log.info("api ready at seq %d", self.board.last_seq)
            await self._command_loop()

    async def _command_loop(self) -> None:
        deferred: list[Msg] = []
        while True:
            first = deferred.pop(0) if deferred else await self.inbox.get()
            batch = [first, *deferred]
            deferred = []
            while not self.inbox.empty():
                batch.append(self.inbox.get_nowait())
            deferred = await self._round(batch)

    async def _round(self, batch: list[Msg]) -> list[Msg]:
        """Decide every request of the batch and append all of it at once."""
        planned: list[Planned] = []
        touched: set[str] = set()
        deferred: list[Msg] = []
        for msg in batch:
            try:
                claims = await self.responder.authenticate(msg)
            except Unauthenticated:
                continue  # no answer at all
            try:
                cmd = cmds.decode_command(msg.data)
                if not isinstance(cmd, MUTATING):
                    raise InvalidInput(f"{type(cmd).__name__} is a query: send it to dtf.q.*")
                cmd = self.responder.admit(claims, cmd)
                await self._wait_for_fencing(cmd)
                try:
                    plan = self.planner.plan(cmd, claims)
                except NotFound:  # written through another api replica a moment ago?
                    await self.queries.caught_up()
                    plan = self.planner.plan(cmd, claims)
            except Exception as exc:
                await self.responder.reply(msg, error_reply(exc))
                continue
            if plan.keys & touched:
                deferred.append(msg)  # same aggregate twice in a round: decide it next round
                continue
            touched |= plan.keys
            planned.append((msg, cmd, claims, plan))
        await self._commit(planned)
        return deferred

    async def _wait_for_fencing(self, cmd: cmds.Command) -> None:
        if isinstance(cmd, cmds.ReportResults) and cmd.reports:
            await self.folder.wait_for(max(r.fencing for r in cmd.reports))

    async def _commit(self, planned: list[Planned]) -> None:
        for attempt in range(MAX_CONFLICT_RETRIES + 1):
            if not planned:
                return
            changes = [c for _, _, _, p in planned for c in p.changes]
            try:
                leased = None  # ADR 0018: what an idle scheduler places goes as its lease
                if attempt == 0 and self.scheduler is not None:
                    leased = await commit_with_lease(self.scheduler, changes)
                results = await self.commit(changes) if leased is None else leased
            except Exception as exc:
                for msg, _, _, _ in planned:
                    await self.responder.reply(msg, error_reply(exc))
                return
            held = [s for seqs in results if seqs is not None for s in seqs.duplicates]
            if held:  # resent: answer from the copy the log kept, once folded
                await self.folder.wait_for(max(held))
            retry: list[Planned] = []
            pos = 0
            for msg, cmd, claims, plan in planned:
                ok = all(seqs is not None for seqs in results[pos:pos + len(plan.changes)])
                pos += len(plan.changes)
                if ok:
                    await self._succeeded(msg, cmd, plan)
                    if isinstance(cmd, cmds.SubmitTasks) and self.scheduler is not None:
                        self.scheduler.submitted_here([
                            ev.task_id for c in plan.changes for ev in c.events
                            if isinstance(ev, TaskSubmitted)])
                elif isinstance(cmd, cmds.ImportResults):  # its one check: nothing there yet
                    await self.responder.reply(msg, cmds.answer(cmds.Imported(
                        import_id=cmd.import_id, results=0, already=True)))
                elif attempt == MAX_CONFLICT_RETRIES:
                    await self.responder.reply(msg, cmds.Reply(ok=False, code="conflict",
                                                      error="too many concurrent changes; retry"))
                else:
                    retry.append((msg, cmd, claims, plan))
            if not retry:
                return
            await self.folder.catch_up()
            planned = []
            for msg, cmd, claims, _ in retry:
                try:
                    planned.append((msg, cmd, claims, self.planner.plan(cmd, claims)))
                except Exception as exc:
                    await self.responder.reply(msg, error_reply(exc))

    async def _succeeded(self, msg: Msg, cmd: cmds.Command, plan: plans.Plan) -> None:
        result = plan.reply()
        if isinstance(cmd, cmds.RegisterWorker):
            assert isinstance(result, Registered)
            try:
                await open_lease_consumer(self.nc.jetstream(), cmd.worker_id, cmd.session,
                                          result.seq)
            except Exception as exc:  # the worker retries its registration
                log.warning("could not open the lease consumer of %s: %r", cmd.worker_id, exc)
                await self.responder.reply(msg, cmds.Reply(
                    ok=False, code="unavailable",
                    error=f"registered, but the lease consumer could not be opened: {exc!r}"))
                return
        await self.responder.reply(msg, cmds.answer(result))
