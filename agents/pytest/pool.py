"""Pytest fork servers on a worker, one per session key, each running many chunks at once.

A server (``session.py``) collects the tests once; each chunk runs in a child forked from
it, so a run never sees what another run (or chunk) left behind, and a new run of unchanged
code pays no interpreter start and no collection. The key is how pytest runs (the
directory, its arguments and environment); a server is reused while every file and
directory its collection read is unchanged (``freshness.py``). A chunk whose child dies
(a segfault, ``os._exit``) fails the test it was running; the rest of the chunk goes on
in a new child. Cancelling a chunk kills its child and whatever its tests started; the
server lives on.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import json
import logging
import os
import signal
import site
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import msgspec

from agents.pytest.freshness import changed
from dtf_core.events.tests import TestCase

log = logging.getLogger(__name__)

OnCase = Callable[[TestCase], Awaitable[None] | None]
MAX_SERVERS = 2  # fork servers kept per worker (each holds a whole collection)
IDLE_CLOSE_S = 1800.0
READY_TIMEOUT_S = 600.0
LOG_TAIL_BYTES = 6000
SESSION_FILE = Path(__file__).with_name("session.py")
# `python -c BOOT session.py`: the session script runs by path, with no DTF directory on
# sys.path (``-c`` puts the working directory first; the setup says whether pytest's
# submitter had it there too).
BOOT = ("import sys, runpy\n"
        "if sys.path and sys.path[0] == '': del sys.path[0]\n"
        "sys.argv[:] = sys.argv[1:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n")


class Line(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One line from a server or its children; ``reports`` stays raw JSON (it is stored as
    it came)."""

    id: str | None = None
    ready: int | None = None
    errors: list[dict[str, str]] = []
    deps: list[list[str]] = []
    collection: str = ""
    internal_error: str | None = None
    forked: int | None = None
    start: str | None = None
    done: str | None = None
    outcome: str = ""
    duration: float = 0.0
    reports: msgspec.Raw = msgspec.Raw(b"[]")
    warnings: msgspec.Raw = msgspec.Raw(b"[]")
    message: str = ""
    end: bool = False
    exit_requested: str | None = None
    returncode: int | None = None
    exit: int | None = None


_decode_line = msgspec.json.Decoder(Line).decode


