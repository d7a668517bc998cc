"""A worker's side of one pytest fork server (``session.py``): starting a spare process
that becomes a session, attaching to a running server over its socket, and running a
chunk there, line by line (pool.py decides which server a chunk uses)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import site
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from agents.proc.tree import kill_group_now
from dtf_core.events.tests import TestCase

log = logging.getLogger(__name__)

OnCase = Callable[[TestCase], Awaitable[None] | None]
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

    ready: int | None = None
    pid: int | None = None
    accepted: list[str] = []
    errors: list[dict[str, str]] = []
    deps: list[list[str]] = []
    collection: str = ""
    internal_error: str | None = None
    forked: int | None = None
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

    def key(self, env: dict[str, str]) -> str:
        """Servers are shared by the workers of a host whose sessions would run the same
        way: the same directory, arguments and environment (``env``, the session's). The
        code's hash is not part of it (what it read is checked), so files tests write do
        not make every run cold."""
        raw = msgspec.json.encode([self.cwd, self.args, sorted(env.items()), self.path0,
                                   self.markup, self.highlight, self.width,
                                   installed_fingerprint(), sys.executable])
        return hashlib.sha256(raw).hexdigest()[:40]


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
class Server:
    """A worker's attachment to a fork server: its info, and the connection that keeps it
    alive for this worker."""

    def __init__(self, path: Path, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, info: Line) -> None:
        self.path = path
        self.reader = reader
        self.writer = writer
        self.pid = info.pid or 0
        self.collected = info.ready or 0
        self.errors = list(info.errors)
        self.deps = list(info.deps)  # what its collection read (freshness.py)
        self.collection = info.collection  # the digest of what it collected
        self.accepted = set(info.accepted)  # the submitters' collections it runs
        self.fresh = False  # just started for the chunk now asking: not replaced for it
        self.used = time.monotonic()
        self.watch = asyncio.ensure_future(self._watch())
        self.running = 0

    @classmethod
    async def attach(cls, path: Path) -> Server | None:
        """The server listening at ``path``, or None when there is none."""
        if sys.platform == "win32":  # the fork server: POSIX only (plan.chunk_runner)
            raise NotImplementedError("the pytest fork server needs os.fork and unix sockets")
        try:
            reader, writer = await asyncio.open_unix_connection(str(path),
                                                                limit=64 * 1024 * 1024)
        except (FileNotFoundError, ConnectionRefusedError, OSError):
            return None
        try:
            writer.write(b'{"attach": true}\n')
            await writer.drain()
            raw = await reader.readline()
        except (ConnectionError, OSError):
            raw = b""
        if not raw:
            writer.close()
            return None
        return cls(path, reader, writer, _decode_line(raw))

    async def _watch(self) -> None:
        try:
            while await self.reader.readline():
                pass
        except (OSError, ValueError) as exc:  # the session's end, however it came
            log.debug("fork server %d: %r", self.pid, exc)

    @property
    def alive(self) -> bool:
        return not self.watch.done()

    def tell(self, request: dict[str, Any]) -> None:
        try:
            self.writer.write(json.dumps(request).encode() + b"\n")
        except (OSError, RuntimeError) as exc:  # it died: its run reports that
            log.debug("fork server %d did not take %s: %r", self.pid, request.get("op"), exc)

    def accept(self, collection: str) -> None:
        self.accepted.add(collection)
        self.tell({"accept": collection})

    def retire(self) -> None:
        """It takes no new chunk; it ends once its running ones have."""
        self.tell({"retire": True})

    def detach(self) -> None:
        self.watch.cancel()
        try:
            self.writer.close()
        except (OSError, RuntimeError) as exc:
            log.debug("closing fork server %d: %r", self.pid, exc)

    async def run(self, node_ids: list[str], on_case: OnCase,
                  child_env: dict[str, Any]) -> ChunkEnd:
        """Run ``node_ids`` in a new child. Raises ExitRequested when a test stopped the
        run, SessionFailed when the server itself died."""
        if sys.platform == "win32":  # the fork server: POSIX only (plan.chunk_runner)
            raise NotImplementedError("the pytest fork server needs os.fork and unix sockets")
        self.used = time.monotonic()
        self.running += 1
        done: set[str] = set()
        pid = 0
        ended = False
        writer = None
        try:
            try:
                reader, writer = await asyncio.open_unix_connection(
                    str(self.path), limit=64 * 1024 * 1024)
                writer.write(json.dumps({"run": node_ids, **child_env}).encode() + b"\n")
                await writer.drain()
            except (ConnectionError, OSError) as exc:
                raise SessionFailed(f"the pytest session server is gone ({exc})", 3) from None
            exit_requested: Line | None = None
            while True:
                raw = await reader.readline()
                if not raw:
                    raise SessionFailed("the pytest session server ended while it ran a "
                                        "chunk", 3)
                line = _decode_line(raw)
                if line.forked is not None:
                    pid = line.forked
                elif line.done is not None:
                    done.add(line.done)
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
                    # tests run in the order asked: it died in the first without a result
                    running = next((n for n in node_ids if n not in done), None)
                    return ChunkEnd(False, running, line.exit)
        finally:
            self.running -= 1
            self.used = time.monotonic()
            if not ended and pid:
                kill_group_now(pid)  # cancelled, timed out, or it died
            if writer is not None:
                writer.close()


def _case(line: Line) -> TestCase:
    warnings = bytes(line.warnings)
    return TestCase(nodeid=line.done or "", outcome=line.outcome,  # type: ignore[arg-type]
                    duration_s=line.duration, reports=bytes(line.reports).decode(),
                    message=line.message,
                    warnings="" if warnings in (b"[]", b"") else warnings.decode())


def exit_status(status: int | None) -> str:
    if status is not None and status < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-status).name}"
    return f"exit code {status}"
