"""Which plan decides a command: the api's one dispatch, pure but for the clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agents.auth.keyring import Keyring
from agents.auth.roles import Role, scope_group
from agents.auth.secrets import Sealer, seal_spec
from agents.auth.tokens import Claims
from agents.control import auth_plans, bench_plans, plans
from agents.control.report_auth import ReportKey
from dtf_core import commands as cmds
from dtf_core.errors import InvalidInput, Refused
from projections.board import Board


@dataclass
class Planner:
    board: Board
    clock: Callable[[], float]
    new_id: Callable[[], str]
    keyring: Keyring | None = None
    sealer: Sealer | None = None

    @property
    def _report_key(self) -> ReportKey | None:
        return self.sealer.report_key if self.sealer is not None else None

    def plan(self, cmd: cmds.Command, claims: Claims | None) -> plans.Plan:
        """The plan for ``cmd``, decided against the board now (``claims``: who asks)."""
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
                enroller = claims is not None and claims.role == Role.ENROLLER
                return auth_plans.plan_create_key(self.board, cmd, now=now,
                                                  new_worker_only=enroller,
                                                  group=_group(claims))
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
            case cmds.ImportResults():
                return bench_plans.plan_import(cmd, now=now)
            case cmds.CancelTask():
                return plans.plan_cancel(self.board, cmd, now=now)
            case cmds.ReportResults():
                return plans.plan_report(self.board, cmd, now=now, report_key=self._report_key)
            case cmds.RegisterWorker():
                return plans.plan_register(self.board, cmd, now=now,
                                           report_key=self._report_key)
            case cmds.UpdateCapabilities():
                return plans.plan_capabilities(self.board, cmd, now=now)
            case cmds.StopWorker():
                return plans.plan_stop_worker(self.board, cmd, now=now)
            case cmds.ManageWorker():
                return plans.plan_manage_worker(self.board, cmd, now=now,
                                                group=_group(claims))
        raise InvalidInput(f"unknown command {type(cmd).__name__}")


def _group(claims: Claims | None) -> str | None:
    """The worker group an autoscaler's token limits it to; None for any other requester."""
    return None if claims is None else scope_group(claims)
