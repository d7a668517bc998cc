"""A fork server's chunk, in its child: a process group of its own, capture of its own, the
xdist-style environment, a fresh temporary directory, and each test's line sent as it ends.
Standard library, pytest and msgspec only: the session loads this file by path.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import msgspec
import pytest

_encode = msgspec.json.Encoder().encode


def _note(what: str, exc: BaseException) -> None:
    """What the session let go of, in its log (its stderr is the worker's session log)."""
    if sys.__stderr__ is not None:
        sys.__stderr__.write(f"dtf session: {what}: {exc!r}\n")


def _load_proc(name: str) -> Any:
    """A module of agents/proc (standard library only), by path, as ``_dtf_proc_<name>``:
    no DTF package enters sys.modules of the tests' process."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "proc" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_dtf_proc_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


_plan = _load_proc("plan")  # what this platform needs
_orphans = _load_proc("orphans")  # dying with the fork server


def _die_with_parent() -> None:
    """The chunk ends when the fork server dies, even by SIGKILL (Linux: PDEATHSIG;
    macOS and the BSDs: a thread watching it)."""
    import select

    try:
        _orphans.die_with_parent(_plan.death_in_process(_plan.platform_of()),
                                 _plan.watch_method(hasattr(select, "kqueue")))
    except (OSError, AttributeError, RuntimeError) as exc:
        _note("cannot die with the worker", exc)


class Chunks:
    """The pytest side of serving chunks; ``ForkServer`` is one."""

    config: Any
    items: dict[str, Any]
    warnings: list[dict[str, Any]]
    finished_test: bytes | None
    base: Path | None
    out: IO[bytes]

    send: Callable[[dict[str, Any]], None]  # Serving's

    def _zygote_basetemp(self) -> None:
        """The server's own temporary directory; each chunk gets a fresh one inside it, as
        pytest-xdist gives each worker one inside the run's. A ``--basetemp`` is shared by
        every session on the host, so the server takes a directory of its own in it."""
        factory = getattr(self.config, "_tmp_path_factory", None)
        if factory is None:
            return
        try:
            given = factory._given_basetemp
            if given is not None:
                given.mkdir(parents=True, exist_ok=True)
                factory._given_basetemp = given / f"dtf-{os.getpid()}"
                factory._basetemp = None
            self.base = Path(factory.getbasetemp())
        except (AttributeError, OSError) as exc:  # pytest's internals moved: its default
            _note("no temporary directory of its own", exc)

    def _run_chunk(self, session: Any, request: dict[str, Any]) -> None:
        if sys.platform == "win32":  # the fork server: POSIX only (plan.chunk_runner)
            raise NotImplementedError("the pytest fork server needs os.fork and unix sockets")
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)  # a cancel kills the chunk and what its tests started
        _die_with_parent()
        self._fresh_capture()
        workerinput = getattr(self.config, "workerinput", None)
        for name, key in (("PYTEST_XDIST_WORKER", "workerid"),
                          ("PYTEST_XDIST_WORKER_COUNT", "workercount"),
                          ("PYTEST_XDIST_TESTRUNUID", "testrunuid")):
            if key in request:  # as pytest-xdist sets them: tests use them to stay apart
                os.environ[name] = str(request[key])
                if isinstance(workerinput, dict):
                    workerinput[key] = request[key]
        factory = getattr(self.config, "_tmp_path_factory", None)
        if factory is not None and request.get("basetemp"):
            factory._given_basetemp = Path(request["basetemp"])
            factory._basetemp = None
        known = []
        for nodeid in request.get("run", []):
            item = self.items.get(nodeid)
            if item is None:
                self.send({"done": nodeid, "outcome": "error", "duration": 0.0, "reports": [],
                           "message": "not collected by the pytest session on the worker"})
            else:
                known.append(item)
        try:
            for i, item in enumerate(known):
                nextitem = known[i + 1] if i + 1 < len(known) else None
                item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
                self._send_finished()
                if session.shouldstop or session.shouldfail:
                    break
        except pytest.exit.Exception as exc:
            self.send({"exit_requested": str(exc.msg), "returncode": exc.returncode})
            raise
        except KeyboardInterrupt:
            self.send({"exit_requested": "KeyboardInterrupt", "returncode": 2})
            raise
        self.send({"end": True})

    def _fresh_capture(self) -> None:
        """The child captures into files of its own: output of a killed sibling, left in
        the files it shared with the server, never shows up in this chunk's reports."""
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        current = getattr(capman, "_global_capturing", None)
        if current is None:
            return
        try:
            current.stop_capturing()
        except (OSError, ValueError, AssertionError) as exc:  # closed already
            _note("stopping the server's capture", exc)
        capman._global_capturing = None
        capman.start_global_capturing()
        capman.suspend_global_capture()

    def _send_finished(self) -> None:
        line, self.finished_test = self.finished_test, None
        if line is None:
            return
        line += b',"warnings":' + _encode(self.warnings)
        self.warnings = []
        self.out.write(line + b"}\n")
        self.out.flush()
