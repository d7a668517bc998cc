"""Pytest session processes started ahead of need (spares), and the host-wide numbers
and locks that keep the sessions of a host's workers apart."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from agents.proc.files import account_tag, release, try_lock
from agents.proc.tree import kill_group_now, spawning
from agents.worker.pytest.server import (
    BOOT,
    LOG_TAIL_BYTES,
    READY_TIMEOUT_S,
    SESSION_FILE,
    Line,
    SessionFailed,
    SessionSpec,
    _decode_line,
)
from agents.worker.runner import TaskUser

log = logging.getLogger(__name__)
LOCK_POLL_S = 0.05
SPARE_DELAY_S = 10.0  # a used spare is replaced this long after
FILESYSTEM_ROOT = Path(os.sep).resolve()  # where a spare waits: in no project's directory


@dataclass
class Spare:
    """A session process started ahead of need: its interpreter up and pytest imported
    (about a third of a second), waiting for its setup. It fits a session whose
    interpreter settings (the ``PYTHON*`` variables) are its own."""

    proc: asyncio.subprocess.Process
    log_path: Path
    env: dict[str, str]

    @classmethod
    async def spawn(cls, env: dict[str, str], log_path: Path,
                    user: TaskUser | None = None) -> Spare:
        with open(log_path, "ab") as err:  # noqa: ASYNC230 -- a local log file
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", BOOT, str(SESSION_FILE), cwd=FILESYSTEM_ROOT,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err,
                env=env, limit=64 * 1024 * 1024, **spawning(die_with_parent=False).kwargs(),
                **(user.spawn_options() if user is not None else {}))
        return cls(proc, log_path, env)

    async def start(self, spec: SessionSpec, setup: dict[str, Any]) -> Line:
        """Make this process a session's server; returns its ready line."""
        proc = self.proc
        internal_error: str | None = None
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps(setup).encode() + b"\n")
            await proc.stdin.drain()
            async with asyncio.timeout(READY_TIMEOUT_S):
                while True:
                    raw = await proc.stdout.readline()
                    if not raw:
                        break
                    line = _decode_line(raw)
                    if line.internal_error is not None:
                        internal_error = line.internal_error
                    elif line.ready is not None:
                        return line
        except BaseException:
            self.kill()
            raise
        code = await proc.wait()
        detail = internal_error or _tail(self.log_path)
        raise SessionFailed(f"pytest could not start (exit code {code}) in {spec.cwd} with "
                            f"{' '.join(spec.args) or 'no arguments'}:\n{detail.rstrip()}",
                            4 if code == 4 else 3)

    def fits(self, env: dict[str, str]) -> bool:
        return self.proc.returncode is None and interpreter_vars(env) == interpreter_vars(
            self.env)

    def kill(self) -> None:
        if self.proc.returncode is None:
            kill_group_now(self.proc.pid)


def interpreter_vars(env: dict[str, str]) -> dict[str, str]:
    """What the interpreter reads when it starts (``sys.path``, the hash seed, ...): a
    process started with other values cannot become the session."""
    return {k: v for k, v in env.items() if k.startswith("PYTHON")}


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
class Spares:
    """One spare at a time, started ahead of need: the next new session skips the
    interpreter's start. ``default_env``: the environment a spare starts with."""

    def __init__(self, log_dir: Path, default_env: Callable[[], dict[str, str]],
                 user: TaskUser | None = None) -> None:
        self.log_dir = log_dir
        self.default_env = default_env
        self.user = user
        self.spare: asyncio.Future[Spare] | None = None
        self.started = 0

    def keep(self, delay: float = 0.0) -> None:
        """Start a spare session process, if there is none (at the worker's start, and a
        little after each use, not while the session it became is busy collecting)."""
        if self.spare is None or self.spare.done():
            self.spare = asyncio.ensure_future(self._spawn(self.default_env(), delay))
            self.spare.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _spawn(self, env: dict[str, str], delay: float = 0.0) -> Spare:
        if delay:
            await asyncio.sleep(delay)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.started += 1
        return await Spare.spawn(
            env, self.log_dir / f"pytest-session-{os.getpid()}-{self.started}.log", self.user)

    async def take(self, env: dict[str, str]) -> Spare:
        """The spare if it fits ``env``, else a process started now; another spare later."""
        task, self.spare = self.spare, None
        spare = None
        if task is not None:
            try:
                spare = await task
            except OSError as exc:
                log.warning("the spare pytest process did not start (%r); starting one", exc)
        if spare is None or not spare.fits(env):
            if spare is not None:
                spare.kill()
            spare = await self._spawn(env)
        self.keep(delay=SPARE_DELAY_S)
        return spare

    def close(self) -> None:
        if self.spare is not None:
            if self.spare.done() and not self.spare.cancelled() \
                    and self.spare.exception() is None:
                self.spare.result().kill()
            self.spare.cancel()


class SlotNumbers:
    """Host-wide numbers for concurrent chunks (``PYTEST_XDIST_WORKER=gwN``): tests use
    them to keep ports, files and databases apart, so two chunks on one host never share
    one, whichever worker runs them. A number is held by a lock file while a chunk runs."""

    def __init__(self, directory: Path | None = None) -> None:
        self.dir = directory or Path(tempfile.gettempdir()) / f"dtf-slots-{account_tag()}"
        self.held: dict[int, IO[bytes]] = {}

    def take(self) -> int:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for n in itertools.count():
            if n in self.held:
                continue
            f = open(self.dir / f"gw{n}.lock", "ab")
            if not try_lock(f):
                f.close()
                continue
            self.held[n] = f
            return n
        raise AssertionError("unreachable")

    def give_back(self, n: int) -> None:
        f = self.held.pop(n, None)
        if f is not None:
            release(f)


@contextlib.asynccontextmanager
async def host_lock(path: Path) -> Any:
    """An exclusive lock on ``path`` across the host's processes, waited for without
    blocking the loop (and so, cancellably)."""
    f = open(path, "ab")  # noqa: ASYNC230 -- a lock file, opened once
    try:
        while not try_lock(f):  # noqa: ASYNC110 -- another process holds it: polled
            await asyncio.sleep(LOCK_POLL_S)
        yield
    finally:
        release(f)
