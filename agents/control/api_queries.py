"""The api's queries: answered from its fold (and the log, for a task's history), once the
fold holds what the question depends on."""

from __future__ import annotations

from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg

from agents.auth.errors import Forbidden, Unauthenticated
from agents.auth.natsauth.permissions import reply_target
from agents.auth.secrets import Sealer, open_secrets
from agents.control import queries
from agents.control.responder import Responder, error_reply, requester
from agents.log.fold import Folder
from agents.log.port import EventLog
from dtf_core import commands as cmds
from dtf_core.errors import NotFound, Refused, Unavailable
from dtf_core.ids import validate_id

CATCH_UP_S = 5.0


@dataclass
class QueryServer:
    nc: Client
    log: EventLog
    folder: Folder
    responder: Responder
    sealer: Sealer | None = None

    async def caught_up(self) -> None:
        """Before calling an id unknown: another api replica may have written it a moment
        ago, so fold the log as it is now first."""
        if not await self.folder.catch_up(CATCH_UP_S):
            raise Unavailable("this api is catching up with the log")

    async def on_query(self, msg: Msg) -> None:
        try:
            claims = await self.responder.authenticate(msg)
        except Unauthenticated:
            return  # no answer at all
        try:
            cmd = self.responder.admit(claims, cmds.decode_command(msg.data))
            if isinstance(cmd, cmds.ListTasks) and cmd.min_seq > self.folder.board.last_seq:
                if not await self.folder.wait_for(cmd.min_seq):
                    raise Unavailable(f"the api has not folded seq {cmd.min_seq} yet")
            if isinstance(cmd, cmds.GetStatus) and cmd.state_hash and \
                    not await self.folder.settled():
                raise Unavailable(f"the api's fold is behind its own writes (at seq "
                                  f"{self.folder.position}, holding {self.folder.board.last_seq})")
            if isinstance(cmd, cmds.OpenTail):
                role, principal = requester(claims)
                if reply_target(cmd.deliver, role, principal) != cmd.deliver:
                    raise Forbidden("forbidden: a tail delivers only into your own inbox")
            if isinstance(cmd, cmds.GetSecrets):
                await self.folder.wait_for(cmd.fencing)
                await self.responder.reply(msg, cmds.answer(self.secrets(cmd)))
                return
            viewer = None if claims is None else (claims.sub, str(claims.role))
            try:
                result = await queries.answer(self.folder.board, self.log, self.nc, cmd, viewer)
            except NotFound:
                # Another api replica may have written it a moment ago: "unknown" only once
                # this fold has caught up with the log as it is now.
                await self.caught_up()
                result = await queries.answer(self.folder.board, self.log, self.nc, cmd, viewer)
            await self.responder.reply(msg, cmds.answer(result))
        except Exception as exc:  # one broad except per message: answer, never crash
            await self.responder.reply(msg, error_reply(exc))

    def secrets(self, cmd: cmds.GetSecrets) -> dict[str, str]:
        """Only to the worker that holds the task's live lease, by its fencing token."""
        task = self.folder.board.tasks.get(validate_id(cmd.task_id, "task id"))
        if task is None or task.lease_seq != cmd.fencing or task.worker_id != cmd.worker_id \
                or task.status not in ("leased", "running"):
            raise Refused(f"worker {cmd.worker_id} does not hold lease {cmd.fencing} of task "
                          f"{cmd.task_id}: its secrets are not given out")
        if self.sealer is None:
            raise Unavailable("this api has no secrets key")
        return open_secrets(self.sealer, task.task_id, task.spec)
