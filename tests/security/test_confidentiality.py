"""Insiders, part 6: another user's task environment (often credentials) is not shown to
readers; its submitter and admins see it."""

from __future__ import annotations

import json

import pytest

from tests.security.conftest import Insider

pytestmark = pytest.mark.anyio


async def test_env_values_are_shown_to_the_submitter_and_admins_only(
        insider: Insider) -> None:
    alice = await insider.token("manager", sub="alice")
    rc, out = await insider.cli("submit", "--env", "AWS_SECRET_ACCESS_KEY=s3cr3t", "--",
                                "true", token=alice)
    assert rc == 0, out
    task_id = out.strip()
    seen = {}
    for who, token in (("alice", alice), ("admin", None),
                       ("reader", await insider.token("reader", sub="bob")),
                       ("other manager", await insider.token("manager", sub="carol"))):
        rc, shown = await insider.cli("task", task_id, "--json", token=token)
        assert rc == 0, shown
        seen[who] = json.loads(shown)["spec"]["config"]["env"]["AWS_SECRET_ACCESS_KEY"]
    assert seen["alice"] == seen["admin"] == "s3cr3t"
    assert "s3cr3t" not in seen["reader"] and "s3cr3t" not in seen["other manager"]
