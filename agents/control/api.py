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
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from agents.auth.errors import Forbidden, Unauthenticated
from agents.auth.gate import Gate
from agents.auth.keyring import Keyring
from agents.auth.natsauth.permissions import reply_target
from agents.auth.secrets import Sealer, open_secrets, seal_spec
from agents.auth.tokens import Claims
from agents.control import auth_plans, plans, queries
from agents.log.commit import commit
from agents.log.fold import Folder, jetstream_dead_letter
from agents.log.port import EventLog
from agents.nats.lease_consumer import open_lease_consumer
from dtf_core import commands as cmds
from dtf_core import subjects
from dtf_core.errors import DTFError, InvalidInput, NotFound, Refused, Unavailable
from dtf_core.ids import validate_id
from dtf_core.replies import Registered
from projections.board import Board

log = logging.getLogger(__name__)
CATCH_UP_S = 5.0

MAX_CONFLICT_RETRIES = 3
QUEUE_GROUP = "dtf-api"
QUERY_SUBJECTS = (subjects.Q_TASKS, subjects.Q_TASK, subjects.Q_WORKERS, subjects.Q_STATUS,
                  subjects.Q_EXPLAIN, subjects.Q_TAIL, subjects.Q_SECRETS)
MUTATING = (cmds.SubmitTasks, cmds.CancelTask, cmds.ReportResults, cmds.RegisterWorker,
            cmds.UpdateCapabilities,
            cmds.StopWorker, cmds.IssueToken, cmds.RevokeToken, cmds.RefreshToken,
            cmds.CreateApiKey, cmds.RevokeApiKey, cmds.RotateKey, cmds.RetireKey,
            cmds.ManageWorker)


Planned = tuple[Msg, cmds.Command, Claims | None, plans.Plan]


def _requester(claims: Claims | None) -> tuple[str | None, str | None]:
    """(role, principal) of a verified requester, whose inbox its answers go to."""
    if claims is None:
        return None, None
    return str(claims.role), claims.wid or claims.sub


def _new_id() -> str:
    return uuid.uuid4().hex[:20]


