"""Running one command attempt: argv (no shell), its own process group, output streamed,
the whole tree killed on timeout or cancel."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agents.proc.plan import Platform, platform_of, task_user_supported
from agents.proc.tree import spawning
from agents.worker.rss import PeakRss
from dtf_core.errors import InvalidInput
from dtf_core.spec import CommandConfig

OutputSink = Callable[[str, bytes], Awaitable[None]]
KILL_GRACE_S = 2.0
CHUNK = 64 * 1024

log = logging.getLogger(__name__)
PLATFORM = platform_of()


@dataclass(frozen=True)
class TaskUser:
    """The account tasks run as (``dtf worker --task-user``), so that a task cannot read
    the stack's credentials and keys, which belong to the worker's account, 0600."""

    name: str
    uid: int
    gid: int
    home: str

    @classmethod
    def lookup(cls, name: str, platform: Platform = PLATFORM) -> TaskUser:
        if not task_user_supported(platform):
            raise InvalidInput(f"--task-user {name}: tasks run as another account on POSIX "
                               f"hosts only (this worker runs on {platform}); run the "
                               "worker itself as the account the tasks should have")
        if sys.platform == "win32":  # task_user_supported: POSIX accounts only
            raise NotImplementedError("--task-user is POSIX only (plan.task_user_supported)")
        import pwd

        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise InvalidInput(f"--task-user: no user {name!r} on this host") from None
        if os.geteuid() not in (0, entry.pw_uid):
            raise InvalidInput(f"--task-user {name}: the worker must run as root to run "
                               "tasks as another user")
        return cls(name, entry.pw_uid, entry.pw_gid, entry.pw_dir)

    def own(self, path: str | os.PathLike[str]) -> None:
        """Give ``path`` to this account (a directory its tasks write in)."""
        if sys.platform == "win32":  # a TaskUser exists on POSIX only (lookup)
            raise NotImplementedError("--task-user is POSIX only (plan.task_user_supported)")
        os.chown(path, self.uid, self.gid)

    def spawn_options(self) -> dict[str, Any]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def task_env(extra: Mapping[str, str] | None = None,
             user: TaskUser | None = None) -> dict[str, str]:
    """A task's environment: the worker's, without DTF's own settings and credentials
    (``DTF_*``: the token file, the data dir, the server), plus the task's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DTF_")}
    if user is not None:
        env.update(HOME=user.home, USER=user.name, LOGNAME=user.name)
    env.update(extra or {})
    return env


@dataclass
class Outcome:
    kind: str  # succeeded | failed | timed_out | cancelled
    exit_code: int | None
    error: str
    started_at: float
    duration_s: float
    permanent: bool = False  # failed in a way a retry cannot mend
    max_rss_mb: float | None = None  # the peak RSS of its process tree


async def _pump(stream: asyncio.StreamReader | None, name: str, sink: OutputSink) -> None:
    if stream is None:
        return
    while chunk := await stream.read(CHUNK):
        await sink(name, chunk)


def _where(cfg: CommandConfig) -> str:
    return f" in {cfg.cwd}" if cfg.cwd else f" in the worker's directory {os.getcwd()}"


def _cannot_start(cfg: CommandConfig) -> str:
    """Why the command cannot start, where that is known before trying."""
    if cfg.cwd and not os.path.isdir(cfg.cwd):
        host = socket.gethostname()
        hint = (f"; it was submitted on {cfg.host}: `dtf submit --pack always` sends the "
                "directory to workers on other hosts") if cfg.host not in ("", host) else ""
        return (f"cannot start {cfg.argv[0]!r}: its working directory {cfg.cwd} does not "
                f"exist on {host}{hint} (not retried)")
    return ""


async def run_command(
    cfg: CommandConfig,
    *,
    timeout: float | None,
    sink: OutputSink,
    cancel: asyncio.Event,
    on_start: Callable[[int], None] | None = None,
    user: TaskUser | None = None,
) -> Outcome:
    started = time.time()
    t0 = time.monotonic()
    why = _cannot_start(cfg)
    if why:
        return Outcome("failed", None, why, started, 0.0, permanent=True)
    # A tree of its own, killed whole; it dies with the worker (even by SIGKILL), so a
    # crashed worker leaves no attempt running that recovery has given to another worker
    # (Linux: the process itself, by PDEATHSIG; macOS: its group, by the keeper; Windows:
    # its job).
    spawn = spawning()
    try:
        proc = await asyncio.create_subprocess_exec(
            *cfg.argv,
            cwd=cfg.cwd,
            env=task_env(cfg.env, user),
            **(user.spawn_options() if user is not None else {}),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            **spawn.kwargs(),
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        return Outcome("failed", None, f"cannot start {cfg.argv[0]!r}: {exc.strerror or exc}"
                       f"{_where(cfg)} (not retried)", started, time.monotonic() - t0,
                       permanent=True)
    tree = spawn.adopt(proc.pid)
    if on_start is not None:
        on_start(proc.pid)
    memory = PeakRss(proc.pid)
    memory.start()
    pumps = asyncio.gather(_pump(proc.stdout, "stdout", sink), _pump(proc.stderr, "stderr", sink))
    waiter = asyncio.ensure_future(proc.wait())
    cancelled = asyncio.ensure_future(cancel.wait())
    kind = ""
    try:
        done, _ = await asyncio.wait({waiter, cancelled}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            kind = "cancelled" if cancelled in done else "timed_out"
            if kind == "cancelled":
                tree.stop()  # a cancel may clean up; a timeout may not
            else:
                tree.kill()
            try:
                await asyncio.wait_for(asyncio.shield(waiter), KILL_GRACE_S)
            except TimeoutError:
                tree.kill()
                await waiter
    finally:
        cancelled.cancel()
        # the last sample before the tree is killed (the process itself has ended: its
        # high-water mark went with it, the samples before are what is known)
        peak = await memory.stop()
        tree.kill()  # nothing of the attempt outlives it
        if not waiter.done():
            await waiter
        tree.release()
        try:
            await asyncio.wait_for(pumps, KILL_GRACE_S)
        except (TimeoutError, OSError) as exc:  # a grandchild may hold the pipes open
            log.warning("output of pid %d not closed %.0fs after it ended: %r", proc.pid,
                        KILL_GRACE_S, exc)
    code = proc.returncode
    duration = time.monotonic() - t0
    if kind == "timed_out":
        return Outcome(kind, code, f"timed out after {timeout:g}s", started, duration,
                       max_rss_mb=peak)
    if kind == "cancelled":
        return Outcome(kind, code, "cancelled", started, duration, max_rss_mb=peak)
    if code == 0:
        return Outcome("succeeded", 0, "", started, duration, max_rss_mb=peak)
    why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
    return Outcome("failed", code, why, started, duration, max_rss_mb=peak)
