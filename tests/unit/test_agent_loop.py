"""Which event loop an agent runs on: uvloop unless it is turned off, missing, or the
agent starts processes as another user (uvloop's subprocesses take no user or group)."""

import asyncio
import sys

import pytest

from agents.host import loop


def test_agents_run_on_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    uvloop = pytest.importorskip("uvloop")
    monkeypatch.delenv(loop.ENV, raising=False)
    assert loop.loop_factory() is uvloop.new_event_loop

    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert loop.run(which()).startswith("uvloop")
    assert loop.run(which(), spawns_as_user=True).startswith("asyncio")


def test_the_environment_turns_uvloop_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(loop.ENV, "asyncio")
    assert loop.loop_factory() is None
    monkeypatch.setenv(loop.ENV, "tokio")
    with pytest.raises(ValueError, match="must be 'uvloop' or 'asyncio'"):
        loop.loop_factory()


def test_without_uvloop_the_agents_use_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # an import of it fails
    monkeypatch.delenv(loop.ENV, raising=False)
    assert loop.loop_factory() is None
