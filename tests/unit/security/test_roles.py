"""The role table, permission checks, worker scope, and the doc that shows the table."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from agents.auth.errors import Forbidden
from agents.auth.roles import (
    COMMAND_PERMISSIONS,
    ROLE_PERMISSIONS,
    Permission,
    Role,
    allows,
    authorize,
    check,
    check_worker_scope,
    permission_for_command,
    render_role_table,
)
from agents.auth.tokens import Claims
from dtf_core import commands

DOC = Path(__file__).resolve().parents[3] / "docs" / "security-tokens.md"
P = Permission


def claims(role: Role, wid: str | None = None) -> Claims:
    return Claims(iss="dtf", aud="dtf-api", sub="s", role=role, iat=0, nbf=0, exp=1, jti="j",
                  wid=wid)


def test_every_role_has_a_row_and_admin_has_everything() -> None:
    assert set(ROLE_PERMISSIONS) == set(Role)
    assert ROLE_PERMISSIONS[Role.ADMIN] == frozenset(Permission)


@pytest.mark.parametrize(("role", "expected"), [
    (Role.MANAGER, {P.TASK_SUBMIT, P.TASK_CANCEL, P.WORKER_MANAGE, P.QUERY_READ,
                    P.TOKEN_REFRESH}),
    (Role.WORKER, {P.TASK_REPORT, P.WORKER_REGISTER, P.WORKER_STOP, P.TOKEN_REFRESH,
                   P.TASK_SECRETS}),
    (Role.READER, {P.QUERY_READ, P.TOKEN_REFRESH}),
    (Role.ENROLLER, {P.WORKER_ENROLL}),
])
def test_role_permissions(role: Role, expected: set[Permission]) -> None:
    assert ROLE_PERMISSIONS[role] == expected


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("permission", list(Permission))
def test_check_matches_the_table(role: Role, permission: Permission) -> None:
    if permission in ROLE_PERMISSIONS[role]:
        check(role, permission)
        check(role.value, permission.value)
    else:
        with pytest.raises(Forbidden, match=f"role '{role}' lacks permission '{permission}'"):
            check(role, permission)


@pytest.mark.parametrize(("role", "permission"), [
    ("root", "task.submit"), ("admin", "task.delete"), ("", ""), ("ADMIN", "task.submit"),
])
def test_unknown_roles_and_permissions_are_forbidden(role: str, permission: str) -> None:
    assert not allows(role, permission)
    with pytest.raises(Forbidden):
        check(role, permission)


def test_every_command_has_a_permission() -> None:
    union = typing.get_args(commands.Command)
    tags = {cls.__struct_config__.tag for cls in union}
    assert tags == set(COMMAND_PERMISSIONS)
    assert permission_for_command("submit") is P.TASK_SUBMIT
    with pytest.raises(Forbidden, match="no permission mapping"):
        permission_for_command("drop_everything")


def test_worker_scope() -> None:
    check_worker_scope(claims(Role.WORKER, "w1"), "w1")
    with pytest.raises(Forbidden, match="scoped to worker 'w1', not 'w2'"):
        check_worker_scope(claims(Role.WORKER, "w1"), "w2")
    with pytest.raises(Forbidden):
        check_worker_scope(claims(Role.WORKER, None), "w1")
    check_worker_scope(claims(Role.ADMIN), "w2")


def test_authorize_combines_role_and_scope() -> None:
    authorize(claims(Role.WORKER, "w1"), P.TASK_REPORT, worker_id="w1")
    with pytest.raises(Forbidden, match="scoped"):
        authorize(claims(Role.WORKER, "w1"), P.WORKER_STOP, worker_id="w2")
    with pytest.raises(Forbidden, match="must name its worker id"):
        authorize(claims(Role.WORKER, "w1"), P.WORKER_REGISTER)
    with pytest.raises(Forbidden, match="lacks permission"):
        authorize(claims(Role.WORKER, "w1"), P.TASK_SUBMIT)
    authorize(claims(Role.MANAGER), P.TASK_CANCEL)
    authorize(claims(Role.ADMIN), P.WORKER_STOP, worker_id="any")


def test_the_doc_shows_the_table_from_the_code() -> None:
    assert render_role_table() in DOC.read_text()
