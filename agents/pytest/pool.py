"""Warm pytest sessions on a worker, one per slot in use, reused across chunks and runs.

A session is keyed by what it collected: the root, the code hash, the pytest args and the
files. A chunk with the same key reuses an idle session (no interpreter start, no
collection); any other key starts a new one and the least recently used idle one is
closed. A session that dies mid-chunk (a segfault, ``os._exit``) fails the test it was
running; the rest of the chunk goes on in a fresh session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from dtf_core.events.tests import TestCase

log = logging.getLogger(__name__)

Key = tuple[str, str, tuple[str, ...], tuple[str, ...]]
OnCase = Callable[[TestCase], Awaitable[None] | None]
MAX_IDLE = 4
READY_TIMEOUT_S = 300.0


class Line(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One line from a session; ``reports`` stays raw JSON (it is stored as it came)."""

    ready: int | None = None
    errors: list[dict[str, str]] = []
    start: str | None = None
    done: str | None = None
    outcome: str = ""
    duration: float = 0.0
    reports: msgspec.Raw = msgspec.Raw(b"[]")
    message: str = ""
    chunk_done: bool = False


_decode_line = msgspec.json.Decoder(Line).decode


class SessionDied(Exception):
    def __init__(self, running: str | None, returncode: int | None) -> None:
        super().__init__(f"pytest session exited with {returncode}")
        self.running = running
        self.returncode = returncode


@dataclass(eq=False)
class Session:
    key: Key
    proc: asyncio.subprocess.Process
    collected: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    used: float = field(default_factory=time.monotonic)

    @classmethod
    async def start(cls, key: Key, root: Path, log_path: Path) -> Session:
        _, _, args, files = key
        env = dict(os.environ)
        env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
        with open(log_path, "ab") as err:  # noqa: ASYNC230 -- a local log file
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agents.pytest.session", *args, *files,
                cwd=str(root), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=err, env=_with_dtf_on_path(env), start_new_session=True,
                limit=64 * 1024 * 1024,
            )
        session = cls(key, proc)
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                hello = await session._read()
        except BaseException:
            session.kill()
            raise
        if hello is None or hello.ready is None:
            session.kill()
            raise RuntimeError(f"pytest did not start in {root} (see {log_path})")
        session.collected = hello.ready
        session.errors = list(hello.errors)
        return session

    async def _read(self) -> Line | None:
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            return None
        return _decode_line(line)

    async def run(self, node_ids: list[str], on_case: OnCase) -> None:
        """Run a chunk; raises SessionDied (with the test that was running) if it dies."""
        assert self.proc.stdin is not None
        self.used = time.monotonic()
        try:
            self.proc.stdin.write(json.dumps({"run": node_ids}).encode() + b"\n")
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            raise SessionDied(None, await self.proc.wait()) from None
        running: str | None = None
        while True:
            msg = await self._read()
            if msg is None:
                raise SessionDied(running, await self.proc.wait())
            if msg.start is not None:
                running = msg.start
            elif msg.done is not None:
                running = None
                case = TestCase(nodeid=msg.done, outcome=msg.outcome,  # type: ignore[arg-type]
                                duration_s=msg.duration, reports=bytes(msg.reports).decode(),
                                message=msg.message)
                result = on_case(case)
                if result is not None:
                    await result
            elif msg.chunk_done:
                return

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    async def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            async with asyncio.timeout(5):
                await self.proc.wait()
        except TimeoutError:
            self.kill()
            await self.proc.wait()


def _with_dtf_on_path(env: dict[str, str]) -> dict[str, str]:
    """The session imports agents.pytest.session from this installation, whatever the
    test root is."""
    here = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), here) if p)
    return env


def _recorder(seen: set[str], on_case: OnCase) -> Callable[[TestCase], Awaitable[None]]:
    async def record(case: TestCase) -> None:
        seen.add(case.nodeid)
        result = on_case(case)
        if result is not None:
            await result
    return record


@dataclass
class SessionPool:
    log_dir: Path
    idle: list[Session] = field(default_factory=list)
    busy: set[Session] = field(default_factory=set)

    async def run_chunk(self, key: Key, root: Path, node_ids: list[str], on_case: OnCase,
                        ) -> list[dict[str, str]]:
        """Run ``node_ids``; every one of them gets exactly one case. Returns the
        collection errors the session saw."""
        remaining = list(node_ids)
        errors: list[dict[str, str]] = []
        while remaining:
            session = await self._take(key, root)
            errors = session.errors
            seen: set[str] = set()
            record = _recorder(seen, on_case)

            try:
                await session.run(remaining, record)
            except SessionDied as died:
                self.busy.discard(session)
                crashed = died.running
                message = (f"the pytest process died (exit code {died.returncode}) while "
                           f"running this test; the rest of the chunk ran in a new process")
                if crashed is not None:
                    await record(TestCase(nodeid=crashed, outcome="crashed", message=message))
                elif not seen:
                    raise RuntimeError(f"pytest session exited with {died.returncode} before "
                                       "running any test") from None
                remaining = [n for n in remaining if n not in seen]
                continue
            except BaseException:
                self.busy.discard(session)
                session.kill()
                raise
            self.busy.discard(session)
            self.idle.append(session)
            remaining = []
        await self._trim()
        return errors

    async def _take(self, key: Key, root: Path) -> Session:
        for session in self.idle:
            if session.key == key and session.proc.returncode is None:
                self.idle.remove(session)
                self.busy.add(session)
                return session
        log_path = self.log_dir / "pytest-sessions.log"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        session = await Session.start(key, root, log_path)
        self.busy.add(session)
        return session

    async def _trim(self) -> None:
        self.idle = [s for s in self.idle if s.proc.returncode is None]
        self.idle.sort(key=lambda s: s.used)
        while len(self.idle) > MAX_IDLE:
            await self.idle.pop(0).close()

    async def close(self) -> None:
        for session in [*self.idle, *self.busy]:
            session.kill()
        self.idle.clear()
        self.busy.clear()
