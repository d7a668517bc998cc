"""The one table of roles and their permissions; permissions are named after commands.

The api agent maps each command to a permission (``permission_for_command``) and calls
``check``. A worker token is further limited to its own worker id (``check_worker_scope``),
an autoscaler's to its own worker group (``check_group_scope``; its ``wid`` claim names
the group).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Protocol

from agents.auth.errors import Forbidden
from dtf_core.worker import AUTO_INFIX, autoscaled_group


class Role(enum.StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    WORKER = "worker"
    READER = "reader"
    # creates worker keys for new worker ids only: what a worker pod needs to make its own
    # (deploy/kubernetes/worker.yaml), and nothing else
    ENROLLER = "enroller"
    # `dtf agent autoscaler`: folds the log, drains and reopens the workers of its own group
    # and creates keys for the workers it starts (``<group>-auto-<n>``), and nothing else
    AUTOSCALER = "autoscaler"


class Permission(enum.StrEnum):
    TASK_SUBMIT = "task.submit"
    TASK_CANCEL = "task.cancel"
    TASK_REPORT = "task.report"
    WORKER_REGISTER = "worker.register"
    WORKER_STOP = "worker.stop"
    WORKER_MANAGE = "worker.manage"
    TOKEN_ISSUE = "token.issue"
    TOKEN_REVOKE = "token.revoke"
    TOKEN_REFRESH = "token.refresh"
    QUERY_READ = "query.read"
    TASK_SECRETS = "task.secrets"  # the secret env of a task whose lease the worker holds
    KEY_ROTATE = "key.rotate"
    WORKER_ENROLL = "worker.enroll"  # create a worker's API key


P = Permission

ROLE_PERMISSIONS: Final[Mapping[Role, frozenset[Permission]]] = MappingProxyType({
    Role.ADMIN: frozenset(Permission),
    Role.MANAGER: frozenset({P.TASK_SUBMIT, P.TASK_CANCEL, P.WORKER_MANAGE, P.QUERY_READ,
                             P.TOKEN_REFRESH}),
    Role.WORKER: frozenset({P.TASK_REPORT, P.WORKER_REGISTER, P.WORKER_STOP, P.TOKEN_REFRESH,
                            P.TASK_SECRETS}),
    Role.READER: frozenset({P.QUERY_READ, P.TOKEN_REFRESH}),
    Role.ENROLLER: frozenset({P.WORKER_ENROLL}),
    Role.AUTOSCALER: frozenset({P.QUERY_READ, P.WORKER_MANAGE, P.WORKER_ENROLL,
                                P.TOKEN_REFRESH}),
})

# Command tags of dtf_core.commands (the "cmd" field) -> the permission each needs.
COMMAND_PERMISSIONS: Final[Mapping[str, Permission]] = MappingProxyType({
    "submit": P.TASK_SUBMIT,
    "import_results": P.TASK_SUBMIT,  # results are written as submitted work's are
    "cancel": P.TASK_CANCEL,
    "report": P.TASK_REPORT,
    "register": P.WORKER_REGISTER,
    "stop_worker": P.WORKER_STOP,
    "update_capabilities": P.WORKER_REGISTER,
    "issue_token": P.TOKEN_ISSUE,
    "revoke_token": P.TOKEN_REVOKE,
    "refresh_token": P.TOKEN_REFRESH,
    "create_apikey": P.WORKER_ENROLL,
    "revoke_apikey": P.TOKEN_REVOKE,
    "rotate_key": P.KEY_ROTATE,
    "retire_key": P.KEY_ROTATE,
    "list_tasks": P.QUERY_READ,
    "get_task": P.QUERY_READ,
    "list_workers": P.QUERY_READ,
    "list_runs": P.QUERY_READ,
    "status": P.QUERY_READ,
    "explain_task": P.QUERY_READ,
    "open_tail": P.QUERY_READ,
    "get_secrets": P.TASK_SECRETS,
    "manage_worker": P.WORKER_MANAGE,
})

# Commands that name a worker: a worker-role principal may only name itself.
WORKER_SCOPED: Final[frozenset[Permission]] = frozenset(
    {P.TASK_REPORT, P.WORKER_REGISTER, P.WORKER_STOP, P.TASK_SECRETS}
)


class Scoped(Protocol):
    """What scope checks need from verified claims."""

    @property
    def sub(self) -> str: ...

    @property
    def role(self) -> Role: ...

    @property
    def wid(self) -> str | None: ...


def autoscaled_worker_id(group: str, n: int) -> str:
    """The id of the ``n``-th worker an autoscaler of ``group`` starts."""
    return f"{group}{AUTO_INFIX}{n}"


def is_autoscaled_worker_id(group: str, worker_id: str) -> bool:
    return autoscaled_group(worker_id) == group


def permission_for_command(tag: str) -> Permission:
    """The permission a command needs; an unknown command is refused, never allowed."""
    try:
        return COMMAND_PERMISSIONS[tag]
    except KeyError:
        raise Forbidden(f"forbidden: command {tag!r} has no permission mapping") from None


def allows(role: Role | str, permission: Permission | str) -> bool:
    try:
        return Permission(permission) in ROLE_PERMISSIONS[Role(role)]
    except ValueError:
        return False


def check(role: Role | str, permission: Permission | str) -> None:
    """Raise Forbidden unless ``role`` holds ``permission``."""
    if not allows(role, permission):
        raise Forbidden(f"forbidden: role {str(role)!r} lacks permission {str(permission)!r}")


def check_worker_scope(claims: Scoped, worker_id: str) -> None:
    """Raise Forbidden if a worker-role principal acts for a worker other than its own."""
    if claims.role != Role.WORKER:
        return
    if claims.wid is None or claims.wid != worker_id:
        raise Forbidden(
            f"forbidden: worker token of {claims.sub!r} is scoped to worker {claims.wid!r},"
            f" not {worker_id!r}"
        )


def scope_group(claims: Scoped) -> str | None:
    """The worker group an autoscaler's token is limited to; None for every other role."""
    if claims.role != Role.AUTOSCALER:
        return None
    if not claims.wid:
        raise Forbidden(f"forbidden: the autoscaler token of {claims.sub!r} names no worker "
                        "group")
    return claims.wid


