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


def test_an_agent_freezes_what_its_start_up_made() -> None:
    """The collector never scans the modules and connections of start-up again: a full
    collection in a running agent scans only what came after (docs/performance.md)."""
    import gc

    from agents.host.launch import run_until_signal

    seen: list[int] = []

    async def main() -> None:
        seen.append(gc.get_freeze_count())

    gc.unfreeze()
    try:
        asyncio.run(run_until_signal(main))
    finally:
        gc.unfreeze()
    assert seen and seen[0] > 1000
