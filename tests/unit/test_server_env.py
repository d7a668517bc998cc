"""The embedded nats-server's share of the cores (ADR 0023)."""

from __future__ import annotations

import pytest

from agents.nats.server import server_env


@pytest.mark.parametrize(("cpus", "procs"), [(1, "1"), (2, "1"), (3, "1"), (4, "2"), (16, "8")])
def test_go_gets_half_the_cores(cpus: int, procs: str) -> None:
    env = server_env({"PATH": "/bin"}, cpus)
    assert env == {"PATH": "/bin", "GOMAXPROCS": procs}


def test_the_users_own_setting_is_kept() -> None:
    assert server_env({"GOMAXPROCS": "3"}, 2) == {"GOMAXPROCS": "3"}


def test_an_empty_setting_counts_as_unset() -> None:
    # Go ignores GOMAXPROCS= (empty): the server would take every core
    assert server_env({"GOMAXPROCS": ""}, 8)["GOMAXPROCS"] == "4"


def test_the_callers_environment_is_not_changed() -> None:
    environ = {"PATH": "/bin"}
    server_env(environ, 8)
    assert environ == {"PATH": "/bin"}