class SessionFailed(Exception):
    """pytest could not start on this worker (a usage error, a broken conftest, a plugin
    missing here): the run's problem, not a test's."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ExitRequested(Exception):
    """A test called ``pytest.exit()`` (or raised KeyboardInterrupt): the run stops."""

    def __init__(self, message: str, returncode: int) -> None:
        super().__init__(message)
        self.returncode = returncode


@dataclass(frozen=True)
class SessionSpec:
    """What a fork server is started with; equal specs share a server."""

    cwd: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    path0: bool = False
    markup: bool = False
    highlight: bool = False
    width: int = 80

    def key(self) -> tuple[Any, ...]:
        """A server is reused for the same key while what it read is unchanged
        (``freshness.changed``); the code's hash is not part of it, so that files tests
        write do not make every run cold."""
        return (self.cwd, self.args, self.env, self.path0, self.markup, self.highlight,
                self.width, installed_fingerprint())


def installed_fingerprint() -> tuple[float, ...]:
    """When packages are installed or removed, site-packages changes: a server that
    imported the old ones is not reused."""
    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    out = []
    for d in dirs:
        try:
            out.append(os.stat(d).st_mtime)
        except OSError:
            out.append(0.0)
    return tuple(out)


@dataclass
class ChunkEnd:
    ended: bool  # every test ran
    running: str | None = None  # the test running when the child died
    status: int | None = None  # the child's exit status when it died


class SlotNumbers:
    """Host-wide numbers for concurrent chunks (``PYTEST_XDIST_WORKER=gwN``): tests use
    them to keep ports, files and databases apart, so two chunks on one host never share
    one, whichever worker runs them. A number is held by a lock file while a chunk runs."""

    def __init__(self, directory: Path | None = None) -> None:
        self.dir = directory or Path(tempfile.gettempdir()) / f"dtf-slots-{os.getuid()}"
        self.held: dict[int, IO[bytes]] = {}

    def take(self) -> int:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for n in itertools.count():
            if n in self.held:
                continue
            f = open(self.dir / f"gw{n}.lock", "ab")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                continue
            self.held[n] = f
            return n
        raise AssertionError("unreachable")

    def give_back(self, n: int) -> None:
        f = self.held.pop(n, None)
        if f is not None:
            f.close()


class ForkServer:
    def __init__(self, spec: SessionSpec, proc: asyncio.subprocess.Process,
                 log_path: Path) -> None:
        self.spec = spec
        self.proc = proc
        self.log_path = log_path
        self.collected = 0
        self.errors: list[dict[str, str]] = []
        self.deps: list[list[str]] = []  # what its collection read (freshness.py)
        self.collection = ""  # the digest of what it collected
        self.fresh = False  # started for the chunk now asking: not replaced again for it
        self.accepted: set[str] = set()  # the submitters' collections it runs
        self.internal_error: str | None = None
        self.queues: dict[str, asyncio.Queue[Line | None]] = {}
        self.pids: dict[str, int] = {}
        self.used = time.monotonic()
        self.ids = itertools.count(1)
        self.reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, spec: SessionSpec, spare: Spare, workerinput: dict[str, Any],
                    env: dict[str, str]) -> ForkServer:
        """Make ``spare`` (a started process, pytest imported) this session's server."""
        proc = spare.proc
        server = cls(spec, proc, spare.log_path)
        try:
            setup = {"args": list(spec.args), "cwd": spec.cwd, "env": env,
                     "path0": spec.cwd if spec.path0 else None, "markup": spec.markup,
                     "highlight": spec.highlight, "width": spec.width,
                     "workerinput": workerinput}
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(setup).encode() + b"\n")
            await proc.stdin.drain()
            async with asyncio.timeout(READY_TIMEOUT_S):
                await server._hello()
        except BaseException:
            server.kill()
            raise
        server.reader = asyncio.create_task(server._read_loop())
        return server

    async def _hello(self) -> None:
        while True:
            line = await self._read()
            if line is None or (line.ready is None and line.internal_error is None
                                and line.id is None):
                break
            if line.internal_error is not None:
                self.internal_error = line.internal_error
                continue
            if line.ready is not None:
                self.collected = line.ready
                self.errors = list(line.errors)
                self.deps = list(line.deps)
                self.collection = line.collection
                self.accepted = {line.collection}
                return
        code = await self.proc.wait()
        raise SessionFailed(self._why(code), 4 if code == 4 else 3)

    def _why(self, code: int | None) -> str:
        detail = self.internal_error or _tail(self.log_path)
        return (f"pytest could not start (exit code {code}) in {self.spec.cwd} with "
                f"{' '.join(self.spec.args) or 'no arguments'}:\n{detail.rstrip()}")

    async def _read(self) -> Line | None:
        assert self.proc.stdout is not None
        raw = await self.proc.stdout.readline()
        if not raw:
            return None
        return _decode_line(raw)

    async def _read_loop(self) -> None:
        try:
            while True:
                line = await self._read()
                if line is None:
                    break
                if line.id is not None and line.id in self.queues:
                    if line.forked is not None:
                        self.pids[line.id] = line.forked
                    self.queues[line.id].put_nowait(line)
        finally:
            for queue in self.queues.values():
                queue.put_nowait(None)  # the server is gone

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None and (self.reader is None or not self.reader.done())

    async def run(self, node_ids: list[str], on_case: OnCase,
                  child_env: dict[str, Any]) -> ChunkEnd:
        """Run ``node_ids`` in a new child. Raises ExitRequested when a test stopped the
        run, SessionFailed when the server itself died."""
        chunk_id = str(next(self.ids))
        queue: asyncio.Queue[Line | None] = asyncio.Queue()
        self.queues[chunk_id] = queue
        self.used = time.monotonic()
        running: str | None = None
        ended = False
        try:
            assert self.proc.stdin is not None
            request = {"id": chunk_id, "run": node_ids, **child_env}
            try:
                self.proc.stdin.write(json.dumps(request).encode() + b"\n")
                await self.proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                raise SessionFailed(self._why(await self.proc.wait()), 3) from None
            exit_requested: Line | None = None
            while True:
                line = await queue.get()
                if line is None:
                    raise SessionFailed(self._why(await self.proc.wait()), 3)
                if line.start is not None:
                    running = line.start
                elif line.done is not None:
                    running = None
                    result = on_case(_case(line))
                    if result is not None:
                        await result
                elif line.end:
                    ended = True
                    return ChunkEnd(True)  # the child finishes its session on its own
                elif line.exit_requested is not None:
                    exit_requested = line
                elif line.exit is not None:
                    if exit_requested is not None:
                        raise ExitRequested(exit_requested.exit_requested or "",
                                            exit_requested.returncode or 2)
                    return ChunkEnd(ended, running, line.exit)
        finally:
            if not ended:
                self.kill_child(chunk_id)  # cancelled, timed out, or it died
            self.queues.pop(chunk_id, None)
            self.pids.pop(chunk_id, None)
            self.used = time.monotonic()

    def kill_child(self, chunk_id: str) -> None:
        pid = self.pids.get(chunk_id)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

    @property
    def busy(self) -> bool:
        return bool(self.queues)

    def retire(self) -> None:
        """Stop once its running chunks end: it takes no new ones (a newer one does)."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()  # the server waits for its children, then ends

    def kill(self) -> None:
        for chunk_id in list(self.pids):
            self.kill_child(chunk_id)
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    async def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()  # the server kills its children and ends its session
        try:
            async with asyncio.timeout(10):
                await self.proc.wait()
        except TimeoutError:
            self.kill()
            await self.proc.wait()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader


@dataclass
class Spare:
    """A session process started ahead of need: its interpreter up and pytest imported
    (about a third of a second), waiting for its setup. It fits a session whose
    interpreter settings (the ``PYTHON*`` variables) are its own."""

    proc: asyncio.subprocess.Process
    log_path: Path
    env: dict[str, str]

    @classmethod
    async def spawn(cls, env: dict[str, str], log_path: Path) -> Spare:
        with open(log_path, "ab") as err:  # noqa: ASYNC230 -- a local log file
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", BOOT, str(SESSION_FILE), cwd=log_path.parent,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err,
                env=env, start_new_session=True, limit=64 * 1024 * 1024)
        return cls(proc, log_path, env)

    def fits(self, env: dict[str, str]) -> bool:
        return self.proc.returncode is None and interpreter_vars(env) == interpreter_vars(
            self.env)

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)


def interpreter_vars(env: dict[str, str]) -> dict[str, str]:
    """What the interpreter reads when it starts (``sys.path``, the hash seed, ...): a
    process started with other values cannot become the session."""
    return {k: v for k, v in env.items() if k.startswith("PYTHON")}


def _case(line: Line) -> TestCase:
    warnings = bytes(line.warnings)
    return TestCase(nodeid=line.done or "", outcome=line.outcome,  # type: ignore[arg-type]
                    duration_s=line.duration, reports=bytes(line.reports).decode(),
                    message=line.message,
                    warnings="" if warnings in (b"[]", b"") else warnings.decode())


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - LOG_TAIL_BYTES))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    lines = text.splitlines()
    return "\n".join(lines[1:] if size > LOG_TAIL_BYTES else lines)


def session_env(base: dict[str, str], spec: SessionSpec) -> dict[str, str]:
    env = dict(base)
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        env.pop(name, None)  # the submitter's own, from the spec, or none
    env.update(dict(spec.env))
    if env.get("PYTHONPATH") == "":  # the submitter had none
        del env["PYTHONPATH"]
    return env


@dataclass
class SessionPool:
    log_dir: Path
    worker_id: str = "worker"
    servers: dict[tuple[Any, ...], ForkServer] = field(default_factory=dict)
    starting: dict[tuple[Any, ...], asyncio.Task[ForkServer]] = field(default_factory=dict)
    slots: SlotNumbers = field(default_factory=SlotNumbers)
    base_env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    preparing: set[asyncio.Task[ForkServer]] = field(default_factory=set)
    spare: asyncio.Future[Spare] | None = None
    started = 0

    async def run_chunk(self, spec: SessionSpec, node_ids: list[str], on_case: OnCase,
                        *, run_id: str = "", workers: int = 1,
                        collection: str = "") -> list[dict[str, str]]:
        """Run ``node_ids``; every one of them gets exactly one case. Returns the
        collection errors the session saw. ``collection``: the digest of what the
        submitter collected; a session that collected something else is replaced once."""
        remaining = list(node_ids)
        errors: list[dict[str, str]] = []
        slot = self.slots.take()
        try:
            while remaining:
                server = await self._server(spec, collection)
                errors = server.errors
                seen: set[str] = set()

                async def record(case: TestCase, seen: set[str] = seen) -> None:
                    seen.add(case.nodeid)
                    result = on_case(case)
                    if result is not None:
                        await result

                child_env = {"workerid": f"gw{slot}", "workercount": workers,
                             "testrunuid": run_id}
                end = await server.run(remaining, record, child_env)
                if end.ended:
                    break
                crashed = end.running
                if crashed is not None:
                    await record(TestCase(
                        nodeid=crashed, outcome="crashed",
                        message=(f"the pytest process died ({_status(end.status)}) while "
                                 "running this test; the rest of the chunk ran in a new "
                                 "process")))
                elif not seen:
                    raise SessionFailed(
                        f"the pytest process for this chunk died ({_status(end.status)}) "
                        "before running any test", 3)
                remaining = [n for n in remaining if n not in seen]
        finally:
            self.slots.give_back(slot)
        await self._trim()
        return errors

    def prepare(self, spec: SessionSpec) -> None:
        """Start the session for ``spec`` now, if it is not there: it collects while the
        chunk waits for its tests. Its failure, if any, is raised to the chunk that runs."""
        task = asyncio.ensure_future(self._server(spec))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        self.preparing.add(task)
        task.add_done_callback(self.preparing.discard)

    async def _server(self, spec: SessionSpec, collection: str = "") -> ForkServer:
        key = spec.key()
        server = self.servers.get(key)
        if server is not None and server.alive:
            stale = await asyncio.to_thread(changed, server.deps)
            if stale is None and collection and collection not in server.accepted:
                if server.fresh:  # it has just collected: what it has is what there is
                    server.accepted.add(collection)
                else:
                    stale = "the tests the run collected"
            if stale is None:
                server.fresh = False
                return server
            log.info("pytest session %s is stale (%s changed); starting a new one",
                     server.proc.pid, stale)
        if server is not None:
            self.servers.pop(key, None)
            if server.busy:
                server.retire()
            else:
                await server.close()
        task = self.starting.get(key)
        if task is None:
            task = asyncio.ensure_future(self._start(spec))
            self.starting[key] = task
            task.add_done_callback(lambda _t: self.starting.pop(key, None))
        server = await asyncio.shield(task)
        server.fresh = True  # just collected: used as it is, whatever it collected
        self.servers[key] = server
        await self._trim()
        return server

    def keep_spare(self) -> None:
        """Start a spare session process, if there is none (at the worker's start, and
        after each use): the next new session skips the interpreter's start."""
        if self.spare is None or self.spare.done():
            self.spare = asyncio.ensure_future(self._spawn(self._default_env()))
            self.spare.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _default_env(self) -> dict[str, str]:
        env = dict(self.base_env)
        env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
        return env

    async def _spawn(self, env: dict[str, str]) -> Spare:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.started += 1
        return await Spare.spawn(
            env, self.log_dir / f"pytest-session-{os.getpid()}-{self.started}.log")

    async def _take_spare(self, env: dict[str, str]) -> Spare:
        task, self.spare = self.spare, None
        spare = None
        if task is not None:
            with contextlib.suppress(Exception):
                spare = await task
        if spare is None or not spare.fits(env):
            if spare is not None:
                spare.kill()
            spare = await self._spawn(env)
        self.keep_spare()
        return spare

    async def _start(self, spec: SessionSpec) -> ForkServer:
        workerinput = {"workerid": "gw0", "workercount": 1, "testrunuid": "",
                       "mainargv": [sys.executable, "-m", "pytest"], "dtf": True,
                       "dtf_worker": self.worker_id}
        env = session_env(self.base_env, spec)
        server = await ForkServer.start(spec, await self._take_spare(env), workerinput, env)
        log.info("pytest session %s ready in %s: %d tests collected", server.proc.pid,
                 spec.cwd, server.collected)
        return server

    async def _trim(self) -> None:
        now = time.monotonic()
        for key, server in list(self.servers.items()):
            if not server.alive or (not server.busy and now - server.used > IDLE_CLOSE_S):
                self.servers.pop(key, None)
                await server.close()
        idle = sorted((s.used, k) for k, s in self.servers.items() if not s.busy)
        while len(self.servers) > MAX_SERVERS and idle:
            _, key = idle.pop(0)
            await self.servers.pop(key).close()

    async def close(self) -> None:
        for task in [*self.starting.values(), *self.preparing]:
            task.cancel()
        if self.spare is not None:
            if self.spare.done() and not self.spare.cancelled() \
                    and self.spare.exception() is None:
                self.spare.result().kill()
            self.spare.cancel()
        for server in list(self.servers.values()):
            server.kill()
        self.servers.clear()


def _status(status: int | None) -> str:
    if status is not None and status < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-status).name}"
    return f"exit code {status}"