def check_group_scope(claims: Scoped, worker_id: str) -> None:
    """Raise Forbidden if an autoscaler names a worker it may not create a key for: only
    ``<its group>-auto-<n>``, the ids it gives the workers it starts. (Whether that worker
    may be given one, and which workers it may drain, depends on the board: see
    ``agents.control.auth_plans.plan_create_key`` and ``plans.plan_manage_worker``.)"""
    group = scope_group(claims)
    if group is not None and not is_autoscaled_worker_id(group, worker_id):
        raise Forbidden(f"forbidden: the autoscaler of group {group!r} creates keys only for "
                        f"its own workers ({autoscaled_worker_id(group, 1)}, ...), not "
                        f"{worker_id!r}")


def authorize(claims: Scoped, permission: Permission, worker_id: str | None = None) -> None:
    """``check`` the role, then the worker scope for commands that name a worker."""
    check(claims.role, permission)
    scope_group(claims)  # an autoscaler's token without a group may do nothing
    if permission is P.WORKER_ENROLL and claims.role == Role.AUTOSCALER:
        if worker_id is None:
            raise Forbidden(f"forbidden: {permission} by an autoscaler must name the worker id")
        check_group_scope(claims, worker_id)
    if permission in WORKER_SCOPED and claims.role == Role.WORKER:
        if worker_id is None:
            raise Forbidden(f"forbidden: {permission} by a worker must name its worker id")
        check_worker_scope(claims, worker_id)


def render_role_table() -> str:
    """The role table as Markdown, as docs/security-tokens.md shows it."""
    roles = list(Role)
    lines = [
        "| permission | " + " | ".join(r.value for r in roles) + " |",
        "| --- |" + " --- |" * len(roles),
    ]
    for perm in Permission:
        marks = " | ".join("yes" if perm in ROLE_PERMISSIONS[r] else "-" for r in roles)
        lines.append(f"| `{perm.value}` | {marks} |")
    return "\n".join(lines) + "\n"
