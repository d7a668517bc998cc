"""Shared fixtures: a real nats-server per test session, a context of the suite's own, and
the check that the suite leaves no process and no file behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.nats.server import NatsServer, free_port

REPO = Path(__file__).resolve().parents[1]
# `dtf up` records itself in the user's context (~/.config/dtf): the suite's stacks, in a
# file of its own, which only tests that name it read.
_CONTEXT_DIR = tempfile.mkdtemp(prefix="dtf-test-context-")
os.environ["DTF_CONTEXT"] = os.path.join(_CONTEXT_DIR, "context.json")
# What tools (not tests) write into the checkout while the suite runs.
TOOL_LEFTOVERS = {".pytest_cache", ".hypothesis", ".mypy_cache", ".ruff_cache", "__pycache__"}
SUITE_MARK = "PYTEST_DTF_SUITE_MARK"  # PYTEST_*: passed on to tasks and sessions too
if os.environ.get("PYTEST_XDIST_WORKER"):  # each process of `pytest -n N` checks its own
    os.environ[SUITE_MARK] = uuid.uuid4().hex
else:
    os.environ.setdefault(SUITE_MARK, uuid.uuid4().hex)  # before anything is started


def _import_everything() -> None:
    """Import every module of DTF now, before any test runs. pytest rewrites them as they
    are imported (DTF's distribution carries a pytest plugin), and a rewrite's
    ``ast.parse`` during which the garbage collector finalises a previous test's asyncio
    transport can fail with CPython 3.11's "AST constructor recursion depth mismatch"
    (gh-106905): a test's lazy import met it."""
    import importlib
    import pkgutil

    for top in ("dtf_core", "projections", "agents", "cli"):
        package = importlib.import_module(top)
        for module in pkgutil.walk_packages(package.__path__, top + "."):
            importlib.import_module(module.name)


_import_everything()


@pytest.fixture(scope="session", autouse=True)
def leaves_nothing_behind() -> Iterator[None]:
    """Every process a test starts dies with it, and tests write only under tmp_path: at
    the end of the session no process started by the suite is left (orphans included:
    each carries the session's mark in its environment, which DTF passes on to tasks and
    pytest sessions), and the checkout holds nothing new."""
    import psutil

    mark = os.environ[SUITE_MARK]
    before = {p.name for p in REPO.iterdir()}
    yield
    me = os.getpid()

    def marked() -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if proc.pid != me and proc.environ().get(SUITE_MARK) == mark \
                        and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
        return found

    _, alive = psutil.wait_procs(marked(), timeout=15)
    left = []
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            left.append(f"{proc.pid} {' '.join(proc.cmdline())[:200]}")
            proc.kill()
    shutil.rmtree(_CONTEXT_DIR, ignore_errors=True)
    new = {p.name for p in REPO.iterdir()} - before - TOOL_LEFTOVERS
    assert not left, "processes left running by the suite:\n" + "\n".join(left)
    assert not new, f"the suite wrote into the checkout: {sorted(new)}"


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(store_dir=tmp_path_factory.mktemp("nats"), port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
