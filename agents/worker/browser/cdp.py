"""Chromium and its DevTools protocol over ``--remote-debugging-pipe``: no port another
local user could reach, only the worker holds the pipe. Messages are JSON, each ended by
a NUL byte, on the browser's fds 3 (in) and 4 (out).

A constant ``sh`` line (the argv follows as ``"$@"``, nothing is interpolated) moves the
pipes asyncio made for stdin and stdout onto fds 3 and 4, then ``exec``s Chromium: its pid
is the browser's own."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from agents.proc.tree import Tree, spawning
from agents.worker.runner import TaskUser, task_env
from dtf_core.errors import DTFError

log = logging.getLogger(__name__)
BINARIES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--no-first-run",
         "--no-default-browser-check", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--mute-audio",
         "--enable-unsafe-webgpu", "--enable-features=WebMachineLearningNeuralNetwork",
         "--remote-debugging-pipe")
SHIM = 'exec "$@" 3<&0 4>&1 0</dev/null 1>&2'
MAX_MESSAGE = 64 * 1024 * 1024
CALL_TIMEOUT_S = 30.0
CLOSE_GRACE_S = 3.0
Event = dict[str, Any]


class BrowserGone(DTFError):
    """The browser process ended, or its pipe closed: what was running in it failed."""


def find_chromium() -> str | None:
    return next((b for b in (shutil.which(n) for n in BINARIES) if b), None)


def _profile_dir(root: Path, user: TaskUser | None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=root))
    if user is not None:
        user.own(profile)
    return profile


class Chromium:
    """One headless Chromium process and its DevTools connection. Events go to the queue
    of their session (``listen``); when the browser ends, every pending call raises
    ``BrowserGone`` and every listening queue gets ``None``."""

    def __init__(self, proc: asyncio.subprocess.Process, profile: Path, tree: Tree) -> None:
        self.proc = proc
        self.tree = tree
        self.profile = profile
        self.pid = proc.pid
        self.why_gone = ""
        self.closing = False
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._queues: dict[str, asyncio.Queue[Event | None]] = {}
        self._stderr: collections.deque[str] = collections.deque(maxlen=20)
        self.gone = asyncio.Event()
        self._reader = asyncio.create_task(self._read())
        self._errors = asyncio.create_task(self._drain_stderr())

    @property
    def alive(self) -> bool:
        return not self.gone.is_set()

    async def call(self, method: str, params: dict[str, Any] | None = None,
                   session: str | None = None, timeout: float = CALL_TIMEOUT_S) -> Any:
        """A command's result, or ``BrowserGone`` / ``DTFError`` (the protocol's error)."""
        if self.gone.is_set():
            raise BrowserGone(self.why_gone)
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            msg["sessionId"] = session
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = fut
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(msg).encode() + b"\0")
            await self.proc.stdin.drain()
            async with asyncio.timeout(timeout):
                return await fut
        except (ConnectionError, BrokenPipeError):
            raise BrowserGone(self.why_gone or "the browser's pipe closed") from None
        except TimeoutError:
            raise DTFError(f"the browser did not answer {method} within {timeout:g}s") from None
        finally:
            self._pending.pop(msg["id"], None)

    def listen(self, session: str) -> asyncio.Queue[Event | None]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._queues[session] = queue
        if self.gone.is_set():
            queue.put_nowait(None)
        return queue

    def unlisten(self, session: str) -> None:
        self._queues.pop(session, None)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            while True:
                raw = await self.proc.stdout.readuntil(b"\0")
                self._dispatch(json.loads(raw[:-1]))
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                ValueError) as exc:
            ended = isinstance(exc, asyncio.IncompleteReadError)
            await self._ended("" if ended else f"unreadable DevTools message: {exc!r}")

    def _dispatch(self, msg: dict[str, Any]) -> None:
        if "id" in msg:
            fut = self._pending.get(msg["id"])
            if fut is None or fut.done():
                return
            if "error" in msg:
                fut.set_exception(DTFError(f"DevTools: {msg['error'].get('message', msg)}"))
            else:
                fut.set_result(msg.get("result", {}))
            return
        queue = self._queues.get(msg.get("sessionId", ""))
        if queue is not None:
            queue.put_nowait(msg)

    async def _ended(self, why: str) -> None:
        with contextlib.suppress(TimeoutError):  # its exit status, when it is dying
            async with asyncio.timeout(CLOSE_GRACE_S):
                await self.proc.wait()
        code = self.proc.returncode
        status = ("still running" if code is None else f"killed by signal {-code}"
                  if code < 0 else f"exit code {code}")
        # why it would not start or run (not the D-Bus noise of a host without a session)
        said = [line for line in self._stderr if "dbus" not in line.lower()][-3:]
        tail = f"; its last words: {' | '.join(said)}" if said and code and code > 0 else ""
        self.why_gone = why or f"the browser (Chromium pid {self.pid}) ended: {status}{tail}"
        self.gone.set()
        self._kill_group()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(BrowserGone(self.why_gone))
        for queue in self._queues.values():
            queue.put_nowait(None)
        log.log(logging.INFO if self.closing else logging.WARNING, "%s", self.why_gone)

    async def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        with contextlib.suppress(ValueError, ConnectionError):
            while line := await self.proc.stderr.readline():
                text = line.decode(errors="replace").strip()
                if text:
                    self._stderr.append(text[:300])

    def _kill_group(self) -> None:
        """Its renderers and GPU process are in its process tree: none outlives it."""
        self.tree.kill()

    async def close(self) -> None:
        """Ask it to quit, kill what is left after a grace, remove its profile."""
        self.closing = True
        if not self.gone.is_set():
            with contextlib.suppress(DTFError):
                await self.call("Browser.close", timeout=CLOSE_GRACE_S)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_GRACE_S):
                await self.proc.wait()
        self._kill_group()
        if self.proc.returncode is None:
            await self.proc.wait()
        self.tree.release()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_GRACE_S):
                await asyncio.gather(self._reader, self._errors, return_exceptions=True)
        self._reader.cancel()
        self._errors.cancel()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        await asyncio.to_thread(shutil.rmtree, self.profile, True)


async def launch(binary: str, root: Path, user: TaskUser | None = None) -> Chromium:
    """Started with a profile of its own under ``root``, as ``user`` when given, in its
    own process group, with the worker's environment less DTF's settings."""
    profile = await asyncio.to_thread(_profile_dir, root, user)
    spawn = spawning()  # a tree of its own that dies with the worker
    try:
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", SHIM, "sh", binary, *FLAGS, f"--user-data-dir={profile}",
            "about:blank", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, limit=MAX_MESSAGE,
            env=task_env(None, user), **(user.spawn_options() if user else {}),
            **spawn.kwargs())
    except OSError as exc:
        shutil.rmtree(profile, ignore_errors=True)
        raise BrowserGone(f"cannot start {binary}: {exc}") from None
    browser = Chromium(proc, profile, spawn.adopt(proc.pid))
    try:
        await browser.call("Browser.getVersion")
    except DTFError:  # it exited, or never answered
        await browser.close()
        raise
    log.info("browser started: %s (pid %d)", binary, proc.pid)
    return browser