class ApiAgent:
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
        self.nc = nc
        self.keyring = keyring
        self.log = eventlog
        self.clock = clock
        self.new_id = new_id
        self.owns_folder = folder is None
        self.folder = folder or Folder(
            eventlog, Board(), dead_letter=jetstream_dead_letter(nc, "api")
        )
        self.board = self.folder.board
        self.gate = Gate(self.board, keyring=keyring, clock=clock) if secure else None
        self.sealer = Sealer.load_or_create(keyring.path.parent) if keyring else None
        self.inbox: asyncio.Queue[Msg] = asyncio.Queue()
        self.ready = asyncio.Event()
        self._targets: dict[int, str | None] = {}  # id(request) -> where to answer

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            if self.owns_folder:
                tg.create_task(self.folder.run())
            await self.folder.caught_up.wait()
            await self.nc.subscribe("dtf.cmd.>", queue=QUEUE_GROUP, cb=self.inbox.put)
            for subject in QUERY_SUBJECTS:
                await self.nc.subscribe(subject, queue=QUEUE_GROUP, cb=self._on_query)
            self.ready.set()
            log.info("api ready at seq %d", self.board.last_seq)
            await self._command_loop()

    async def _authenticate(self, msg: Msg) -> Claims | None:
        """Who sent ``msg`` (raises Unauthenticated), and so where its answer may go: only
        into that requester's own inbox (``reply_target``). A request that is not
        authenticated gets no answer at all. Without a gate (``dtf up --insecure-dev``),
        None: any inbox."""
        self._targets.pop(id(msg), None)
        claims = await self.gate.principal_async(msg.headers) if self.gate is not None else None
        role, principal = _requester(claims)
        target = reply_target(msg.reply, role, principal)
        if target is None and msg.reply:
            log.warning("not answering a request of %s into %r: not its own inbox",
                        principal or "an unauthenticated client", msg.reply[:200])
        self._targets[id(msg)] = target
        return claims

    def _admit(self, claims: Claims | None, cmd: cmds.Command) -> cmds.Command:
        """Authorise; the actor is the verified subject from now on. Without a gate
        (``dtf up --insecure-dev``) every request is admitted as sent."""
        if self.gate is None or claims is None:
            return cmd
        self.gate.authorize(claims, cmd)
        return msgspec.structs.replace(cmd, actor=claims.sub)

    async def _on_query(self, msg: Msg) -> None:
        try:
            claims = await self._authenticate(msg)
        except Unauthenticated:
            return  # no answer at all
        try:
            cmd = self._admit(claims, cmds.decode_command(msg.data))
            if isinstance(cmd, cmds.ListTasks) and cmd.min_seq > self.board.last_seq:
                if not await self.folder.wait_for(cmd.min_seq):
                    raise Unavailable(f"the api has not folded seq {cmd.min_seq} yet")
            if isinstance(cmd, cmds.GetStatus) and cmd.state_hash and \
                    not await self.folder.settled():
                raise Unavailable(f"the api's fold is behind its own writes (at seq "
                                  f"{self.folder.position}, holding {self.board.last_seq})")
            if isinstance(cmd, cmds.OpenTail):
                role, principal = _requester(claims)
                if reply_target(cmd.deliver, role, principal) != cmd.deliver:
                    raise Forbidden("forbidden: a tail delivers only into your own inbox")
            if isinstance(cmd, cmds.GetSecrets):
                await self.folder.wait_for(cmd.fencing)
                await self._reply(msg, cmds.answer(self._secrets(cmd)))
                return
            viewer = None if claims is None else (claims.sub, str(claims.role))
            try:
                result = await queries.answer(self.board, self.log, self.nc, cmd, viewer)
            except NotFound:
                # Another api replica may have written it a moment ago: "unknown" only once
                # this fold has caught up with the log as it is now.
                await self._caught_up()
                result = await queries.answer(self.board, self.log, self.nc, cmd, viewer)
            await self._reply(msg, cmds.answer(result))
        except Exception as exc:  # one broad except per message: answer, never crash
            await self._reply(msg, _error_reply(exc))

    def _secrets(self, cmd: cmds.GetSecrets) -> dict[str, str]:
        """Only to the worker that holds the task's live lease, by its fencing token."""
        task = self.board.tasks.get(validate_id(cmd.task_id, "task id"))
        if task is None or task.lease_seq != cmd.fencing or task.worker_id != cmd.worker_id \
                or task.status not in ("leased", "running"):
            raise Refused(f"worker {cmd.worker_id} does not hold lease {cmd.fencing} of task "
                          f"{cmd.task_id}: its secrets are not given out")
        if self.sealer is None:
            raise Unavailable("this api has no secrets key")
        return open_secrets(self.sealer, task.task_id, task.spec)

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
                claims = await self._authenticate(msg)
            except Unauthenticated:
                continue  # no answer at all
            try:
                cmd = cmds.decode_command(msg.data)
                if not isinstance(cmd, MUTATING):
                    raise InvalidInput(f"{type(cmd).__name__} is a query: send it to dtf.q.*")
                cmd = self._admit(claims, cmd)
                await self._wait_for_fencing(cmd)
                try:
                    plan = self._plan(cmd, claims)
                except NotFound:  # written through another api replica a moment ago?
                    await self._caught_up()
                    plan = self._plan(cmd, claims)
            except Exception as exc:
                await self._reply(msg, _error_reply(exc))
                continue
            if plan.keys & touched:
                deferred.append(msg)  # same aggregate twice in a round: decide it next round
                continue
            touched |= plan.keys
            planned.append((msg, cmd, claims, plan))
        await self._commit(planned)
        return deferred

    async def _caught_up(self) -> None:
        """Before calling an id unknown: another api replica may have written it a moment
        ago, so fold the log as it is now first."""
        if not await self.folder.catch_up(CATCH_UP_S):
            raise Unavailable("this api is catching up with the log")

    async def _wait_for_fencing(self, cmd: cmds.Command) -> None:
        if isinstance(cmd, cmds.ReportResults) and cmd.reports:
            await self.folder.wait_for(max(r.fencing for r in cmd.reports))

    def _plan(self, cmd: cmds.Command, claims: Claims | None) -> plans.Plan:
        now = self.clock()
        match cmd:
            case cmds.IssueToken():
                return auth_plans.plan_issue(self.board, cmd, keyring=self.keyring, now=now)
            case cmds.RefreshToken():
                if claims is None:
                    raise Refused("tokens are not used here (the stack runs --insecure-dev)")
                return auth_plans.plan_refresh(self.board, cmd, claims, keyring=self.keyring,
                                               now=now)
            case cmds.RevokeToken():
                return auth_plans.plan_revoke(self.board, cmd, now=now)
            case cmds.CreateApiKey():
                return auth_plans.plan_create_key(self.board, cmd, now=now)
            case cmds.RevokeApiKey():
                return auth_plans.plan_revoke_key(self.board, cmd, now=now)
            case cmds.RotateKey():
                return auth_plans.plan_rotate(self.board, cmd, keyring=self.keyring, now=now)
            case cmds.RetireKey():
                return auth_plans.plan_retire(self.board, cmd, keyring=self.keyring, now=now)
            case cmds.SubmitTasks():
                return plans.plan_submit(
                    self.board, cmd, now=now, new_id=self.new_id,
                    seal=lambda task_id, spec: seal_spec(self.sealer, task_id, spec))
            case cmds.CancelTask():
                return plans.plan_cancel(self.board, cmd, now=now)
            case cmds.ReportResults():
                return plans.plan_report(self.board, cmd, now=now)
            case cmds.RegisterWorker():
                return plans.plan_register(self.board, cmd, now=now)
            case cmds.UpdateCapabilities():
                return plans.plan_capabilities(self.board, cmd, now=now)
            case cmds.StopWorker():
                return plans.plan_stop_worker(self.board, cmd, now=now)
            case cmds.ManageWorker():
                return plans.plan_manage_worker(self.board, cmd, now=now)
        raise InvalidInput(f"unknown command {type(cmd).__name__}")

    async def _commit(self, planned: list[Planned]) -> None:
        for attempt in range(MAX_CONFLICT_RETRIES + 1):
            if not planned:
                return
            changes = [c for _, _, _, p in planned for c in p.changes]
            try:
                results = await commit(self.log, self.board, changes)
            except Exception as exc:
                for msg, _, _, _ in planned:
                    await self._reply(msg, _error_reply(exc))
                return
            retry: list[Planned] = []
            pos = 0
            for msg, cmd, claims, plan in planned:
                ok = all(seqs is not None for seqs in results[pos:pos + len(plan.changes)])
                pos += len(plan.changes)
                if ok:
                    await self._succeeded(msg, cmd, plan)
                elif attempt == MAX_CONFLICT_RETRIES:
                    await self._reply(msg, cmds.Reply(ok=False, code="conflict",
                                                      error="too many concurrent changes; retry"))
                else:
                    retry.append((msg, cmd, claims, plan))
            if not retry:
                return
            await self.folder.catch_up()
            planned = []
            for msg, cmd, claims, _ in retry:
                try:
                    planned.append((msg, cmd, claims, self._plan(cmd, claims)))
                except Exception as exc:
                    await self._reply(msg, _error_reply(exc))

    async def _succeeded(self, msg: Msg, cmd: cmds.Command, plan: plans.Plan) -> None:
        result = plan.reply()
        if isinstance(cmd, cmds.RegisterWorker):
            assert isinstance(result, Registered)
            try:
                await open_lease_consumer(self.nc.jetstream(), cmd.worker_id, cmd.session,
                                          result.seq)
            except Exception as exc:  # the worker retries its registration
                log.warning("could not open the lease consumer of %s: %r", cmd.worker_id, exc)
                await self._reply(msg, cmds.Reply(
                    ok=False, code="unavailable",
                    error=f"registered, but the lease consumer could not be opened: {exc!r}"))
                return
        await self._reply(msg, cmds.answer(result))

    async def _reply(self, msg: Msg, reply: cmds.Reply) -> None:
        """Answer into the requester's inbox, as ``_authenticate`` found it; a request that
        was not authenticated (or named another subject) is not answered."""
        target = self._targets.pop(id(msg), None)
        if target is not None:
            await self.nc.publish(target, cmds.encode(reply))


def _error_reply(exc: BaseException) -> cmds.Reply:
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
